"""`audiotoken eval` over hostile pictures beside good ones: a decompression bomb (generated and
real), FIFOs named like images, a truncated PNG, text named .png, a folder named .png. Each is one line naming the
file, the good images are scored, the exit code is 1, and nothing hangs (a child process with a
time limit runs the real CLI)."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

from eval_factories import make_tiny_clip, make_tiny_wav2clip, random_inception, save_png
from factories import tone, write_audio


def png_chunk(tag: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + tag + data
            + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))


def decompression_bomb(path: Path) -> Path:
    """A 100 000 × 100 000 PNG header: Pillow refuses to open it (DecompressionBombError)."""
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header)
                     + png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + png_chunk(b"IEND", b""))
    return path


def test_every_bad_picture_is_one_line_and_the_run_goes_on(tmp_path):
    audio, images = tmp_path / "audio", tmp_path / "images"
    audio.mkdir()
    images.mkdir()
    for index, name in enumerate(("dog", "rain", "bell", "bird", "owl")):
        write_audio(audio / f"{name}.wav", tone(0.5, freq=300.0 * (index + 1), seed=index))
    save_png(images / "dog_seed0.png", 0)
    save_png(images / "rain_seed0.png", 1)
    bad = {
        "bomb": decompression_bomb(images / "bell_seed0.png"),
        "fifo": images / "x.png",
        "loose fifo": tmp_path / "loose_seed0.png",
        "truncated": images / "bird_seed0.png",
        "text": images / "owl_seed0.png",
        "folder": images / "dog_seed9.png",
    }
    os.mkfifo(bad["fifo"])
    os.mkfifo(bad["loose fifo"])
    whole = (images / "dog_seed0.png").read_bytes()
    bad["truncated"].write_bytes(whole[:len(whole) // 2])
    bad["text"].write_text("not a picture")
    bad["folder"].mkdir()
    real = tmp_path / "real"  # a good frame for dog, a decompression bomb for rain
    real.mkdir()
    save_png(real / "dog.png", 7)
    bad["real bomb"] = decompression_bomb(real / "rain.png")
    save_png(images / "rain_seed1.png", 2)  # two images share the bad frame: one line still
    out = tmp_path / "out"
    command = [sys.executable, "-m", "audiotoken_cli", "eval", str(images), str(bad["loose fifo"]),
               "--audio", str(audio), "-o", str(out),
               "--clip-b32", str(make_tiny_clip(tmp_path / "b32", projection=512, seed=3)),
               "--wav2clip", str(make_tiny_wav2clip(tmp_path / "Wav2CLIP.pt")),
               "--real", str(real), "--inception", str(random_inception()),
               "--clip-l14", str(tmp_path / "b32"),
               "--offline", "--device", "cpu", "--quiet"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    said = done.stdout + done.stderr
    assert done.returncode == 1, said
    assert "Traceback" not in said, said
    lines = [line for line in said.splitlines() if line.startswith("error:")]
    for kind, path in bad.items():
        named = [line for line in lines if str(path) in line]
        assert len(named) == 1, (kind, said)
    assert "named pipe (FIFO)" in next(line for line in lines if str(bad["fifo"]) in line)
    assert "exceeds limit" in next(line for line in lines if str(bad["bomb"]) in line)
    report = json.loads((out / "eval.json").read_text())
    assert report["images"]["counted"] == 3
    assert report["figures"]["ais"]["pairs"] == 3
    assert report["figures"]["iis_b32"]["pairs"] == 1  # only dog has a readable real frame
    assert "needs at least 2 real" in report["figures"]["fid"]["skipped"]
