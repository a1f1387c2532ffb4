"""The hostile-input suite: every kind of bad or odd file from ``hostile_factories`` in ONE batch
beside good files, through the real command line in a child process (so a segfault would show as
a signal exit, not kill the test run)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from factories import make_paper_embedder, make_tiny_sd, tone, write_audio
from hostile_factories import make_hostile_corpus

DATA = Path(__file__).parent / "data"
TINY_BEATS = DATA / "tiny_beats.pt"


@pytest.fixture
def corpus(tmp_path):
    return make_hostile_corpus(tmp_path / "hostile")


def run_cli(*args, timeout=600) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    return subprocess.run([sys.executable, "-m", "audiotoken_cli", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=timeout)


def assert_each_bad_file_has_its_own_line(output: str, bad: list[Path]) -> None:
    lines = output.splitlines()
    for path in bad:
        named = [line for line in lines if f"{path}:" in line]
        assert len(named) == 1, (path, named, output)


def test_embed_a_batch_of_hostile_files_beside_good_ones(corpus, tmp_path):
    good = corpus.good + [write_audio(tmp_path / "dog.wav", tone(2.0, freq=300, seed=1))]
    embedder = make_paper_embedder(tmp_path / "embedder.bin", input_dim=96, token_dim=32)
    out = tmp_path / "out"
    result = run_cli("embed", *corpus.bad, *good, "-o", out, "--audio-encoder", TINY_BEATS,
                     "--embedder", embedder, "--device", "cpu")
    output = result.stdout + result.stderr
    assert result.returncode == 1, output  # not a signal (negative), not success
    assert "Traceback" not in output
    assert_each_bad_file_has_its_own_line(output, corpus.bad)
    for path in good:
        written = out / f"{path.stem}.safetensors"
        assert written.is_file() and written.stat().st_size > 0, (path, output)
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(".") or p.suffix in
                 (".partial", ".tmp") or p.stat().st_size == 0]
    assert leftovers == []
    assert len(list(out.iterdir())) == len(good)


def test_generate_a_batch_of_hostile_files_beside_good_ones(corpus, tmp_path):
    good = [corpus.good[0], corpus.good[4], write_audio(tmp_path / "dog.wav", tone(2.0, seed=1))]
    sd = make_tiny_sd(tmp_path / "sd", text_width=32)
    embedder = make_paper_embedder(tmp_path / "embedder.bin", input_dim=96, token_dim=32)
    out = tmp_path / "out"
    result = run_cli("generate", *corpus.bad, *good, "-o", out, "--sd", sd, "--audio-encoder",
                     TINY_BEATS, "--embedder", embedder, "--scheduler", "pndm", "--steps", "2",
                     "-W", "64", "-H", "64", "--device", "cpu", "--dtype", "float32",
                     "--seed", "1")
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output
    assert_each_bad_file_has_its_own_line(output, corpus.bad)
    pictures = sorted(p.name for p in out.iterdir())
    assert pictures == sorted(f"{path.stem}_seed1.png" for path in good), output
    assert all((out / name).stat().st_size > 0 for name in pictures)


def test_train_skips_hostile_files_with_one_warning_each(corpus, tmp_path):
    from factories import make_tiny_sd, write_video

    data = tmp_path / "data"
    for label, color, freq in (("dog", (220, 40, 40), 300), ("rain", (40, 60, 220), 2000)):
        (data / label).mkdir(parents=True)
        for i in range(2):
            write_video(data / label / f"{label}{i}.mp4", tone(1.5, freq=freq, seed=i),
                        seconds=1.5, color=color)
    hostile = data / "dog" / "hostile"
    corpus.bad[0].parent.rename(hostile)  # the whole corpus, symlinks and FIFO included
    # train scans folders and passes over what is not a regular file (FIFO, device, link loop,
    # broken link), as it passes over folders; the regular bad files are each skipped aloud.
    bad = [hostile / path.name for path in corpus.bad if (hostile / path.name).is_file()]
    assert len(bad) >= 12
    sd = make_tiny_sd(tmp_path / "sd", text_width=32)
    run = tmp_path / "run"
    result = run_cli("train", data, "-o", run, "--sd", sd, "--audio-encoder", TINY_BEATS,
                     "--batch-size", "2", "--grad-accum", "1", "--resolution", "32",
                     "--audio-seconds", "1", "--device", "cpu", "--sample-every", "0",
                     "--windows-per-clip", "2", "--max-steps", "1")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output
    for path in bad:
        assert sum(path.name in line and "skipped" in line for line in output.splitlines()) == 1, \
            (path, output)
    assert (run / "config.json").is_file()
