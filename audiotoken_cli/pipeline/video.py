"""``audiotoken video``: a whole recording becomes a video that moves with the sound.

    audio ─▶ keyframe windows (keyframes.py) ─▶ tokens ─▶ keyframe images ─┐
                                                                          ├─▶ frames ─▶ MP4 (mp4.py)
             slerped prompt embeddings, same seed's noise (interpolate.py) ┘

Outputs for ``clip.wav`` (beside it, or in ``-o``), all named ``<stem>.audiotoken.*`` so that no
output can be an input (``clip.mp4`` gives ``clip.audiotoken.mp4``):
    clip.audiotoken.mp4                 H.264 + the source's audio as AAC
    clip.audiotoken.json                {"keyframes": [{index, time, start, duration, seed}], "settings"}
    clip.audiotoken.tokens.safetensors  ``tokens``: [K, d] float32, keyframe order
    clip.audiotoken.keyframes/          with --save-keyframes: PNGs with generate's metadata
    clip.audiotoken.storyboard.png      with --storyboard
Work in progress lives in ``.clip.audiotoken.work/`` (see workfolder.py) until the video is done.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from audiotoken_cli import __version__
from audiotoken_cli.config import GenerateSettings
from audiotoken_cli.errors import AudioTokenError, InputError, UsageError
from audiotoken_cli.files import (
    FileResult,
    check_output_name,
    file_sha256,
    find_collisions,
    output_error,
    write_atomically,
)
from audiotoken_cli.pipeline import keyframes as kf
from audiotoken_cli.pipeline.mp4 import Mp4Writer
from audiotoken_cli.pipeline.workfolder import WorkFolder

SUFFIX = ".audiotoken"


@dataclass(frozen=True)
class VideoSettings:
    """``generate``'s settings (models, prompt, seed, steps, size, ...) plus the video's own.

    hop: seconds between keyframes. window: seconds of audio behind each keyframe's token.
    video: write the MP4 (``--no-video`` with ``--storyboard`` makes only the storyboard).
    """

    generate: GenerateSettings
    hop: float = 2.0
    window: float = 10.0
    fps: int = 8
    video: bool = True
    save_keyframes: bool = False
    storyboard: bool = False
    keyframes_only: bool = False
    audio_reactive: bool = False


@dataclass
class VideoEvents:
    """Hooks for a progress display; all optional. Totals come once per file."""

    on_keyframes: Callable[[int], None] = lambda total: None
    on_keyframe: Callable[[], None] = lambda: None
    on_frames: Callable[[int], None] = lambda total: None
    on_frame: Callable[[], None] = lambda: None
    on_step: Callable[[], None] = lambda: None


@dataclass(frozen=True)
class VideoOutputs:
    """Where one source's outputs go (the naming rule above)."""

    folder: Path
    name: str

    @classmethod
    def of(cls, source: Path, output_dir: Path | None) -> VideoOutputs:
        return cls(output_dir if output_dir is not None else source.parent, source.stem + SUFFIX)

    mp4 = property(lambda self: self.folder / f"{self.name}.mp4")
    sidecar = property(lambda self: self.folder / f"{self.name}.json")
    tokens = property(lambda self: self.folder / f"{self.name}.tokens.safetensors")
    keyframes = property(lambda self: self.folder / f"{self.name}.keyframes")
    storyboard = property(lambda self: self.folder / f"{self.name}.storyboard.png")
    work = property(lambda self: self.folder / f".{self.name}.work")

    def primary(self, settings: VideoSettings) -> Path:
        """The output whose presence means the file is done (so it is skipped)."""
        return self.mp4 if settings.video else self.storyboard

    def files(self, settings: VideoSettings) -> list[Path]:
        wanted = [self.sidecar, self.tokens]
        wanted += [self.mp4] if settings.video else []
        wanted += [self.storyboard] if settings.storyboard else []
        return wanted


def check_settings(settings: VideoSettings) -> None:
    if settings.hop <= 0 or settings.window <= 0 or settings.fps < 1:
        raise UsageError("--hop and --window must be positive and --fps at least 1")
    if not settings.video and not settings.storyboard:
        raise UsageError("--no-video makes nothing without --storyboard")


def video_files(sources: Sequence[Path], settings: VideoSettings,
                events: VideoEvents | None = None) -> Iterator[FileResult]:
    """Make each source's video (and storyboard); yield one result per source, in order."""
    events = events or VideoEvents()
    check_settings(settings)
    gen = settings.generate
    plan = {source: VideoOutputs.of(source, gen.output_dir) for source in sources}
    collisions = find_collisions({s: out.files(settings) for s, out in plan.items()})
    inputs = {source.resolve(): source for source in sources}
    todo = []
    for source, outputs in plan.items():
        clash = next((inputs[p.resolve()] for p in outputs.files(settings) if p.resolve() in inputs),
                     None)
        problem = _output_problem(source, outputs, settings)
        if problem is not None:
            yield FileResult(source, "failed", message=str(problem))
        elif _made_by_video(source):
            yield FileResult(source, "skipped", (), "a video this command made (its sidecar is "
                             "beside it); rename it to use it as an input")
        elif clash is not None:
            yield FileResult(source, "failed", message=f"{source}: its output would overwrite the "
                             f"input {clash}; use -o DIR or rename one of them")
        elif source in collisions:
            yield FileResult(source, "failed", message=str(collisions[source]))
        elif outputs.primary(settings).exists() and not gen.overwrite:
            yield FileResult(source, "skipped", (outputs.primary(settings),),
                             "exists; --overwrite replaces it")
        else:
            todo.append(source)
    if not todo:
        return

    import av

    from audiotoken_cli.pipeline.video_frames import FrameRenderer

    renderer = FrameRenderer(gen)
    for source in todo:
        try:
            yield _video_one(source, plan[source], settings, renderer, events)
        except AudioTokenError as error:
            yield FileResult(source, "failed", message=str(error))
        except av.error.FFmpegError as error:  # e.g. audio that decodes for tokens but not muxing
            yield FileResult(source, "failed", message=f"{source}: could not write the video "
                             f"({error.strerror or error})")


def _output_problem(source: Path, outputs: VideoOutputs, settings: VideoSettings
                    ) -> InputError | None:
    """A name too long for the file system, or an output folder we may not look at: that
    file's one line, before any work is spent on it."""
    try:
        for path in [*outputs.files(settings), outputs.work, outputs.keyframes]:
            check_output_name(source, path)
        outputs.primary(settings).exists()
        source.with_suffix(".json").is_file()
    except InputError as error:
        return error
    except OSError as error:
        return output_error(source, error)
    return None


def _made_by_video(source: Path) -> bool:
    """Whether ``source`` is one of our own MP4s (so a second run over a folder does not turn
    ``x.audiotoken.mp4`` into ``x.audiotoken.audiotoken.mp4``)."""
    sidecar = source.with_suffix(".json")
    if not source.stem.endswith(SUFFIX) or not sidecar.is_file():
        return False
    try:
        return "keyframes" in json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return False


def _video_one(source: Path, outputs: VideoOutputs, settings: VideoSettings, renderer,
               events: VideoEvents) -> FileResult:
    gen = settings.generate
    duration = kf.media_duration(source)
    if duration <= 0:
        raise InputError(f"{source}: the audio track holds no samples")
    keys = kf.schedule(duration, settings.hop, settings.window, gen.seed)
    audio_sha = file_sha256(source)
    record = _sidecar_settings(source, audio_sha, duration, settings, renderer)
    work = WorkFolder(outputs.work, record)

    events.on_keyframes(len(keys))
    tokens = _keyframe_tokens(source, keys, work, renderer, events)  # (K, d)
    blocked = _keyframe_images(keys, tokens, work, renderer, events)

    written = [outputs.sidecar, outputs.tokens]
    _write_tokens(outputs.tokens, tokens, record)
    sidecar = {"keyframes": [key.to_dict() for key in keys], "settings": record}
    write_atomically(outputs.sidecar, lambda tmp: tmp.write_text(json.dumps(sidecar, indent=1)))
    if settings.save_keyframes:
        written += _save_keyframes(source, audio_sha, keys, work, outputs, renderer)
    if settings.storyboard:
        from audiotoken_cli.pipeline.storyboard import storyboard

        sheet = storyboard([key.time for key in keys], work.image)
        write_atomically(outputs.storyboard, lambda tmp: sheet.save(tmp, format="PNG"))
        written.append(outputs.storyboard)
    if settings.video:
        weights = None
        if settings.audio_reactive:
            from audiotoken_cli.audio.onsets import reactive_weights

            weights = reactive_weights(source, duration, [k.time for k in keys], settings.fps)
        plans = kf.frame_plan(record["frames"], settings.fps, keys, weights)
        events.on_frames(len(plans))
        write_atomically(outputs.mp4, lambda tmp: _write_video(
            tmp, source, plans, tokens, work, settings, renderer, events))
        written.append(outputs.mp4)
    work.remove()
    note = f"{len(keys)} keyframes" + (f"; {blocked} blocked by the safety checker (black)"
                                       if blocked else "")
    return FileResult(source, "written", tuple(written), note)


def _sidecar_settings(source: Path, audio_sha: str, duration: float, settings: VideoSettings,
                      renderer) -> dict:
    """Every setting that decides the pixels, so any frame can be made again (and the work
    folder's key)."""
    gen = settings.generate
    # The models' part first: the run metadata it comes from also carries a `window` (the
    # generate-style dict), which the video's own window length must override.
    return {
        **renderer.models,
        "tool": "audiotoken-cli", "version": __version__,
        "audio_file": source.name, "audio_sha256": audio_sha, "audio_duration": duration,
        "hop": settings.hop, "window": settings.window, "fps": settings.fps,
        "frames": kf.frame_count(duration, settings.fps),
        "window_rule": "start = clamp(time - window/2, 0, duration - window)",
        "keyframes_only": settings.keyframes_only, "audio_reactive": settings.audio_reactive,
        "prompt": gen.prompt, "negative_prompt": gen.negative_prompt, "seed": gen.seed,
        "steps": gen.steps, "guidance": gen.guidance, "scheduler": gen.scheduler,
        "width": gen.width, "height": gen.height,
        "dtype": renderer.models.get("dtype", gen.runtime.dtype),
        "device": renderer.device.type, "token_dim": renderer.token_dim,
        "safety_checker": gen.safety_checker,
    }


def _keyframe_tokens(source: Path, keys: list[kf.Keyframe], work: WorkFolder, renderer,
                     events: VideoEvents) -> torch.Tensor:
    """(K, d): each keyframe's token, decoded window by window (load_window seeks, so memory
    does not grow with the recording), reusing those the work folder holds."""
    rows = []
    for key in keys:
        token = work.token(key.index)
        if token is None:
            token = renderer.token(source, key)
            work.save_token(key.index, token)
        rows.append(token)
    return torch.stack(rows) if rows else torch.zeros(0, renderer.token_dim)


def _keyframe_images(keys: list[kf.Keyframe], tokens: torch.Tensor, work: WorkFolder, renderer,
                     events: VideoEvents) -> int:
    """Render the keyframes the work folder lacks, a batch at a time; returns how many the
    safety checker blocked."""
    blocked = 0
    missing = [key for key in keys if not work.has_image(key.index)]
    for _ in range(len(keys) - len(missing)):
        events.on_keyframe()
    step = renderer.batch_size
    for begin in range(0, len(missing), step):
        batch = missing[begin:begin + step]
        embeds = [renderer.embeds(tokens[key.index]) for key in batch]
        images, flagged = renderer.render(embeds, batch[0].seed, events.on_step)
        blocked += flagged
        for key, image in zip(batch, images):
            work.save_image(key.index, image)
            events.on_keyframe()
    return blocked


def _write_tokens(path: Path, tokens: torch.Tensor, record: dict) -> None:
    from safetensors.torch import save_file

    metadata = {"format": "audiotoken-video-tokens", "audio_file": record["audio_file"],
                "audio_sha256": record["audio_sha256"], "hop": f"{record['hop']:g}",
                "window": f"{record['window']:g}", "embedder": record["embedder"]}
    tensor = tokens.float().contiguous()
    write_atomically(path, lambda tmp: save_file({"tokens": tensor}, str(tmp), metadata=metadata))


def _save_keyframes(source: Path, audio_sha: str, keys: list[kf.Keyframe], work: WorkFolder,
                    outputs: VideoOutputs, renderer) -> list[Path]:
    """Each keyframe as a PNG carrying exactly the metadata ``generate`` writes for its window."""
    from PIL import Image

    from audiotoken_cli.pipeline.metadata import RunMetadata, save_png
    from audiotoken_cli.pipeline.naming import PlannedImage, pixel_settings

    paths = []
    for key in keys:
        settings = replace(renderer.settings, window=key.window, seed=key.seed)
        # The run's models, with this keyframe's own window, as generate records it.
        models = {**renderer.models, **pixel_settings(settings, renderer.models["dtype"])}
        metadata = RunMetadata(settings, models, {source: audio_sha})
        path = outputs.keyframes / f"keyframe_{key.index:04d}.png"
        info = metadata.for_image(PlannedImage(source, key.seed, path))
        image = Image.fromarray(work.image(key.index))
        write_atomically(path, lambda tmp, im=image, i=info: save_png(tmp, im, i))
        paths.append(path)
    return paths


def _write_video(target: Path, source: Path, plans: list[kf.FramePlan], tokens: torch.Tensor,
                 work: WorkFolder, settings: VideoSettings, renderer, events: VideoEvents) -> None:
    gen = settings.generate
    with Mp4Writer(target, source, settings.fps, gen.width, gen.height) as writer:
        for chunk in kf.chunks(plans):
            for frame in _chunk_frames(chunk, tokens, work, settings, renderer, events):
                writer.write(frame)
                events.on_frame()


def _chunk_frames(chunk: list[kf.FramePlan], tokens: torch.Tensor, work: WorkFolder,
                  settings: VideoSettings, renderer, events: VideoEvents) -> Sequence[np.ndarray]:
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

    start, end = renderer.embeds(tokens[key]), renderer.embeds(tokens[key + 1])
    between = [plan for plan in chunk if not plan.on_keyframe]
    images, _ = renderer.render([slerp(start, end, plan.weight) for plan in between],
                                settings.generate.seed, events.on_step)
    rendered = iter(images)
    frames = np.stack([first if plan.on_keyframe else next(rendered) for plan in chunk])
    work.save_chunk(key, frames)
    return list(frames)

