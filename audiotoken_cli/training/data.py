"""Training data: a folder of videos, or of audio files each paired with an image.

``scan`` finds the usable files once (probing each, skipping bad ones with a one-line warning);
``TrainingData`` then draws one example per item: a random ``audio_seconds`` window from the first
``clip_seconds`` of the clip (looped when the clip is shorter, as ``audio.load_window`` does) and a
picture from inside that window. All randomness comes from an explicit generator seeded by
(seed, epoch, index), so a resumed run sees exactly the examples an uninterrupted one would.

Memory does not grow with file length: audio goes through ``load_window``, which stops decoding
once the window is full, and a frame is found by seeking to the keyframe before it and decoding
forward.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from audiotoken_cli.audio.decode import AUDIO_EXTENSIONS, VIDEO_EXTENSIONS, load_window
from audiotoken_cli.config import Window
from audiotoken_cli.errors import InputError, UsageError
from audiotoken_cli.training.frames import (
    _picture_stream,
    _read_image,
    _reason,
    fit_and_crop_with_geometry,
    read_frame,
    to_pixels,
)
from audiotoken_cli.training.labels import (
    label_for,
    label_key,
    read_labels,
    unused_rows,
)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
"""Pictures that pair with an audio file of the same stem, in order of preference."""

MIN_AUDIO_SECONDS = 0.5
"""Shorter clips would be one sound looped many times over; they are skipped."""

SIZE_MULTIPLE = 8
"""Stable Diffusion's VAE downsamples by 8, so training frames must be multiples of it."""

SCAN_THREADS = min(8, os.cpu_count() or 1)
"""Probing is mostly waiting on the disk and FFmpeg, which runs outside the GIL."""

PROBE_SECONDS = 5.0
"""How far into a file the scan looks for a first decodable audio and video frame."""



@dataclass(frozen=True)
class DataSettings:
    """Where the training data is and how examples are cut from it.

    size is (width, height) of the frames; windows of audio_seconds are drawn from the first
    clip_seconds of each clip (the paper: 5 s windows of 10 s clips, frames 512×320).
    """

    root: Path
    labels: Path | None = None
    audio_seconds: float = 5.0
    size: tuple[int, int] = (512, 512)
    clip_seconds: float = 10.0

    def __post_init__(self) -> None:
        if not self.audio_seconds > 0:
            raise UsageError(f"the audio window must be longer than 0 s, "
                             f"not {self.audio_seconds:g}")
        if self.clip_seconds < self.audio_seconds:
            raise UsageError(f"the audio window ({self.audio_seconds:g} s) must fit in the part "
                             f"of the clip windows are drawn from ({self.clip_seconds:g} s)")
        if len(self.size) != 2 or min(self.size) <= 0:
            raise UsageError(f"the frame size must be two positive numbers, not {self.size}")


@dataclass(frozen=True)
class Sample:
    """One usable training file: a video, or an audio file with its image."""

    audio: Path  # the video itself, or the audio file
    image: Path | None  # None for videos: frames come from ``audio``
    label: str | None
    duration: float  # seconds of audio available, from the container; places the windows


class _Skip(Exception):
    """A file the scan leaves out; the message is the reason shown in the warning."""


# --- parsing options and labels -------------------------------------------------------------

def parse_size(text: str) -> tuple[int, int]:
    """``"512x320"`` → (512, 320), width first; ``"512"`` → (512, 512)."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:[xX×*]\s*(\d+)\s*)?", text)
    if not match:
        raise UsageError(f"size {text!r}: expected WIDTHxHEIGHT, for example 512x320")
    width = int(match.group(1))
    height = int(match.group(2) or width)
    if width <= 0 or height <= 0 or width % SIZE_MULTIPLE or height % SIZE_MULTIPLE:
        raise UsageError(f"size {text!r}: width and height must be positive multiples of "
                         f"{SIZE_MULTIPLE} (Stable Diffusion's VAE works in 8×8 blocks)")
    return width, height




# --- scanning the folder --------------------------------------------------------------------

def scan(settings: DataSettings) -> tuple[list[Sample], list[str]]:
    """Usable samples (sorted by path) and one warning line per skipped file.

    Raises ``InputError`` when the folder is missing or nothing in it is usable.
    """
    root = Path(settings.root)
    if not root.is_dir():
        raise InputError(f"{root}: no such folder (the training data must be a folder)")
    labels = read_labels(settings.labels) if settings.labels is not None else None
    media, images, unreadable = _find_files(root)

    def check(path: Path) -> tuple[Path | None, float] | str:
        try:
            return _check(path, images.get(path.with_suffix("")))
        except _Skip as reason:
            return f"{path}: skipped, {reason}"

    samples: list[Sample] = []
    warnings: list[str] = list(unreadable)
    with ThreadPoolExecutor(SCAN_THREADS) as pool:
        for path, result in zip(media, pool.map(check, media)):  # map keeps the order
            if isinstance(result, str):
                warnings.append(result)
                continue
            image, duration = result
            label = label_for(path.relative_to(root), labels)
            samples.append(Sample(path, image, label, duration))
    if not samples:
        raise InputError(_nothing_usable(root, media, warnings))
    if labels is not None:  # a row naming a file that is not here is said, not ignored
        warnings += unused_rows(labels, {label_key(p.relative_to(root), labels) for p in media})
    return samples, warnings


def _find_files(root: Path) -> tuple[list[Path], dict[Path, Path], list[str]]:
    """Media files (sorted), per path without suffix the image that pairs with it, and one line
    per folder that cannot be read (``Path.rglob`` would pass over it without a word).

    Hidden files and folders are left out, as the other commands do.
    """
    media: list[Path] = []
    images: dict[Path, Path] = {}
    unreadable: list[str] = []

    def unreadable_folder(error: OSError) -> None:
        reason = "permission denied" if isinstance(error, PermissionError) else error.strerror
        unreadable.append(f"{error.filename}: skipped, this folder cannot be read ({reason})")

    found = []
    for folder, folders, files in os.walk(root, onerror=unreadable_folder):
        folders[:] = [name for name in folders if not name.startswith(".")]
        found += [Path(folder) / name for name in files if not name.startswith(".")]
    for path in sorted(found):
        if not path.is_file():
            continue
        suffix = path.suffix.lower()
        if suffix in AUDIO_EXTENSIONS or suffix in VIDEO_EXTENSIONS:
            media.append(path)
        elif suffix in IMAGE_EXTENSIONS:
            stem = path.with_suffix("")
            known = images.get(stem)
            if known is None or _image_rank(path) < _image_rank(known):
                images[stem] = path
    return media, images, unreadable


def _image_rank(path: Path) -> int:
    return IMAGE_EXTENSIONS.index(path.suffix.lower())


def _nothing_usable(root: Path, media: list[Path], warnings: list[str]) -> str:
    if not media:
        return (f"{root}: no training data: found no videos ({', '.join(sorted(VIDEO_EXTENSIONS))})"
                f" or audio files with an image of the same name ({', '.join(IMAGE_EXTENSIONS)})")
    return (f"{root}: none of the {len(media)} media files is usable for training; "
            f"first problem: {warnings[0]}")


def _check(path: Path, image: Path | None) -> tuple[Path | None, float]:
    """(image or None, audio duration) for a usable file; raises ``_Skip`` with the reason.

    A video's own frames come first; one without a picture stream may still pair with an
    image, and an audio file must.
    """
    is_video = path.suffix.lower() in VIDEO_EXTENSIONS
    duration, has_picture = _probe(path, want_picture=is_video)
    if duration < MIN_AUDIO_SECONDS:
        raise _Skip(f"too short ({duration:.2f} s of audio; at least {MIN_AUDIO_SECONDS:g} s "
                    "needed)")
    if is_video and has_picture:
        return None, duration
    if image is None:
        what = "no video stream" if is_video else "an audio file"
        raise _Skip(f"no picture ({what}, and no {path.stem}.jpg, .jpeg, .png or .webp beside "
                    "it)")
    _check_image(image)
    return image, duration


def _probe(path: Path, want_picture: bool) -> tuple[float, bool]:
    """(audio seconds, whether a video stream decodes), decoding only the first frames.

    In this process, not the decoder worker: the check decodes a video frame too, which the
    worker does not do, and ``scan`` runs it on many threads at once. A file that crashes
    FFmpeg here stops the scan; that is a known gap (issue 17), not a design choice."""
    import av

    from audiotoken_cli.audio.decode import open_media
    from audiotoken_cli.audio.media import info_of

    _check_nonempty(path)
    try:
        container = open_media(path)
    except (av.error.FFmpegError, OSError) as error:
        raise _Skip(f"FFmpeg cannot open it ({_reason(error)})") from error
    with container:
        if not container.streams.audio:
            raise _Skip("no audio track")
        audio = container.streams.audio[0]
        video = _picture_stream(container) if want_picture else None
        try:
            decoded = _first_frames(container, audio, video)
        except av.error.FFmpegError as error:
            raise _Skip(f"undecodable ({_reason(error)})") from error
        if audio not in decoded:
            raise _Skip(f"undecodable audio (no audio frame in the first {PROBE_SECONDS:g} s)")
        duration = info_of(container, path).duration
    return duration, video is not None and video in decoded


def _check_nonempty(path: Path) -> None:
    try:
        size = path.stat().st_size
    except OSError as error:
        raise _Skip(f"cannot be read ({_reason(error)})") from error
    if size == 0:
        raise _Skip("empty file (0 bytes)")




def _first_frames(container, audio, video) -> set:
    """The streams (of ``audio`` and ``video``) that yield a decoded frame near the start."""
    wanted = {audio} | ({video} if video is not None else set())
    decoded: set = set()
    for packet in container.demux(*wanted):
        if packet.stream in decoded:
            continue
        if packet.pts is not None and packet.time_base is not None and \
                packet.pts * packet.time_base > PROBE_SECONDS:
            break
        if packet.decode():
            decoded.add(packet.stream)
        if decoded == wanted:
            break
    return decoded


def _check_image(path: Path) -> None:
    from PIL import Image

    try:
        with Image.open(path) as picture:
            # Decoding (at reduced scale where the format allows) catches truncated files,
            # which would otherwise stop training the first time the image is drawn.
            picture.draft("RGB", (256, 256))
            picture.load()
    except Exception as error:  # PIL raises many types for a bad image
        raise _Skip(f"its image {path.name} cannot be read ({_reason(error)})") from error




# --- the dataset ----------------------------------------------------------------------------

class TrainingData(torch.utils.data.Dataset):
    """Random (audio window, frame) examples from scanned samples, reproducible from the seed.

    Item i of epoch e is drawn from a generator seeded by (seed, e, i): the same in any worker,
    in any order, and after a resume. The training loop calls ``set_epoch`` each epoch.
    """

    def __init__(self, samples: list[Sample], settings: DataSettings, seed: int):
        self.samples = list(samples)
        self.settings = settings
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def generator(self, index: int) -> np.random.Generator:
        """The generator item ``index`` of the current epoch is drawn with."""
        entropy = [self.seed % 2**64, self.epoch % 2**64, index]
        return np.random.default_rng(np.random.SeedSequence(entropy))

    def __getitem__(self, index: int) -> dict:
        return self.draw(index, self.generator(index))

    def draw(self, index: int, rng: np.random.Generator) -> dict:
        """One example, its randomness from ``rng`` only.

        Returns {'waveform': (S,) float32 at 16 kHz with S = audio_seconds × 16000,
        'pixels': (3, H, W) float32 in [-1, 1], 'geometry': (4,) int64 (original height and
        width, crop top and left; see ``frame_and_geometry``), 'label': str | None, 'index': int,
        'start': window start in seconds, 'frame_time': seconds (equal to start for images)}.
        """
        start = self._window_start(index, rng)
        frame_time = self._frame_time(index, start, rng)
        pixels, geometry = self.frame_and_geometry(index, frame_time)
        return {
            "waveform": self.waveform_at(index, start),
            "pixels": pixels,
            "geometry": geometry,
            "label": self.samples[index].label,
            "index": index,
            "start": start,
            "frame_time": frame_time,
        }

    def window_starts(self, index: int, count: int, rng: np.random.Generator) -> list[float]:
        """``count`` window starts for item ``index``, drawn as ``draw`` draws them."""
        return [self._window_start(index, rng) for _ in range(count)]

    def waveform_at(self, index: int, start: float) -> torch.Tensor:
        """The audio window from ``start`` seconds: (S,) float32, S = audio_seconds × 16 kHz.
        A silent window is zeros, as valid for training as for embedding."""
        # In process, not through the decoder worker: examples are drawn one at a time, often
        # from DataLoader worker processes, where starting a decoder process per example would
        # cost more than the decoding. Every file passed ``scan`` first.
        return load_window(self.samples[index].audio, Window(start, self.settings.audio_seconds))

    def frame_at(self, index: int, time: float) -> torch.Tensor:
        """The picture at ``time`` seconds (the image, for audio+image pairs), resized and
        center-cropped to the settings' size: (3, H, W) float32 in [-1, 1], RGB."""
        return self.frame_and_geometry(index, time)[0]

    def frame_and_geometry(self, index: int, time: float) -> tuple[torch.Tensor, torch.Tensor]:
        """``frame_at``'s pixels and the picture's (original height, original width, crop top,
        crop left) as a (4,) int64 tensor: SDXL's size and crop conditioning."""
        sample = self.samples[index]
        if sample.image is not None:
            picture = _read_image(sample.image)
        else:
            picture = read_frame(sample.audio, time)
        cropped, geometry = fit_and_crop_with_geometry(picture, self.settings.size)
        return to_pixels(cropped), torch.tensor(geometry, dtype=torch.int64)

    def _window_start(self, index: int, rng: np.random.Generator) -> float:
        """Uniform over the starts that keep the window inside the first clip_seconds of the
        audio; 0 for a clip no longer than the window (it is looped instead)."""
        span = min(self.samples[index].duration, self.settings.clip_seconds)
        latest = span - self.settings.audio_seconds
        return float(rng.uniform(0.0, latest)) if latest > 0 else 0.0

    def _frame_time(self, index: int, start: float, rng: np.random.Generator) -> float:
        """Uniform inside the window, and inside the clip when the window loops a short one."""
        sample = self.samples[index]
        if sample.image is not None:
            return start
        length = min(self.settings.audio_seconds, sample.duration - start)
        return start + float(rng.uniform(0.0, max(length, 0.0)))


def collate(batch: list[dict]) -> dict:
    """Stack a list of ``draw`` results: waveform (B, S), pixels (B, 3, H, W), index (B,) int64,
    start and frame_time (B,) float64; label stays a list of str | None."""
    out: dict = {}
    for key in batch[0]:
        values = [example[key] for example in batch]
        if isinstance(values[0], torch.Tensor):
            out[key] = torch.stack(values)
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            out[key] = torch.tensor(values)
        else:
            out[key] = values
    return out
