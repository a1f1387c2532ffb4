"""Hostile paths and faults around the inputs and outputs: one line per bad path, the batch goes on.

Unreadable folders (as another user: root reads everything), symbolic link loops inside a folder,
names too long for the file system (the output's, and the temporary ``.partial`` name beside it),
and a full disk under ``embed -o`` (a real, tiny tmpfs).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from factories import make_paper_embedder, make_tiny_sd, tone, write_audio
from typer.testing import CliRunner

from audiotoken_cli.cli import app
from audiotoken_cli.files import name_max, write_atomically

DATA = Path(__file__).parent / "data"
TINY_BEATS = DATA / "tiny_beats.pt"
runner = CliRunner()
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    return {"sd": make_tiny_sd(folder / "sd", text_width=32),
            "embedder": make_paper_embedder(folder / "emb.bin", input_dim=96, token_dim=32)}


def invoke(command: str, models, *args):
    argv = [command, *map(str, args), "--audio-encoder", str(TINY_BEATS), "--embedder",
            str(models["embedder"]), "--device", "cpu", "--dtype", "float32"]
    if command == "generate":
        argv += ["--sd", str(models["sd"]), "--scheduler", "pndm", "--steps", "1", "-W", "32",
                 "-H", "32", "--seed", "1"]
    return runner.invoke(app, argv)


def error_lines(output: str) -> list[str]:
    return [" ".join(line.split()) for line in output.splitlines() if line.startswith("error:")]


def long_name(stem_bytes: int, suffix: str = ".wav") -> str:
    return "x" * stem_bytes + suffix


@pytest.fixture
def hostile_batch(tmp_path) -> dict:
    """A folder with a good sound, a symbolic link loop named like audio, a 250-byte name (its
    outputs cannot exist) and a 240-byte name (its outputs can; their temporary names are longer
    than the file system takes, unless kept short)."""
    folder = tmp_path / "batch"
    folder.mkdir()
    good = write_audio(folder / "good.wav", tone(1.0, seed=1))
    loop = folder / "loop.wav"
    os.symlink(folder / "loop2.wav", loop)
    os.symlink(loop, folder / "loop2.wav")
    too_long = write_audio(folder / long_name(246), tone(1.0, seed=2))  # 250 bytes
    long_ok = write_audio(folder / long_name(236), tone(1.0, seed=3))  # 240: its outputs fit
    assert name_max(folder) == 255
    return {"folder": folder, "good": good, "loop": loop, "too_long": too_long, "long_ok": long_ok}


@pytest.mark.parametrize("command", ["embed", "generate"])
def test_bad_paths_in_a_folder_get_one_line_each_and_the_batch_goes_on(models, hostile_batch,
                                                                       tmp_path, command):
    batch = hostile_batch
    out = tmp_path / "out"
    result = invoke(command, models, batch["folder"], "-o", out)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = error_lines(result.output)
    for loop in (batch["loop"], batch["loop"].with_name("loop2.wav")):  # each points at the other
        assert f"error: {loop}: is a symbolic link loop" in lines, result.output
    [named] = [line for line in lines if str(batch["too_long"]) in line]
    assert "its output name would be" in named and "more than the 255 this file system takes" in named
    assert len(lines) == 3, result.output
    stems = sorted(p.name.split("_seed")[0].removesuffix(".safetensors") for p in out.iterdir())
    assert stems == sorted(["good", batch["long_ok"].stem]), stems
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporaries left


def test_a_temporary_name_stays_within_the_file_system_limit(tmp_path):
    target = tmp_path / ("y" * 250 + ".png")  # 254 bytes: the usual temporary would be 272
    seen = []

    def write(temporary: Path) -> None:
        seen.append(temporary.name)
        temporary.write_bytes(b"png")

    write_atomically(target, write)
    assert target.read_bytes() == b"png"
    assert len(seen[0].encode()) <= 255 and seen[0].endswith(".partial")
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_a_temporary_name_is_cut_at_a_character_boundary(tmp_path):
    target = tmp_path / ("\u00e9" * 120 + ".wav")  # 244 bytes of two-byte characters
    seen = []
    write_atomically(target, lambda temporary: (seen.append(temporary.name), temporary.touch()))
    assert len(seen[0].encode()) <= 255 and target.is_file()


AS_NOBODY = """
import os, sys, threading, av, torch  # first: the interpreter's files may be root's alone
from audiotoken_cli.files import expand_arguments
from audiotoken_cli.audio.decode import load_window
os.setgid(65534); os.setuid(65534)
for entry in expand_arguments(sys.argv[1:]):
    if hasattr(entry, "error"):
        print("problem", entry.error)
    else:
        try:
            load_window(entry.path)
            print("file", entry.path)
        except Exception as error:
            print("error", error)
"""


@as_root
def test_unreadable_folders_are_said_once_each_as_another_user():
    shared = Path("/tmp") / f"audiotoken-hostile-{os.getpid()}"
    shutil.rmtree(shared, ignore_errors=True)
    try:
        (shared / "data" / "locked").mkdir(parents=True)
        good = write_audio(shared / "data" / "good.wav", tone(1.0))
        hidden = write_audio(shared / "data" / "locked" / "inside.wav", tone(1.0))
        for folder in (shared, shared / "data"):
            folder.chmod(0o755)
        good.chmod(0o644)
        (shared / "data" / "locked").chmod(0o700)  # root's: 'nobody' can neither list nor enter it
        done = subprocess.run([sys.executable, "-c", AS_NOBODY, str(shared / "data"), str(hidden)],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == [
            f"file {good}",
            f"problem {shared / 'data' / 'locked'}: this folder cannot be read (permission "
            "denied); its files are skipped",
            f"error {hidden}: cannot be read (permission denied)",
        ]
    finally:
        shutil.rmtree(shared, ignore_errors=True)


@pytest.fixture
def full_disk(tmp_path):
    """A 64 kB tmpfs, filled up: a real ENOSPC for whatever is written there."""
    mount = tmp_path / "full"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        handle = os.open(mount / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(handle, b"\0" * 4096):
                pass
        except OSError:
            pass  # full
        finally:
            os.close(handle)
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_embed_onto_a_full_disk_is_one_line_per_file_and_the_batch_goes_on(models, tmp_path,
                                                                         full_disk):
    # data/full/* mirror into OUT/full (the full tmpfs), data/ok/* into OUT/ok (a normal disk).
    out = full_disk.parent / "out"
    out.mkdir()
    (out / "full").symlink_to(full_disk)
    sounds = []
    for index, name in enumerate(["full/a.wav", "full/b.wav", "ok/c.wav"]):
        (tmp_path / "data" / name).parent.mkdir(parents=True, exist_ok=True)
        sounds.append(write_audio(tmp_path / "data" / name, tone(1.0, seed=index)))
    result = invoke("embed", models, tmp_path / "data", "-o", out)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = error_lines(result.output)
    for sound in sounds[:2]:
        [line] = [entry for entry in lines if str(sound) in entry]
        assert line.startswith(f"error: {sound}: cannot write its output") and \
            line.endswith("(no space left on the disk)"), line
    assert (out / "ok" / "c.safetensors").is_file()
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler"]  # no partial file left
