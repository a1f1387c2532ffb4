"""Audio in: any file FFmpeg reads → one float32 mono 16 kHz window of fixed length.

The paper's window is the first 10 s of a clip; a shorter clip is looped (tiled) until it fills the
window. ``Window(start, duration)`` generalises that. Decoding stops as soon as the window is full,
so a two-hour file costs what a ten-second one does; a late ``start`` seeks instead of decoding
everything before it.
"""

from __future__ import annotations

import errno
import math
import os
import stat
from pathlib import Path

import numpy as np

from audiotoken_cli.config import SAMPLE_RATE, Window
from audiotoken_cli.errors import InputError

AUDIO_EXTENSIONS = frozenset(
    [".wav", ".wave", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".wma", ".aif", ".aiff", ".aifc", ".caf", ".mka", ".ac3", ".amr"]
)
VIDEO_EXTENSIONS = frozenset([".mp4", ".m4v", ".mkv", ".webm", ".mov", ".avi", ".mpg", ".mpeg", ".ts", ".3gp", ".flv", ".wmv"])
MEDIA_EXTENSIONS = AUDIO_EXTENSIONS | VIDEO_EXTENSIONS

SEEK_THRESHOLD_SECONDS = 30.0
"""Below this start time we decode from the beginning, which is exact to the sample; above it we
seek first, which is fast but aligns the window only to the decoder's timestamps."""

SILENCE_PEAK = 1.0 / 32768.0
"""A window whose peak is below one 16-bit step carries no sound to encode."""


def load_window(path: str | Path, window: Window = Window()):
    """``decode_window`` as a torch tensor of shape (window.num_samples,)."""
    import torch  # here, not at the top: the decoder worker process never needs torch

    return torch.from_numpy(decode_window(path, window))


def decode_window(path: str | Path, window: Window = Window()) -> np.ndarray:
    """Decode ``window`` of ``path`` to a float32 mono waveform at 16 kHz.

    Returns a float32 array of shape (window.num_samples,). Channels are averaged (FFmpeg's own downmix
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
    if not np.isfinite(audio).all():
        raise InputError(f"{path}: the audio holds NaN or infinite samples")
    audio = _loop_to_length(audio, wanted)
    if float(np.abs(audio).max()) < SILENCE_PEAK:
        raise InputError(f"{path}: the audio is silent (every sample is zero)")
    return audio


def _check_readable_file(path: Path) -> None:
    """Turn the usual file-system problems into one-line errors before FFmpeg sees the file.

    Only a regular file may reach FFmpeg: a FIFO blocks ``av.open`` for ever, a device streams
    without end, and a symlink loop or a directory fails deep inside FFmpeg.
    """
    check_regular_file(path)
    try:
        with open(path, "rb") as handle:
            first_byte = handle.read(1)
    except OSError as error:
        raise InputError(f"{path}: cannot be read ({_os_reason(error)})") from error
    if not first_byte:
        raise InputError(f"{path}: the file is empty (0 bytes)")


def check_regular_file(path: Path) -> None:
    """Raise ``InputError`` unless ``path`` (after symlinks) is a regular file. Never opens it."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError as error:
        if os.path.islink(path):
            raise InputError(f"{path}: is a broken symbolic link") from error
        raise InputError(f"{path}: no such file") from error
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise InputError(f"{path}: is a symbolic link loop") from error
        raise InputError(f"{path}: cannot be read ({_os_reason(error)})") from error
    if stat.S_ISREG(mode):
        return
    raise InputError(f"{path}: is {_kind_of(mode)}, not an audio file")


def _kind_of(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def open_media(path: Path):
    """``av.open`` for a user's file: tags that are not UTF-8 are decoded with replacement
    characters instead of aborting the open with UnicodeDecodeError."""
    import av

    return av.open(str(path), metadata_errors="replace")


def open_input(path: Path):
    """``open_media`` for a path the caller has checked, with FFmpeg's and the file system's
    failures turned into one-line ``InputError``s naming the file."""
    import av

    try:
        return open_media(path)
    except av.error.FFmpegError as error:
        raise InputError(f"{path}: not an audio or video file FFmpeg can read") from error
    except OSError as error:
        raise InputError(f"{path}: cannot be read ({_os_reason(error)})") from error
    except (UnicodeDecodeError, ValueError) as error:
        raise InputError(f"{path}: unreadable container ({error})") from error


def _os_reason(error: OSError) -> str:
    if error.errno == errno.EACCES:
        return "permission denied"
    return error.strerror or type(error).__name__


def _decode_span(path: Path, start: float, wanted: int) -> list[np.ndarray]:
    """Decode up to ``wanted`` mono samples beginning at ``start`` seconds. May return fewer
    (the file ended first); the caller loops them."""
    import av

    with open_input(path) as container:
        if not container.streams.audio:
            raise InputError(f"{path}: has no audio track")
        stream = container.streams.audio[0]
        try:
            return _collect_samples(container, stream, start, wanted)
        except av.error.FFmpegError as error:
            raise InputError(f"{path}: corrupt or undecodable audio ({error.strerror})") from error
        except (ValueError, UnicodeDecodeError, OverflowError, ZeroDivisionError) as error:
            # PyAV raises these for broken headers (a zero rate, an absurd layout) and for
            # timestamps it cannot convert; they are the file's fault, not ours.
            raise InputError(f"{path}: corrupt or undecodable audio ({error})") from error


def _collect_samples(container, stream, start: float, wanted: int) -> list[np.ndarray]:
    """Walk decoded frames, skip to ``start``, keep ``wanted`` samples, and stop there."""
    skip = round(start * SAMPLE_RATE)
    if start >= SEEK_THRESHOLD_SECONDS and stream.time_base is not None:
        skip = _seek_before(container, stream, start)
    chunks: list[np.ndarray] = []
    have = 0
    for mono in _mono_frames(container, stream):
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
    decoding starts; we return -1 to mean "measure it" and let the frame walk do it.
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


def _mono_frames(container, stream):
    """Yield each decoded frame as float32 mono at 16 kHz, then what the resampler still holds.

    The resampler keeps the source's layout and gives packed float ("flt"): PyAV 18.1's
    ``to_ndarray`` segfaults on planar float with 8 or more channels, and FFmpeg's own downmix
    scales by 1/√2, so we average the interleaved channels ourselves. A stream whose format, rate
    or layout changes part way gets a fresh resampler (the old one flushed first), since one
    resampler only accepts frames like its first.
    """
    import av

    resampler, shape = None, None
    for frame in container.decode(stream):
        frame_shape = (frame.format.name, frame.sample_rate, frame.layout.name,
                       len(frame.layout.channels))
        if frame_shape != shape:
            if resampler is not None:
                yield from _to_mono(resampler.resample(None))
            resampler = av.AudioResampler(format="flt", layout=frame.layout, rate=SAMPLE_RATE)
            shape = frame_shape
        yield from _to_mono(resampler.resample(frame))
    if resampler is not None:
        yield from _to_mono(resampler.resample(None))


def _to_mono(frames) -> list[np.ndarray]:
    """Packed float frames (1, n × channels) → mono (n,): the plain mean of the channels."""
    out = []
    for frame in frames:
        channels = len(frame.layout.channels)
        interleaved = frame.to_ndarray().reshape(-1, channels)
        out.append(interleaved.mean(axis=1, dtype=np.float32))
    return out


def _loop_to_length(audio: np.ndarray, length: int) -> np.ndarray:
    """Tile a short clip end to end until it is ``length`` samples long (the paper's rule)."""
    if audio.size >= length:
        return np.ascontiguousarray(audio[:length], dtype=np.float32)
    repeats = math.ceil(length / audio.size)
    return np.tile(audio, repeats)[:length].astype(np.float32, copy=False)


def is_media_file(path: Path) -> bool:
    """Whether a file found while scanning a directory looks like audio or video by its suffix."""
    return path.suffix.lower() in MEDIA_EXTENSIONS
