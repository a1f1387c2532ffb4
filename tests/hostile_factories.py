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


@dataclass(frozen=True)
class Corpus:
    bad: list[Path]     # each must get one error line naming it
    good: list[Path]    # odd but valid: each must give an output
    directory: Path     # a directory named like audio (a CLI scans folders, so kept apart)


def _truncated(folder: Path, name: str, keep: int, channels: int = 1, rate: int = 16000) -> Path:
    whole = write_audio(folder / f"whole-{name}", tone(1.0, rate=rate, channels=channels), rate=rate)
    path = folder / name
    path.write_bytes(whole.read_bytes()[:keep])
    whole.unlink()
    return path


def _rate_and_layout_change(folder: Path) -> Path:
    """Two ADTS AAC encodes end to end: 48 kHz mono, then 22.05 kHz stereo, in one stream."""
    first = write_audio(folder / "part1.aac", noise(1, 1.0, 48000), rate=48000, codec="aac")
    second = write_audio(folder / "part2.aac", noise(2, 1.0, 22050, 1), rate=22050, codec="aac")
    path = folder / "changes-rate-and-layout.aac"
    path.write_bytes(first.read_bytes() + second.read_bytes())
    first.unlink()
    second.unlink()
    return path


def make_hostile_corpus(folder: Path) -> Corpus:
    """Write every kind of bad or odd input into ``folder`` (created)."""
    folder.mkdir(parents=True, exist_ok=True)
    bad: list[Path] = []
    fifo = folder / "fifo.wav"
    os.mkfifo(fifo)
    loop_a, loop_b = folder / "loop-a.wav", folder / "loop-b.wav"
    os.symlink(loop_b, loop_a)
    os.symlink(loop_a, loop_b)
    device = folder / "device.wav"
    os.symlink("/dev/null", device)
    broken = folder / "broken-link.wav"
    os.symlink(folder / "gone.wav", broken)
    bad += [fifo, loop_a, device, broken]
    (folder / "zero-bytes.wav").write_bytes(b"")
    (folder / "text.wav").write_text("this is not audio\n")
    (folder / "picture.mp3").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    (folder / "random.ogg").write_bytes(np.random.default_rng(0).bytes(4000))
    bad += [folder / n for n in ("zero-bytes.wav", "text.wav", "picture.mp3", "random.ogg")]
    bad += [_truncated(folder, "truncated.wav", 30), _truncated(folder, "truncated.mp3", 10),
            _truncated(folder, "truncated.flac", 30), _truncated(folder, "truncated.ogg", 40),
            _truncated(folder, "truncated.m4a", 40)]
    nan, inf = noise(1, 1.0), noise(1, 1.0)
    nan[0, 500] = np.nan
    inf[0, 500] = np.inf
    bad += [write_wav(folder / "nan.wav", nan, fmt=FLOAT), write_wav(folder / "inf.wav", inf, fmt=FLOAT),
            # finite samples whose features overflow: the token would be NaN
            write_wav(folder / "1e30.wav", noise(1, 1.0, seed=9) * 1e30, fmt=FLOAT),
            write_wav(folder / "no-samples.wav", np.zeros((1, 0), np.float32)),
            write_video(folder / "no-audio.mp4", None)]
    good = [write_wav(folder / "eight-channels.wav", noise(8, 1.0)),
            write_wav(folder / "sixteen-channels.wav", noise(16, 1.0, seed=2)),
            write_wav(folder / "float-eight-channels.wav", noise(8, 1.0, seed=3), fmt=FLOAT),
            with_latin1_tag(write_wav(folder / "latin1-tag.wav", noise(2, 1.0, seed=4))),
            _rate_and_layout_change(folder),
            write_wav(folder / "one-sample.wav", np.full((1, 1), 0.5, np.float32)),
            write_wav(folder / "8khz.wav", noise(1, 1.0, 8000, 5), 8000),
            write_wav(folder / "96khz.wav", noise(2, 0.5, 96000, 6), 96000),
            write_wav(folder / "11025hz.wav", noise(1, 1.0, 11025, 7), 11025),
            write_wav(folder / "header-claims-huge-sizes.wav", noise(1, 1.0, seed=8),
                      data_size=0xFFFFFFF0, riff_size=0xFFFFFFF8),
            write_wav(folder / "silence.wav", np.zeros((1, 16000), np.float32))]  # silence is a sound
    directory = folder / "directory.wav"
    directory.mkdir()
    return Corpus(bad, good, directory)
