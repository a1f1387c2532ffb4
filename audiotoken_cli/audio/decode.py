"""Audio in: any file FFmpeg reads → one float32 mono 16 kHz window of fixed length.

The paper's window is the first 10 s of a clip; a shorter clip is looped (tiled) until it fills the
window. ``Window(start, duration)`` generalises that. Decoding stops as soon as the window is full,
so a two-hour file costs what a ten-second one does; a late ``start`` seeks instead of decoding
everything before it.
"""

from __future__ import annotations

import errno
import math
from pathlib import Path

import numpy as np
import torch

from audiotoken_cli.config import SAMPLE_RATE, Window
from audiotoken_cli.errors import InputError

AUDIO_EXTENSIONS = frozenset(
    ".wav .wave .flac .mp3 .ogg .oga .opus .m4a .aac .wma .aif .aiff .aifc .caf .mka .ac3 .amr"
    .split()
)
VIDEO_EXTENSIONS = frozenset(".mp4 .m4v .mkv .webm .mov .avi .mpg .mpeg .ts .3gp .flv .wmv".split())
MEDIA_EXTENSIONS = AUDIO_EXTENSIONS | VIDEO_EXTENSIONS

SEEK_THRESHOLD_SECONDS = 30.0
"""Below this start time we decode from the beginning, which is exact to the sample; above it we
seek first, which is fast but aligns the window only to the decoder's timestamps."""

SILENCE_PEAK = 1.0 / 32768.0
"""A window whose peak is below one 16-bit step carries no sound to encode."""


def load_window(path: str | Path, window: Window = Window()) -> torch.Tensor:
    """Decode ``window`` of ``path`` to a float32 mono waveform at 16 kHz.

    Returns a tensor of shape (window.num_samples,). Channels are averaged (FFmpeg's own downmix
    scales by 1/√2, which would change the features). Raises ``InputError`` naming the file for
    anything that is not usable audio: missing, empty, unreadable, not media, no audio track,
    corrupt, a start past the end, or silence.
    """
    path = Path(path)
    _check_readable_file(path)
    wanted = window.num_samples
    if wanted <= 0:
        raise InputError(f"{path}: the window is empty (duration {window.duration} s)")

    chunks = _decode_span(path, window.start, wanted)
    audio = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
    if audio.size == 0:
        if window.start > 0:
            raise InputError(f"{path}: --start {window.start:g} s is past the end of the audio")
        raise InputError(f"{path}: the audio track holds no samples")
    audio = _loop_to_length(audio, wanted)
    if float(np.abs(audio).max()) < SILENCE_PEAK:
        raise InputError(f"{path}: the audio is silent (every sample is zero)")
    return torch.from_numpy(audio)


def _check_readable_file(path: Path) -> None:
    """Turn the usual file-system problems into one-line errors before FFmpeg sees the file."""
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not an audio file")
    try:
        with open(path, "rb") as handle:
            first_byte = handle.read(1)
    except OSError as error:
        raise InputError(f"{path}: cannot be read ({_os_reason(error)})") from error
    if not first_byte:
        raise InputError(f"{path}: the file is empty (0 bytes)")


def _os_reason(error: OSError) -> str:
    if error.errno == errno.EACCES:
        return "permission denied"
    return error.strerror or type(error).__name__


def _decode_span(path: Path, start: float, wanted: int) -> list[np.ndarray]:
    """Decode up to ``wanted`` mono samples beginning at ``start`` seconds. May return fewer
    (the file ended first); the caller loops them."""
    import av

    try:
        container = av.open(str(path))
    except av.error.FFmpegError as error:
        raise InputError(f"{path}: not an audio or video file FFmpeg can read") from error
    except OSError as error:
        raise InputError(f"{path}: cannot be read ({_os_reason(error)})") from error
    with container:
        if not container.streams.audio:
            raise InputError(f"{path}: has no audio track")
        stream = container.streams.audio[0]
        try:
            return _collect_samples(container, stream, start, wanted)
        except av.error.FFmpegError as error:
            raise InputError(f"{path}: corrupt or undecodable audio ({error.strerror})") from error


def _collect_samples(container, stream, start: float, wanted: int) -> list[np.ndarray]:
    """Walk decoded frames, skip to ``start``, keep ``wanted`` samples, and stop there."""
    import av

    skip = round(start * SAMPLE_RATE)
    if start >= SEEK_THRESHOLD_SECONDS and stream.time_base is not None:
        skip = _seek_before(container, stream, start)
    # Keep the source's channel layout: we average channels ourselves below.
    resampler = av.AudioResampler(format="fltp", rate=SAMPLE_RATE)
    chunks: list[np.ndarray] = []
    have = 0
    for frame in _frames_then_flush(container, stream, resampler):
        mono = frame.to_ndarray().mean(axis=0, dtype=np.float32)  # (channels, n) → (n,)
        if skip >= mono.size:
            skip -= mono.size
            continue
        mono = mono[skip:]
        skip = 0
        mono = mono[: wanted - have]
        chunks.append(mono)
        have += mono.size
        if have >= wanted:
            break
    return chunks


def _seek_before(container, stream, start: float) -> int:
    """Seek to the keyframe before ``start``; return how many 16 kHz samples to skip after it.

    The skip is measured from the first decoded frame's timestamp, so it is only known after
    decoding starts; we return -1 to mean "measure it" and let ``_frames_then_flush`` do it.
    """
    target = int(start / stream.time_base)
    container.seek(target, stream=stream, backward=True, any_frame=False)
    first = next(container.decode(stream), None)
    if first is None or first.time is None:
        # No timestamps to align to: rewind and skip by counting samples instead.
        container.seek(0, stream=stream)
        return round(start * SAMPLE_RATE)
    container.seek(target, stream=stream, backward=True, any_frame=False)
    return max(0, round((start - first.time) * SAMPLE_RATE))


def _frames_then_flush(container, stream, resampler):
    """Yield resampled frames from the stream, then what the resampler still holds."""
    for frame in container.decode(stream):
        yield from resampler.resample(frame)
    yield from resampler.resample(None)


def _loop_to_length(audio: np.ndarray, length: int) -> np.ndarray:
    """Tile a short clip end to end until it is ``length`` samples long (the paper's rule)."""
    if audio.size >= length:
        return np.ascontiguousarray(audio[:length], dtype=np.float32)
    repeats = math.ceil(length / audio.size)
    return np.tile(audio, repeats)[:length].astype(np.float32, copy=False)


def is_media_file(path: Path) -> bool:
    """Whether a file found while scanning a directory looks like audio or video by its suffix."""
    return path.suffix.lower() in MEDIA_EXTENSIONS
