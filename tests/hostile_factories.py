"""Bad and odd inputs, each a small file: the corpus the hostile-input tests run through every
command. ``make_hostile_corpus(folder)`` writes them all and says which must fail and which are
good (odd but valid) files.

WAV files are written by hand (RIFF is a few fixed fields) so that a test can say exactly what
the header claims: channel counts FFmpeg's encoders refuse, NaN samples, lying sizes.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from factories import tone, write_audio, write_video

PCM, FLOAT = 1, 3


def wav_bytes(samples: np.ndarray, rate: int = 16000, fmt: int = PCM,
              data_size: int | None = None, riff_size: int | None = None) -> bytes:
    """A RIFF/WAVE file: ``samples`` (channels, n) as 16-bit PCM or 32-bit float.
    ``data_size``/``riff_size`` override the header's sizes (to lie about them)."""
    samples = np.atleast_2d(samples)
    channels = samples.shape[0]
    if fmt == PCM:
        body = (np.clip(samples, -1, 1) * 32767).round().astype("<i2").T.tobytes()
        width = 2
    else:
        body = samples.astype("<f4").T.tobytes()
        width = 4
    fmt_chunk = struct.pack("<HHIIHH", fmt, channels, rate, rate * channels * width,
                            channels * width, width * 8)
    data_size = len(body) if data_size is None else data_size
    chunks = (b"fmt " + struct.pack("<I", len(fmt_chunk)) + fmt_chunk
              + b"data" + struct.pack("<I", data_size) + body)
    riff_size = 4 + len(chunks) if riff_size is None else riff_size
    return b"RIFF" + struct.pack("<I", riff_size) + b"WAVE" + chunks


def write_wav(path: Path, samples: np.ndarray, rate: int = 16000, fmt: int = PCM, **sizes) -> Path:
    path.write_bytes(wav_bytes(samples, rate, fmt, **sizes))
    return path


def noise(channels: int, seconds: float, rate: int = 16000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((channels, int(seconds * rate))) * 0.2).astype(np.float32)


def with_latin1_tag(path: Path, title: bytes = b"Caf\xe9 \xff\xfe m\xfasica") -> Path:
    """Append a RIFF LIST/INFO chunk whose title is Latin-1, not UTF-8."""
    data = bytearray(path.read_bytes())
    text = title + b"\0"
    if len(text) % 2:
        text += b"\0"
    info = b"INFO" + b"INAM" + struct.pack("<I", len(text)) + text
    data += b"LIST" + struct.pack("<I", len(info)) + info
    data[4:8] = struct.pack("<I", len(data) - 8)
    path.write_bytes(bytes(data))
    return path
