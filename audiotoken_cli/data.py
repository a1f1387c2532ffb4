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

import csv
import math
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from audiotoken_cli.audio import AUDIO_EXTENSIONS, VIDEO_EXTENSIONS, load_window
from audiotoken_cli.config import SAMPLE_RATE, Window
from audiotoken_cli.errors import InputError, UsageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
"""Pictures that pair with an audio file of the same stem, in order of preference."""

MIN_AUDIO_SECONDS = 0.5
"""Shorter clips would be one sound looped many times over; they are skipped."""

VGGSOUND_CLIP_SECONDS = 10
"""VGGSound clips are 10 s; the paper's file names carry start and end in milliseconds."""

SIZE_MULTIPLE = 8
"""Stable Diffusion's VAE downsamples by 8, so training frames must be multiples of it."""

SCAN_THREADS = min(8, os.cpu_count() or 1)
"""Probing is mostly waiting on the disk and FFmpeg, which runs outside the GIL."""

PROBE_SECONDS = 5.0
"""How far into a file the scan looks for a first decodable audio and video frame."""

ATTACHED_PICTURE = 0x0400
"""FFmpeg's AV_DISPOSITION_ATTACHED_PIC: a video stream that is an album cover, not a video."""

COLUMN_NAMES = {
    "ytid": "ytid", "youtube_id": "ytid", "youtubeid": "ytid", "video_id": "ytid",
    "start": "start", "start_seconds": "start", "start_time": "start",
    "label": "label", "class": "label",
    "split": "split", "set": "split",
    "file": "file", "path": "file", "filename": "file", "file_name": "file",
}
"""Header names a labels CSV may use, mapped to the column they stand for."""


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


def read_labels(path: Path) -> dict[str, str]:
    """Read a labels CSV into key → label.

    Two layouts, each with or without a header row:
    - VGGSound's ``ytid,start,label,split`` (split optional): keys are the ytid and the paper's
      file stem ``{ytid}_{start*1000}_{(start+10)*1000}`` (also ``{ytid}_{start:06d}``).
    - ``file,label``: keys are the file as written, a path relative to the data folder or a stem.
    A ytid listed with two different labels keeps no ytid-only key, since it would be a guess.
    """
    path = Path(path)
    rows = _read_csv_rows(path)
    if not rows:
        raise InputError(f"{path}: the labels file has no rows")
    columns, rows = _columns(path, rows)
    labels: dict[str, str] = {}
    ambiguous: set[str] = set()
    for line, fields in rows:
        record = _record(path, line, fields, columns)
        if "ytid" in columns:
            _add_vggsound(labels, ambiguous, path, line, record)
        else:
            _add_key(labels, path, line, _normal_key(record["file"]), record["label"])
    for ytid in ambiguous:
        labels.pop(ytid, None)
    return labels


def _read_csv_rows(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, stripped fields) for each non-blank, non-comment row."""
    rows = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            for fields in reader:
                rows.append((reader.line_num, fields))
    except FileNotFoundError as error:
        raise InputError(f"{path}: no such labels file") from error
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InputError(f"{path}: cannot be read as a CSV file ({error})") from error
    kept = []
    for line, fields in rows:
        fields = [field.strip() for field in fields]
        if any(fields) and not fields[0].startswith("#"):
            kept.append((line, fields))
    return kept


def _columns(path: Path, rows: list[tuple[int, list[str]]]) -> tuple[dict[str, int], list]:
    """Which field holds what, from the header row if there is one, else from the field count."""
    line, first = rows[0]
    names = [COLUMN_NAMES.get(field.lower().replace(" ", "_")) for field in first]
    if "label" in names:  # a header row; columns it does not name are ignored
        columns: dict[str, int] = {}
        for index, name in enumerate(names):
            if name:
                columns.setdefault(name, index)
        if not ({"ytid", "start"} <= columns.keys() or "file" in columns):
            raise InputError(f"{path}, line {line}: the header needs ytid,start,label[,split] "
                             f"or file,label; it has {','.join(first)}")
        return columns, rows[1:]
    if len(first) in (3, 4) and _is_number(first[1]):
        return {"ytid": 0, "start": 1, "label": 2}, rows
    if len(first) == 2:
        return {"file": 0, "label": 1}, rows
    raise InputError(f"{path}, line {line}: expected ytid,start,label,split (VGGSound) or "
                     f"file,label; found {len(first)} fields")


def _record(path: Path, line: int, fields: list[str], columns: dict[str, int]) -> dict[str, str]:
    """The named fields of one row, checked."""
    if len(fields) <= max(columns.values()):
        layout = "ytid,start,label,split" if "ytid" in columns else "file,label"
        raise InputError(f"{path}, line {line}: expected {layout}; found {len(fields)} fields")
    record = {name: fields[i] for name, i in columns.items()}
    key = record.get("ytid", record.get("file"))
    if not key or not record["label"]:
        raise InputError(f"{path}, line {line}: empty file name or label")
    if "start" in record and not _is_number(record["start"]):
        raise InputError(f"{path}, line {line}: start {record['start']!r} is not a number of "
                         "seconds")
    return record


def _add_vggsound(labels: dict[str, str], ambiguous: set[str], path: Path, line: int,
                  record: dict[str, str]) -> None:
    ytid, label = record["ytid"], record["label"]
    start = float(record["start"])
    start_ms = round(start * 1000)
    end_ms = round((start + VGGSOUND_CLIP_SECONDS) * 1000)
    _add_key(labels, path, line, f"{ytid}_{start_ms}_{end_ms}", label)
    if start == int(start):
        labels.setdefault(f"{ytid}_{int(start):06d}", label)
    if labels.setdefault(ytid, label) != label:
        ambiguous.add(ytid)


def _add_key(labels: dict[str, str], path: Path, line: int, key: str, label: str) -> None:
    if labels.setdefault(key, label) != label:
        raise InputError(f"{path}, line {line}: {key} is labelled both {labels[key]!r} and "
                         f"{label!r}")


def _normal_key(text: str) -> str:
    key = text.replace("\\", "/")
    while key.startswith("./"):
        key = key[2:]
    return key


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def label_for(relative: Path, labels: dict[str, str] | None) -> str | None:
    """A file's label: from ``labels`` by relative path, path without suffix, name or stem;
    without labels, the first folder under the data folder (None for files in the root)."""
    if labels is None:
        return relative.parts[0] if len(relative.parts) > 1 else None
    for key in (relative.as_posix(), relative.with_suffix("").as_posix(), relative.name,
                relative.stem):
        if key in labels:
            return labels[key]
    return None


# --- scanning the folder --------------------------------------------------------------------

def scan(settings: DataSettings) -> tuple[list[Sample], list[str]]:
    """Usable samples (sorted by path) and one warning line per skipped file.

    Raises ``InputError`` when the folder is missing or nothing in it is usable.
    """
    root = Path(settings.root)
    if not root.is_dir():
        raise InputError(f"{root}: no such folder (the training data must be a folder)")
    labels = read_labels(settings.labels) if settings.labels is not None else None
    media, images = _find_files(root)

    def check(path: Path) -> tuple[Path | None, float] | str:
        try:
            return _check(path, images.get(path.with_suffix("")))
        except _Skip as reason:
            return f"{path}: skipped, {reason}"

    samples: list[Sample] = []
    warnings: list[str] = []
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
    return samples, warnings


def _find_files(root: Path) -> tuple[list[Path], dict[Path, Path]]:
    """Media files (sorted) and, per path without suffix, the image that pairs with it.

    Hidden files and folders are left out, as the other commands do.
    """
    media: list[Path] = []
    images: dict[Path, Path] = {}
    for path in sorted(root.rglob("*")):
        if any(part.startswith(".") for part in path.relative_to(root).parts) or not path.is_file():
            continue
        suffix = path.suffix.lower()
        if suffix in AUDIO_EXTENSIONS or suffix in VIDEO_EXTENSIONS:
            media.append(path)
        elif suffix in IMAGE_EXTENSIONS:
            stem = path.with_suffix("")
            known = images.get(stem)
            if known is None or _image_rank(path) < _image_rank(known):
                images[stem] = path
    return media, images


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
    """(audio seconds, whether a video stream decodes), decoding only the first frames."""
    import av

    _check_nonempty(path)
    try:
        container = av.open(str(path))
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
        duration = _audio_duration(container, audio)
    return duration, video is not None and video in decoded


def _check_nonempty(path: Path) -> None:
    try:
        size = path.stat().st_size
    except OSError as error:
        raise _Skip(f"cannot be read ({_reason(error)})") from error
    if size == 0:
        raise _Skip("empty file (0 bytes)")


def _picture_stream(container):
    """The first real video stream; cover art (an attached picture) does not count."""
    for stream in container.streams.video:
        if not int(getattr(stream, "disposition", 0)) & ATTACHED_PICTURE:
            return stream
    return None


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


def _audio_duration(container, stream) -> float:
    """Seconds of audio according to the container; measured by decoding if it does not say."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000  # AV_TIME_BASE
    container.seek(0)
    samples = sum(frame.samples for frame in container.decode(stream))
    return samples / (stream.rate or SAMPLE_RATE)


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


def _reason(error: Exception) -> str:
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


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
        'pixels': (3, H, W) float32 in [-1, 1], 'label': str | None, 'index': int,
        'start': window start in seconds, 'frame_time': seconds (equal to start for images)}.
        """
        start = self._window_start(index, rng)
        frame_time = self._frame_time(index, start, rng)
        return {
            "waveform": self.waveform_at(index, start),
            "pixels": self.frame_at(index, frame_time),
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

        A silent window is zeros: silence is valid training data, though ``load_window`` refuses
        it for embedding.
        """
        window = Window(start, self.settings.audio_seconds)
        try:
            return load_window(self.samples[index].audio, window)
        except InputError as error:
            if "silent" not in str(error):
                raise
            return torch.zeros(window.num_samples)

    def frame_at(self, index: int, time: float) -> torch.Tensor:
        """The picture at ``time`` seconds (the image, for audio+image pairs), resized and
        center-cropped to the settings' size: (3, H, W) float32 in [-1, 1], RGB."""
        sample = self.samples[index]
        if sample.image is not None:
            picture = _read_image(sample.image)
        else:
            picture = read_frame(sample.audio, time)
        return to_pixels(fit_and_crop(picture, self.settings.size))

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


# --- pictures -------------------------------------------------------------------------------

def read_frame(path: Path, time: float):
    """The first video frame at or after ``time`` seconds (from the video's first frame), as an
    RGB PIL image; the last frame if the video ends first.

    Seeks to the keyframe before ``time`` and decodes forward, so the cost is one group of
    pictures whatever the file's length.
    """
    import av

    try:
        with av.open(str(path)) as container:
            stream = _picture_stream(container)
            if stream is None:
                raise InputError(f"{path}: has no video stream")
            frame = _frame_from(container, stream, time)
    except av.error.FFmpegError as error:
        raise InputError(f"{path}: cannot decode a video frame ({_reason(error)})") from error
    if frame is None:
        raise InputError(f"{path}: the video stream holds no frames")
    return frame.to_image()


def _frame_from(container, stream, time: float):
    """Seek and decode forward to the first frame at/after ``time``; None if none decodes."""
    origin = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    target = origin + max(time, 0.0)
    if stream.time_base is not None:
        container.seek(int(target / stream.time_base), stream=stream, backward=True,
                       any_frame=False)
    last = None
    for frame in container.decode(stream):
        last = frame
        # The slack keeps a frame stamped exactly at ``time`` despite float rounding; a stream
        # without timestamps gets the first frame after the seek.
        if frame.time is None or frame.time >= target - 1e-6:
            return frame
    return last


def _read_image(path: Path):
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as picture:
            # Phone photos store their rotation in EXIF; apply it so the frame is upright.
            return ImageOps.exif_transpose(picture).convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise InputError(f"{path}: cannot read the image ({_reason(error)})") from error


def fit_and_crop(picture, size: tuple[int, int]):
    """Resize (bicubic) so the picture covers ``size`` = (width, height), then crop the middle."""
    from PIL import Image

    width, height = size
    scale = max(width / picture.width, height / picture.height)
    scaled = (max(width, round(picture.width * scale)), max(height, round(picture.height * scale)))
    picture = picture.resize(scaled, resample=Image.Resampling.BICUBIC)
    left = (scaled[0] - width) // 2
    top = (scaled[1] - height) // 2
    return picture.crop((left, top, left + width, top + height))


def to_pixels(picture) -> torch.Tensor:
    """An RGB PIL image → (3, H, W) float32 in [-1, 1], the range Stable Diffusion's VAE takes."""
    array = np.asarray(picture.convert("RGB"), dtype=np.float32)  # (H, W, 3)
    return torch.from_numpy(array / 127.5 - 1.0).permute(2, 0, 1).contiguous()
