"""Out-of-range options fail before any model loads, with the range named (issue 8 §3).

The model options point at files that do not exist: a check that ran after loading would report
the missing file (exit 1) instead of the range (exit 2).
"""

from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

from audiotoken_cli.api import train as api_train
from audiotoken_cli.cli import app
from audiotoken_cli.config import Window
from audiotoken_cli.errors import UsageError
from audiotoken_cli.validation import (
    MAX_SEED,
    check_embed_options,
    check_generate_options,
    check_output_folder,
    check_seed,
    check_window,
)

runner = CliRunner()


def run(tmp_path, *args):
    missing = tmp_path / "no-such-model"
    sound = tmp_path / "dog.wav"
    sound.write_bytes(b"")
    command, *rest = args
    models = {"generate": ["--sd", missing, "--audio-encoder", missing, "--embedder", missing],
              "embed": ["--audio-encoder", missing, "--embedder", missing],
              "train": ["--sd", missing, "--audio-encoder", missing]}[command]
    target = [tmp_path] if command == "train" else [sound]
    result = runner.invoke(app, [str(a) for a in (command, *target, *rest, *models, "--offline")])
    return result


@pytest.mark.parametrize("command", ["generate", "embed"])
@pytest.mark.parametrize("option,value,expected", [
    ("--start", "inf", "--start inf is out of range; it must be in 0..604800"),
    ("--start", "nan", "--start"),  # Typer's own bound rejects NaN already
    ("--duration", "inf", "--duration inf is out of range; it must be in 0.01..3600"),
    ("--duration", "nan", "--duration"),
    ("--start", "1e300", "--start 1e+300 is out of range"),
    ("--duration", "1e9", "--duration 1000000000.0 is out of range"),
])
def test_window_out_of_range_is_a_usage_error(tmp_path, command, option, value, expected):
    result = run(tmp_path, command, option, value)
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert "Traceback" not in result.output and "no-such-model" not in result.output


@pytest.mark.parametrize("seed,images", [(2**64, 1), (2**63, 1), (MAX_SEED, 2)])
def test_seed_out_of_range_names_the_range(tmp_path, seed, images):
    result = run(tmp_path, "generate", "--seed", str(seed), "-n", str(images))
    assert result.exit_code == 2, result.output
    assert f"0..{MAX_SEED - images + 1}" in result.output
    assert "no-such-model" not in result.output


def test_width_not_a_multiple_of_8_is_checked_up_front(tmp_path):
    result = run(tmp_path, "generate", "-W", "65")
    assert result.exit_code == 2, result.output
    assert "--width 65 must be a multiple of 8" in result.output and "try 64" in result.output


def test_train_checks_its_numbers_and_size(tmp_path):
    result = run(tmp_path, "train", "-o", tmp_path / "run", "--size", "65x64")
    assert result.exit_code == 2 and "multiples of 8" in result.output, result.output
    result = run(tmp_path, "train", "-o", tmp_path / "run", "--audio-seconds", "inf")
    assert result.exit_code == 2 and "--audio-seconds inf" in result.output, result.output
    result = run(tmp_path, "train", "-o", tmp_path / "run", "--lr", "inf")
    assert result.exit_code == 2 and "--lr inf" in result.output, result.output
    result = run(tmp_path, "train", "-o", tmp_path / "run", "--seed", str(2**64))
    assert result.exit_code == 2 and f"0..{MAX_SEED}" in result.output, result.output


@pytest.mark.parametrize("command", ["generate", "embed", "train"])
def test_output_that_is_or_lies_under_a_file(tmp_path, command):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    flag = "-o"
    for target, words in ((a_file, "is a file"),
                          (a_file / "sub" / "dir", "lies under")):
        result = run(tmp_path, command, flag, target)
        assert result.exit_code == 2, result.output
        assert words in result.output and str(a_file) in result.output
        assert "Traceback" not in result.output
        assert len([line for line in result.output.splitlines() if "rror" in line]) == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_output_that_cannot_be_written(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        result = run(tmp_path, "embed", "-o", locked / "out")
        assert result.exit_code == 2, result.output
        assert "cannot write in" in result.output
    finally:
        locked.chmod(0o700)


def test_library_checks_match_the_cli(tmp_path):
    with pytest.raises(UsageError, match="must be in 0"):
        check_window(Window(start=float("inf")))
    with pytest.raises(UsageError, match="duration"):
        check_window(Window(duration=-1.0))
    with pytest.raises(UsageError, match="must be in 0"):
        check_seed(-1)
    check_seed(MAX_SEED)
    check_seed(MAX_SEED - 3, 4)
    with pytest.raises(UsageError):
        check_seed(MAX_SEED - 2, 4)
    with pytest.raises(UsageError, match="whole number"):
        check_seed(1.5)
    check_output_folder(tmp_path / "new" / "folder")  # need not exist yet
    assert not (tmp_path / "new").exists()  # and checking does not create it


def test_settings_dataclasses_pass_the_same_checks(tmp_path):
    from audiotoken_cli.config import EmbedSettings, GenerateSettings

    bad = GenerateSettings(sd=tmp_path, audio_encoder=tmp_path, embedder=tmp_path, seed=2**64)
    with pytest.raises(UsageError, match="--seed"):
        check_generate_options(vars(bad))
    with pytest.raises(UsageError, match="multiple of 8"):
        check_generate_options(vars(GenerateSettings(sd=tmp_path, audio_encoder=tmp_path,
                                                     embedder=tmp_path, seed=0, height=100)))
    with pytest.raises(UsageError, match="--start"):
        check_embed_options(vars(EmbedSettings(audio_encoder=tmp_path, embedder=tmp_path,
                                               window=Window(start=float("nan")))))


def test_python_api_train_checks_before_loading(tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    with pytest.raises(UsageError, match="lies under"):
        api_train(tmp_path, a_file / "run", sd=str(tmp_path / "missing"),
                             audio_encoder=str(tmp_path / "missing"), offline=True)
    with pytest.raises(UsageError, match="--audio-seconds"):
        api_train(tmp_path, tmp_path / "run", audio_seconds=float("inf"),
                             sd=str(tmp_path / "missing"), offline=True)
