"""The video's pictures: keyframes from their windows' tokens, in-between frames from slerped
prompt embeddings, all on the run's one seed, through the model every command loads (model.py)
and the one batch loop (render/diffusion.py). That is what makes a keyframe equal to
``generate``'s image for its window and seed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import audiotoken_cli.video.keyframes as kf
from audiotoken_cli.config import GenerateSettings
from audiotoken_cli.model import LoadedModel, Prepared
from audiotoken_cli.render.diffusion import Conditioning, Job
from audiotoken_cli.video.workfolder import WorkFolder


@dataclass
class VideoFrames:
    """A loaded model prepared for one video run's settings."""

    model: LoadedModel
    settings: GenerateSettings
    prepared: Prepared
    models: dict  # the run metadata's model part: paths, hashes, dtype, pixel settings

    @classmethod
    def of(cls, model: LoadedModel, settings: GenerateSettings) -> VideoFrames:
        return cls(model, settings, model.prepare(settings.call_settings),
                   model.run_metadata(settings).models)

    device = property(lambda self: self.model.device)
    token_dim = property(lambda self: self.model.token_dim)
    batch_size = property(lambda self: self.prepared.batch_size)

    def token(self, source: Path, keyframe: kf.Keyframe, waveform: torch.Tensor) -> torch.Tensor:
        """Keyframe's token from its window's (S,) waveform, (d,) float32 on the CPU:
        ``embed --start --duration`` of that window."""
        from audiotoken_cli.pipeline.tokens import check_token

        token = self.model.tokens(waveform[None])[0].cpu()
        return check_token(token, f"{source} (window at {keyframe.window.start:g} s)")

    def embeds(self, token: torch.Tensor) -> Conditioning:
        """(d,) token → its conditioning (prompt embeddings with the token in place of <*>)."""
        return self.model.conditioning(self.settings.prompt, token[None])[0]

    def render(self, conditioning: Sequence[Conditioning], seed: int,
               on_step: Callable[[], None] = lambda: None) -> tuple[list[np.ndarray], int]:
        """Images of each conditioning, all from ``seed``'s noise, ``batch_size`` per UNet call.

        Returns (H, W, 3) uint8 arrays and how many the safety checker blocked (those are black).
        """
        images, blocked = [], 0
        jobs = (Job(c, seed) for c in conditioning)
        # One progress tick per UNet step, whatever the batch holds.
        for done in self.model.render(jobs, self.prepared, lambda _images: on_step()):
            if done.image is None:
                blocked += 1
                size = (self.settings.height, self.settings.width, 3)
                images.append(np.zeros(size, dtype=np.uint8))
            else:
                images.append(np.asarray(done.image.convert("RGB")))
        return images, blocked


def keyframe_tokens(source: Path, keys: list[kf.Keyframe], work: WorkFolder,
                    frames: VideoFrames) -> torch.Tensor:
    """(K, d): each keyframe's token, reusing those the work folder holds. The other windows are
    decoded one by one in the decoder worker, as ``generate`` and ``embed`` decode: a file that
    crashes or hangs FFmpeg fails alone instead of ending the run, and the decoder seeks, so
    memory does not grow with the recording."""
    from audiotoken_cli.audio.worker import decode_each
    from audiotoken_cli.errors import AudioTokenError

    tokens = {key.index: work.token(key.index) for key in keys}
    missing = [key for key in keys if tokens[key.index] is None]
    decoded = decode_each((source, key.window) for key in missing)
    for key, (_request, result) in zip(missing, decoded):
        if isinstance(result, AudioTokenError):
            raise result
        tokens[key.index] = frames.token(source, key, torch.from_numpy(result))
        work.save_token(key.index, tokens[key.index])
    rows = [tokens[key.index] for key in keys]
    return torch.stack(rows) if rows else torch.zeros(0, frames.token_dim)


def keyframe_images(keys: list[kf.Keyframe], tokens: torch.Tensor, work: WorkFolder,
                    frames: VideoFrames, events) -> int:
    """Render the keyframes the work folder lacks, a batch at a time; returns how many the
    safety checker blocked."""
    blocked = 0
    missing = [key for key in keys if not work.has_image(key.index)]
    for _ in range(len(keys) - len(missing)):
        events.on_keyframe()
    step = frames.batch_size
    for begin in range(0, len(missing), step):
        batch = missing[begin:begin + step]
        images, flagged = frames.render([frames.embeds(tokens[key.index]) for key in batch],
                                        batch[0].seed, events.on_step)
        blocked += flagged
        for key, image in zip(batch, images):
            work.save_image(key.index, image)
            events.on_keyframe()
    return blocked


def chunk_frames(chunk: list[kf.FramePlan], tokens: torch.Tensor, work: WorkFolder,
                 settings, frames: VideoFrames, events) -> Sequence[np.ndarray]:
    """The frames of one keyframe interval: from the work folder when a previous run finished
    them, else rendered (or cross-faded) now and kept there until the video is done."""
    key = chunk[0].key
    first = work.image(key)
    if all(plan.on_keyframe for plan in chunk):
        return [first] * len(chunk)
    if settings.keyframes_only:
        from audiotoken_cli.render.interpolate import crossfade

        last = work.image(key + 1)
        return [crossfade(first, last, plan.weight) for plan in chunk]
    stored = work.chunk(key)
    if stored is not None and len(stored) == len(chunk):
        return list(stored)
    from audiotoken_cli.render.interpolate import slerp

    start, end = frames.embeds(tokens[key]), frames.embeds(tokens[key + 1])
    between = [plan for plan in chunk if not plan.on_keyframe]
    images, _ = frames.render([_slerp(start, end, plan.weight, slerp) for plan in between],
                              settings.generate.seed, events.on_step)
    rendered = iter(images)
    stack = np.stack([first if plan.on_keyframe else next(rendered) for plan in chunk])
    work.save_chunk(key, stack)
    return list(stack)


def _slerp(start: Conditioning, end: Conditioning, weight: float, slerp) -> Conditioning:
    pooled = None if start.pooled is None else slerp(start.pooled, end.pooled, weight)
    return Conditioning(slerp(start.prompt_embeds, end.prompt_embeds, weight), pooled)
