"""A newcomer's first hour (issue 9): outputs keep the input's folders, progress shows in logs,
summaries add up, help reads like a tool's, `--from` reproduces an image, the examples run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import numpy as np
import pytest
import typer
from factories import tone, write_audio, write_video
from PIL import Image
from typer.testing import CliRunner

from audiotoken_cli.cli import app
from audiotoken_cli.examples import EXAMPLES, example_path
from audiotoken_cli.files import InputFile, InputProblem, expand_arguments

DATA = Path(__file__).parent / "data"
TINY_BEATS = DATA / "tiny_beats.pt"
runner = CliRunner()


def model_args(models) -> list[str]:
    return ["--sd", str(models["sd"]), "--audio-encoder", str(TINY_BEATS), "--embedder",
            str(models["embedder"]), "--steps", "2", "-W", "32", "-H", "32", "--device", "cpu"]


def generate(models, *args):
    return runner.invoke(app, ["generate", *model_args(models), *map(str, args)])


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture
def two_folders(tmp_path) -> Path:
    """data/dog/clip2.wav and data/rain/clip2.wav: the same name in two subfolders."""
    for i, label in enumerate(("dog", "rain")):
        (tmp_path / "data" / label).mkdir(parents=True)
        write_audio(tmp_path / "data" / label / "clip2.wav", tone(1.0, freq=300 + 900 * i, seed=i))
    return tmp_path / "data"


# ---------------------------------------------------------------------------------------------
# -o keeps the input's folder structure


def test_inputs_come_back_in_order_with_their_roots(two_folders, tmp_path):
    (tmp_path / "empty").mkdir()
    entries = list(expand_arguments([str(two_folders / "**" / "*.wav"), str(tmp_path / "nope.wav"),
                                str(tmp_path / "empty"), str(two_folders / "dog" / "clip2.wav")]))
    assert [type(e) for e in entries] == [InputFile, InputFile, InputProblem, InputProblem]
    assert [e.root for e in entries[:2]] == [two_folders, two_folders]
    assert [e.path.parent.name for e in entries[:2]] == ["dog", "rain"]


@pytest.mark.parametrize("form", ["folder", "glob"])
def test_generate_mirrors_subfolders_under_output_dir(models, two_folders, tmp_path, form):
    argument = str(two_folders) if form == "folder" else str(two_folders / "**" / "*.wav")
    result = generate(models, argument, "--seed", "3", "-o", tmp_path / "renders")
    assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(tmp_path / "renders").as_posix()
                  for p in (tmp_path / "renders").rglob("*.png")) == [
        "dog/clip2_seed3.png", "rain/clip2_seed3.png"]
    assert "2 images of 2 sounds written" in result.output


def test_embed_mirrors_subfolders_under_output_dir(models, two_folders, tmp_path):
    result = runner.invoke(app, ["embed", str(two_folders), "-o", str(tmp_path / "tokens"),
                                 "--audio-encoder", str(TINY_BEATS), "--embedder",
                                 str(models["embedder"]), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "tokens" / "dog" / "clip2.safetensors").is_file()
    assert (tmp_path / "tokens" / "rain" / "clip2.safetensors").is_file()


# ---------------------------------------------------------------------------------------------
# Summaries that add up


def test_summary_rows_follow_the_input_order_and_count_what_is_on_disk(models, tmp_path):
    a = write_audio(tmp_path / "a.wav", tone(1.0, seed=1))
    b = write_audio(tmp_path / "b.wav", tone(1.0, freq=900, seed=2))
    (tmp_path / "empty").mkdir()
    out = tmp_path / "out"
    generate(models, b, "-n", "2", "--seed", "1", "-o", out)  # b's images exist already
    result = generate(models, tmp_path / "missing.wav", b, tmp_path / "empty", a,
                      str(tmp_path / "*.flac"), "-n", "2", "--seed", "1", "-o", out)
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("file"))
    rows = lines[header + 1:header + 6]
    assert [row.split()[0] for row in rows] == [
        str(tmp_path / "missing.wav"), str(b), str(tmp_path / "empty"), str(a),
        str(tmp_path / "*.flac")]
    assert [row.split()[-1] for row in rows if "failed" in row] == ["failed"] * 3
    count = lines[header + 6]
    assert count.startswith("2 images of 1 sound written, 1 sound skipped, 3 failed in ")
    assert count.endswith(f"outputs in {out}")
    assert len(list(out.glob("*.png"))) == 4  # 2 written now + 2 skipped from before
    assert result.stderr.count("error:") == 3  # each failed row has its one error line


def test_the_random_seed_line_only_when_images_are_made(models, tmp_path):
    made = generate(models, write_audio(tmp_path / "a.wav", tone(1.0)))
    assert made.exit_code == 0 and "pass --seed" in made.stderr
    failed = generate(models, tmp_path / "missing.wav")
    assert failed.exit_code == 1 and "pass --seed" not in failed.output


# ---------------------------------------------------------------------------------------------
# Progress wherever the output goes


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "AUDIOTOKEN_PROGRESS_SECONDS": "0", **(env or {})}
    return subprocess.run([sys.executable, "-m", "audiotoken_cli", *args], check=False,
                          capture_output=True,
                          text=True, env=environment, timeout=600)


def test_generate_in_a_pipe_prints_progress_lines(models, tmp_path):
    sound = write_audio(tmp_path / "a.wav", tone(1.0))
    done = cli("generate", str(sound), "-n", "3", "--seed", "0", "--batch-size", "1",
               *model_args(models))
    assert done.returncode == 0, done.stderr
    assert "tiny_beats.pt: kept a safetensors copy in " in done.stderr  # said once, with size
    assert " MB), which later runs load instead" in done.stderr
    lines = done.stderr.splitlines()
    for phase in ("generate: loading models", "generate: rendering"):
        assert phase in lines
    progress = [line for line in lines if " images, " in line]
    assert progress[0].startswith("generate: 1/3 images, ") and "left" in progress[0]
    assert progress[-1].startswith("generate: 3/3 images, ") and "in all" in progress[-1]


# ---------------------------------------------------------------------------------------------
# Help that reads like a tool's


COMMANDS = ("generate", "embed", "train", "download")


@pytest.mark.parametrize("command", COMMANDS)
def test_help_has_no_python_types_and_every_option_is_described(command):
    result = runner.invoke(app, [command, "--help"], terminal_width=100)
    assert result.exit_code == 0
    for word in ("list[str]", "<path>", "range>", "{", "<int>", "<float>"):
        assert word not in result.output, word
    assert result.output.startswith(f"Usage: audiotoken {command} [OPTIONS]")
    group = typer.main.get_command(app)
    for param in group.commands[command].params:
        if isinstance(param, click.Option) or param.param_type_name == "option":
            assert param.help, f"{command} {param.opts} has no description"


def test_exit_code_two_for_a_wrong_command_line(models, tmp_path):
    sound = write_audio(tmp_path / "a.wav", tone(1.0))
    assert runner.invoke(app, ["generate", str(sound), "--model", "nope"]).exit_code == 2
    assert runner.invoke(app, ["generate", str(sound), "--bogus"]).exit_code == 2
    assert runner.invoke(app, ["generate", "--example", "cow"]).exit_code == 2
    assert runner.invoke(app, ["generate"]).exit_code == 2
    import torch

    if not torch.cuda.is_available():
        missing = generate(models, sound, "--device", "cuda")
        assert missing.exit_code == 2 and "no CUDA GPU" in missing.output


# ---------------------------------------------------------------------------------------------
# Reproduce from an image


def test_from_an_image_reproduces_it_pixel_for_pixel(models, tmp_path):
    sound = write_audio(tmp_path / "a.wav", tone(2.0, freq=700, seed=3))
    first = generate(models, sound, "--seed", "11", "--prompt", "a drawing of <*>", "-g", "5",
                     "--scheduler", "ddim", "--start", "0.5", "--duration", "1")
    assert first.exit_code == 0, first.output
    original = tmp_path / "a_seed11.png"
    info = json.loads(Image.open(original).text["audiotoken"])
    assert info["dtype"] == "float32" and info["device"] == "cpu"  # resolved, not "auto"
    assert Path(info["sd"]).is_absolute() and info["audio_path"] == str(sound.resolve())
    # No model options and no sound: everything comes from the image.
    again = runner.invoke(app, ["generate", "--from", str(original), "-o", str(tmp_path / "again")])
    assert again.exit_code == 0, again.output
    copy = tmp_path / "again" / "a_seed11.png"
    assert np.array_equal(pixels(copy), pixels(original))
    assert json.loads(Image.open(copy).text["audiotoken"])["prompt"] == "a drawing of <*>"
    # An option given with --from wins over the image's.
    other = runner.invoke(app, ["generate", "--from", str(original), str(sound), "--seed", "12",
                                "-o", str(tmp_path / "other")])
    assert other.exit_code == 0, other.output
    assert json.loads(Image.open(tmp_path / "other" / "a_seed12.png").text["audiotoken"])[
        "scheduler"] == "ddim"


def test_from_an_image_without_settings_is_a_clear_error(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "plain.png")
    result = runner.invoke(app, ["generate", "--from", str(tmp_path / "plain.png")])
    assert result.exit_code == 2 and "no audiotoken settings" in result.output
    missing = runner.invoke(app, ["generate", "--from", str(tmp_path / "gone.png")])
    assert missing.exit_code == 2 and "does not exist" in missing.output


# ---------------------------------------------------------------------------------------------
# Examples that run out of the box


def test_the_example_sounds_are_small_and_decode():
    from audiotoken_cli.audio.decode import load_window
    from audiotoken_cli.config import Window

    windows = []
    for name in EXAMPLES:
        path = example_path(name)
        assert path.is_file() and path.stat().st_size < 16_000
        windows.append(load_window(path, Window(duration=2.0)))
        assert float(windows[-1].abs().max()) > 0.1
    assert not any(np.allclose(windows[0], w, atol=1e-3) for w in windows[1:])


def test_generate_an_example_into_the_current_folder(models, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = generate(models, "--example", "bell", "-n", "2", "--seed", "0")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["bell_seed0.png", "bell_seed1.png"]
    assert "2 images of 1 sound written" in result.output
    assert "outputs in the current folder" in result.output
    assert not list(example_path("bell").parent.glob("*.png"))  # nothing inside the package


# ---------------------------------------------------------------------------------------------
# Training: progress in a log, labels, warm-up that fits the run, a summary, resume


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("videos")
    for label, color, freq, count in (("dog", (220, 40, 40), 300, 2), ("rain", (40, 60, 220),
                                                                        2000, 1)):
        (root / label).mkdir()
        for i in range(count):
            write_video(root / label / f"{label}{i}.mp4", tone(1.5, freq=freq, seed=i),
                        seconds=1.5, color=color)
    return root


def test_train_in_a_pipe_reports_progress_labels_and_a_summary(models, videos, tmp_path):
    run = tmp_path / "run"
    args = ["train", str(videos), "-o", str(run), "--sd", str(models["sd"]), "--audio-encoder",
            str(TINY_BEATS), "--batch-size", "1", "--grad-accum", "1", "--resolution", "32",
            "--audio-seconds", "1", "--device", "cpu", "--windows-per-clip", "1",
            "--sample-every", "2"]
    done = cli(*args, "--max-steps", "3")
    assert done.returncode == 0, done.stderr
    err = done.stderr
    assert "labels: dog 2, rain 1" in err
    assert "too few clips for a held-out split" in err and "training clips" in err
    steps = [line for line in err.splitlines() if line.startswith("train: step ")]
    assert steps[0].startswith("train: step 1/3  loss ") and "samples/s" in steps[0]
    assert "lr " in steps[0] and "left" in steps[0]
    assert steps[-1].startswith("train: step 3/3")
    out = done.stdout
    assert "trained to step 3 in " in out and "final loss " in out
    for path in (run / "loss.png", run / "samples", run / "embedder.safetensors"):
        assert str(path) in out
    training = json.loads((run / "config.json").read_text())["training"]
    assert training["labels"] == {"dog": 2, "rain": 1}
    assert training["settings"]["warmup_steps"] == 0  # 10% of 3 steps, not the paper's 500
    grid = Image.open(run / "samples" / "step-2.png")
    assert grid.size == (2 * 32, 32 + 16)  # two training clips, a caption strip above
    strip = np.asarray(grid.convert("L"))[:16, :32]
    assert (strip < 128).any()  # the clip's name is written there
    resumed = cli(*args, "--max-steps", "4", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from step 3" in resumed.stderr


def test_a_warmup_longer_than_the_run_is_a_warning(models, videos, tmp_path):
    result = runner.invoke(app, ["train", str(videos), "-o", str(tmp_path / "run"), "--sd",
                                 str(models["sd"]), "--audio-encoder", str(TINY_BEATS),
                                 "--batch-size", "1", "--grad-accum", "1", "--resolution", "32",
                                 "--audio-seconds", "1", "--device", "cpu", "--sample-every",
                                 "0", "--max-steps", "1", "--warmup-steps", "500",
                                 "--windows-per-clip", "1"])
    assert result.exit_code == 0, result.output
    assert "--warmup-steps 500 is longer than --max-steps 1" in result.stderr


# ---------------------------------------------------------------------------------------------
# The first run


def test_download_list_gives_every_size_of_the_default_preset():
    result = runner.invoke(app, ["download", "--list"])
    assert result.exit_code == 0, result.output
    block = result.stdout.split("vggsound", 1)[1]
    assert "?" not in block and "unknown" not in block
    assert "363.1 MB" in block and "~5.5 GB" in block and "~35.4 MB" in block
    assert "download fetches about 5.9 GB" in block
