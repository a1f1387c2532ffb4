"""Where one source's video outputs go, and the writers of the small ones (tokens, keyframe PNGs).

Outputs for ``clip.wav`` (beside it, or under ``-o`` at its subfolder, as every command mirrors
them: ``files.mirrored_folder``), all named ``<stem>.audiotoken.*`` so that no output can be an
input (``clip.mp4`` gives ``clip.audiotoken.mp4``):
    clip.audiotoken.mp4                 H.264 + the source's audio as AAC
    clip.audiotoken.json                the sidecar: each keyframe and every setting
    clip.audiotoken.tokens.safetensors  ``tokens``: [K, d] float32, keyframe order
    clip.audiotoken.keyframes/          with --save-keyframes: PNGs with generate's metadata
    clip.audiotoken.storyboard.png      with --storyboard
Work in progress lives in ``.clip.audiotoken.work/`` (see workfolder.py) until the video is done.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import torch

import audiotoken_cli.video.keyframes as kf
from audiotoken_cli.files import mirrored_folder, write_atomically
from audiotoken_cli.video.workfolder import WorkFolder

SUFFIX = ".audiotoken"


@dataclass(frozen=True)
class VideoOutputs:
    """Where one source's outputs go (the naming rule above)."""

    folder: Path
    name: str

    @classmethod
    def of(cls, source: Path, output_dir: Path | None, root: Path | None = None) -> VideoOutputs:
        return cls(mirrored_folder(source, output_dir, root), source.stem + SUFFIX)

    mp4 = property(lambda self: self.folder / f"{self.name}.mp4")
    sidecar = property(lambda self: self.folder / f"{self.name}.json")
    tokens = property(lambda self: self.folder / f"{self.name}.tokens.safetensors")
    keyframes = property(lambda self: self.folder / f"{self.name}.keyframes")
    storyboard = property(lambda self: self.folder / f"{self.name}.storyboard.png")
    work = property(lambda self: self.folder / f".{self.name}.work")

    def primary(self, settings) -> Path:
        """The output whose presence means the file is done (so it is skipped)."""
        return self.mp4 if settings.video else self.storyboard

    def files(self, settings) -> list[Path]:
        wanted = [self.sidecar, self.tokens]
        wanted += [self.mp4] if settings.video else []
        wanted += [self.storyboard] if settings.storyboard else []
        return wanted


def made_by_video(source: Path) -> bool:
    """Whether ``source`` is one of our own MP4s (so a second run over a folder does not turn
    ``x.audiotoken.mp4`` into ``x.audiotoken.audiotoken.mp4``)."""
    sidecar = source.with_suffix(".json")
    if not source.stem.endswith(SUFFIX) or not sidecar.is_file():
        return False
    try:
        return "keyframes" in json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return False


def write_tokens(path: Path, tokens: torch.Tensor, record: dict) -> None:
    from safetensors.torch import save_file

    metadata = {"format": "audiotoken-video-tokens", "audio_file": record["audio_file"],
                "audio_sha256": record["audio_sha256"], "hop": f"{record['hop']:g}",
                "window": f"{record['window']:g}", "embedder": record["embedder"]}
    tensor = tokens.float().contiguous()
    write_atomically(path, lambda tmp: save_file({"tokens": tensor}, str(tmp), metadata=metadata))


def save_keyframes(source: Path, audio_sha: str, keys: list[kf.Keyframe], work: WorkFolder,
                   outputs: VideoOutputs, frames) -> list[Path]:
    """Each keyframe as a PNG carrying exactly the metadata ``generate`` writes for its window."""
    from PIL import Image

    from audiotoken_cli.pipeline.metadata import RunMetadata, save_png
    from audiotoken_cli.pipeline.naming import PlannedImage, pixel_settings

    paths = []
    for key in keys:
        settings = replace(frames.settings, window=key.window, seed=key.seed)
        # The run's models, with this keyframe's own window, as generate records it.
        models = {**frames.models, **pixel_settings(settings, frames.models["dtype"])}
        metadata = RunMetadata(settings, models, {source: audio_sha})
        path = outputs.keyframes / f"keyframe_{key.index:04d}.png"
        info = metadata.for_image(PlannedImage(source, key.seed, path))
        image = Image.fromarray(work.image(key.index))
        write_atomically(path, lambda tmp, im=image, i=info: save_png(tmp, im, i))
        paths.append(path)
    return paths
