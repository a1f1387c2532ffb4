"""Seeded mutations of real encoded files, shared by tests/test_fuzz_decode.py and
benchmarks/fuzz_decode.py: bit flips, truncations, duplicated byte ranges, overwritten header
fields."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from factories import tone, write_audio, write_video


def seed_files(folder: Path) -> list[Path]:
    """One real file per container: wav, mp3, flac, ogg, mp4."""
    folder.mkdir(parents=True, exist_ok=True)
    stereo = tone(1.5, rate=44100, channels=2, seed=1)
    return [write_audio(folder / "seed.wav", stereo, rate=44100),
            write_audio(folder / "seed.mp3", stereo, rate=44100),
            write_audio(folder / "seed.flac", stereo, rate=44100),
            write_audio(folder / "seed.ogg", tone(1.5, rate=16000, seed=2)),
            write_video(folder / "seed.mp4", tone(1.0, seed=3), seconds=1.0)]


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    out = bytearray(data)
    kind = rng.integers(4)
    if kind == 0:  # bit flips
        for _ in range(int(rng.integers(1, 20))):
            position = int(rng.integers(len(out)))
            out[position] ^= 1 << int(rng.integers(8))
    elif kind == 1:  # truncation
        out = out[: int(rng.integers(1, len(out)))]
    elif kind == 2:  # a byte range duplicated somewhere else
        begin = int(rng.integers(len(out)))
        piece = out[begin: begin + int(rng.integers(1, 4096))]
        at = int(rng.integers(len(out)))
        out[at:at] = piece
    else:  # a header field overwritten with an extreme value
        position = int(rng.integers(min(len(out), 128)))
        value = rng.choice([b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\xff\xff\xff\x7f",
                            b"\x00\x00\x00\x80", b"\x01\x00"])
        out[position: position + len(value)] = value
    return bytes(out)


def write_cases(folder: Path, seeds: list[Path], count: int, seed: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    originals = [path.read_bytes() for path in seeds]
    cases = []
    for index in range(count):
        which = index % len(seeds)
        path = folder / f"case{index:05d}{seeds[which].suffix}"
        path.write_bytes(mutate(originals[which], rng))
        cases.append(path)
    return cases
