"""Which sound, which real frame and which label belong to each generated image.

- The sound: the ``audio_path`` of the PNG's ``audiotoken`` JSON chunk when that file exists
  (inside ``--audio`` or not), else its ``audio_file`` name found in ``--audio``, else generate's
  naming rule: ``<stem>_seed<N>.png`` or ``<stem>_seed<N>_<8 hex>.png`` → ``<stem>.*`` in
  ``--audio`` (searched recursively; two sounds with that stem are ambiguous, not guessed).
- The real picture: ``<sound stem>.png/.jpg/.jpeg/.webp`` in ``--real``; when only a video of that
  stem exists, its middle frame (the paper's data are video clips).
- The label: the sound's path relative to ``--audio`` looked up in ``--labels``, as ``train`` does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from audiotoken_cli.errors import InputError

NAME_RULE = re.compile(r"^(?P<stem>.+)_seed(?P<seed>\d+)(?:_[0-9a-f]{8})?$")
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v")


@dataclass
class Pair:
    image: Path
    audio: Path | None = None
    seed: int | None = None
    real: Path | None = None  # a picture, or a video whose middle frame serves
    label: str | None = None
    problem: str | None = None  # why the image is not counted
    sha256: str | None = None


class Folder:
    """A folder's files by stem (recursively), listed once."""

    def __init__(self, root: Path | None):
        self.root = root
        self.by_stem: dict[str, list[Path]] = {}
        self.by_name: dict[str, list[Path]] = {}
        if root is None:
            return
        for path in sorted(root.rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                self.by_stem.setdefault(path.stem, []).append(path)
                self.by_name.setdefault(path.name, []).append(path)


def pair_images(images: list[Path], audio: Folder, real: Folder,
                labels: dict[str, str] | None) -> list[Pair]:
    return [_pair(image, audio, real, labels) for image in images]


def _pair(image: Path, audio: Folder, real: Folder, labels: dict[str, str] | None) -> Pair:
    from audiotoken_cli.pipeline.metadata import read_image_settings

    info = read_image_settings(image) or {}
    match = NAME_RULE.match(image.stem)
    seed = info.get("seed") if isinstance(info.get("seed"), int) else (
        int(match["seed"]) if match else None)
    pair = Pair(image, seed=seed)
    try:
        pair.audio = _find_audio(image, info, match, audio)
    except InputError as error:
        pair.problem = str(error)
        return pair
    pair.real = _find_real(pair.audio.stem, real)
    if labels is not None:
        from audiotoken_cli.training.labels import label_for

        pair.label = label_for(_relative(pair.audio, audio.root), labels)
    return pair


def _find_audio(image: Path, info: dict, match, audio: Folder) -> Path:
    recorded = info.get("audio_path")
    if isinstance(recorded, str) and Path(recorded).is_file():
        return Path(recorded)
    name = info.get("audio_file")
    if isinstance(name, str) and name:
        found = audio.by_name.get(Path(name).name, [])
        if len(found) == 1:
            return found[0]
    if match is None and not name:
        raise InputError(f"{image}: no sound: the name is not <stem>_seed<N>.png and the image "
                         "carries no audiotoken metadata")
    stem = Path(name).stem if isinstance(name, str) and name else match["stem"]
    found = audio.by_stem.get(stem, [])
    if not found:
        raise InputError(f"{image}: no sound named {stem}.* in {audio.root}")
    if len(found) > 1:
        names = ", ".join(str(p) for p in found[:3])
        raise InputError(f"{image}: several sounds named {stem}.* ({names}); "
                         "give --audio a folder with one")
    return found[0]


def _find_real(stem: str, real: Folder) -> Path | None:
    candidates = real.by_stem.get(stem, [])
    for suffixes in (PICTURE_SUFFIXES, VIDEO_SUFFIXES):
        for path in candidates:
            if path.suffix.lower() in suffixes:
                return path
    return None


def _relative(path: Path, root: Path | None) -> Path:
    try:
        return path.resolve().relative_to(root.resolve()) if root else Path(path.name)
    except ValueError:
        return Path(path.name)


def read_real_picture(path: Path):
    """An RGB PIL picture: the file itself, or a video's middle frame."""
    from audiotoken_cli.training.frames import _read_image, read_frame

    if path.suffix.lower() in PICTURE_SUFFIXES:
        return _read_image(path)
    return read_frame(path, video_duration(path) / 2)


def video_duration(path: Path) -> float:
    """Seconds of the picture stream (0.0 without one), from ``audio.media.probe``."""
    from audiotoken_cli.audio.media import probe

    return probe(path).video_duration
