"""What `train`'s folder scan says instead of passing over silently: a labels row that names no
file, and a subfolder it may not read (as another user: root reads everything)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from factories import tone, write_audio
from media_factories import write_clip

from audiotoken_cli.training.data import DataSettings, scan


@pytest.fixture
def data(tmp_path) -> Path:
    root = tmp_path / "data"
    (root / "dog").mkdir(parents=True)
    write_clip(root / "dog" / "d1.mp4", 1.0)
    write_clip(root / "dog" / "d2.mp4", 1.0)
    return root


def test_each_file_label_row_naming_no_file_is_one_line(data, tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("file,label\ndog/d1.mp4,dog\nd2,puppy\ngone.mp4,cat\ndog/typo.mp4,dog\n")
    samples, warnings = scan(DataSettings(data, labels=labels))
    assert {s.audio.name: s.label for s in samples} == {"d1.mp4": "dog", "d2.mp4": "puppy"}
    assert warnings == [
        f"{labels}, line 4: gone.mp4: no such file in the data folder; the row is not used",
        f"{labels}, line 5: dog/typo.mp4: no such file in the data folder; the row is not used"]


def test_a_vggsound_list_says_its_unmatched_rows_in_one_line(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    write_clip(root / "abc_12000_22000.mp4", 1.0)
    labels = tmp_path / "vggsound.csv"
    labels.write_text("abc,12,dog,train\nxyz,5,cat,train\nqqq,7,rain,test\n")
    samples, warnings = scan(DataSettings(root, labels=labels))
    assert [s.label for s in samples] == ["dog"]
    assert warnings == [f"{labels}: 2 of 3 rows name clips that are not in the data folder "
                        "(first: line 2, xyz_5000_15000); their labels are not used"]


def test_every_row_matching_a_file_says_nothing(data, tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("d1,dog\ndog/d2.mp4,dog\n")
    assert scan(DataSettings(data, labels=labels))[1] == []


AS_NOBODY = """
import os, sys, threading, av, torch, numpy  # first: the interpreter's files may be root's alone
from audiotoken_cli.training.data import DataSettings, scan
os.setgid(65534); os.setuid(65534)
samples, warnings = scan(DataSettings(sys.argv[1]))
print(*[s.audio.name for s in samples], sep="\\n")
print(*warnings, sep="\\n")
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_an_unreadable_subfolder_is_one_line_not_a_silent_skip():
    shared = Path("/tmp") / f"audiotoken-train-{os.getpid()}"
    shutil.rmtree(shared, ignore_errors=True)
    try:
        (shared / "data" / "dog").mkdir(parents=True)
        (shared / "data" / "locked").mkdir()
        write_clip(shared / "data" / "dog" / "d1.mp4", 1.0)
        write_audio(shared / "data" / "locked" / "hidden.wav", tone(1.0))
        for path in (shared, shared / "data", shared / "data" / "dog"):
            path.chmod(0o755)
        (shared / "data" / "dog" / "d1.mp4").chmod(0o644)
        (shared / "data" / "locked").chmod(0o700)  # root's alone
        done = subprocess.run([sys.executable, "-c", AS_NOBODY, str(shared / "data")],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == [
            "d1.mp4",
            f"{shared / 'data' / 'locked'}: skipped, this folder cannot be read (permission denied)"]
    finally:
        shutil.rmtree(shared, ignore_errors=True)
