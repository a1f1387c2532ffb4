"""`audiotoken train` on synthetic videos, a tiny SD and the tiny BEATs, all built in the test."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from typer.testing import CliRunner

from audiotoken_cli.cli import app
from audiotoken_cli.config import TrainSettings
from audiotoken_cli.training.data import DataSettings, TrainingData, scan
from audiotoken_cli.models.embedder import load_embedder
from audiotoken_cli.training.loop import (ExampleSource, load_frozen, new_embedder, pick_examples,
                                  save_checkpoint, training_loss)
from factories import tone, write_video

DATA = Path(__file__).parent / "data"
TINY_BEATS = DATA / "tiny_beats.pt"
runner = CliRunner()


@pytest.fixture(scope="module")
def sd(tiny_sd) -> Path:
    return tiny_sd  # built once per session (tests/conftest.py)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """Two classes that differ in picture and in sound, in labelled subfolders."""
    root = tmp_path_factory.mktemp("videos")
    for label, color, freq in (("dog", (220, 40, 40), 300), ("rain", (40, 60, 220), 2000)):
        (root / label).mkdir()
        for i in range(2):
            write_video(root / label / f"{label}{i}.mp4",
                        tone(1.5, freq=freq * (1 + 0.05 * i), seed=i), seconds=1.5, color=color)
    return root


def train_args(videos: Path, run: Path, sd: Path, *extra) -> list[str]:
    return ["train", str(videos), "-o", str(run), "--sd", str(sd), "--audio-encoder",
            str(TINY_BEATS), "--batch-size", "2", "--grad-accum", "1", "--resolution", "32",
            "--audio-seconds", "1", "--device", "cpu", "--sample-every", "0",
            "--windows-per-clip", "2", *map(str, extra)]


def train_cli(*args):
    return runner.invoke(app, list(args))


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_a_run_writes_its_folder_and_drives_generate(videos, sd, tmp_path):
    run = tmp_path / "run"
    result = train_cli(*train_args(videos, run, sd, "--max-steps", "4", "--save-every", "2",
                                   "--keep", "1", "--sample-every", "2"))
    assert result.exit_code == 0, result.output
    lines = metrics(run)
    assert [m["step"] for m in lines] == [1, 2, 3, 4]
    assert {"loss", "mse", "l1", "class", "lr", "samples_per_s"} <= set(lines[0])
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-4"]  # --keep 1
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step-2.png", "step-4.png"]
    assert Image.open(run / "loss.png").size == (640, 360)
    config = json.loads((run / "config.json").read_text())
    assert config["format"] == "audiotoken-embedder" and config["sizes"]["token_dim"] == 32
    training = config["training"]
    assert training["settings"]["max_steps"] == 4 and "torch" in training["versions"]
    assert training["clips"] == 4
    umask = os.umask(0)
    os.umask(umask)
    for shared in (run / "embedder.safetensors", run / "checkpoints" / "step-4" / "config.json"):
        assert shared.stat().st_mode & 0o777 == 0o666 & ~umask  # teammates can read it
    embedder = load_embedder(run)
    assert embedder.model.config.input_dim == 96 and embedder.model.config.token_dim == 32
    assert embedder.info.prompt == "a photo of <*>"

    clip = videos / "dog" / "dog0.mp4"
    made = runner.invoke(app, ["generate", str(clip), "--embedder", str(run), "--sd", str(sd),
                               "--audio-encoder", str(TINY_BEATS), "-W", "32", "-H", "32",
                               "--steps", "2", "--seed", "1", "--device", "cpu",
                               "-o", str(tmp_path / "images")])
    assert made.exit_code == 0, made.output
    assert (tmp_path / "images" / "dog0_seed1.png").exists()


def test_resume_continues_exactly_where_the_checkpoint_stopped(videos, sd, tmp_path):
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert train_cli(*train_args(videos, whole, sd, "--max-steps", "6", "--save-every",
                                 "3")).exit_code == 0
    assert train_cli(*train_args(videos, split, sd, "--max-steps", "3", "--save-every",
                                 "3")).exit_code == 0
    resumed = train_cli(*train_args(videos, split, sd, "--max-steps", "6", "--save-every", "3",
                                    "--resume"))
    assert resumed.exit_code == 0, resumed.output
    a = load_file(whole / "embedder.safetensors")
    b = load_file(split / "embedder.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [m["step"] for m in metrics(split)] == [1, 2, 3, 4, 5, 6]
    assert [m["loss"] for m in metrics(split)] == [m["loss"] for m in metrics(whole)]


def test_a_finished_run_is_not_overwritten_by_accident(videos, sd, tmp_path):
    run = tmp_path / "run"
    assert train_cli(*train_args(videos, run, sd, "--max-steps", "2")).exit_code == 0
    again = train_cli(*train_args(videos, run, sd, "--max-steps", "2"))
    assert again.exit_code == 2 and "--resume" in again.output
    behind = train_cli(*train_args(videos, run, sd, "--max-steps", "1", "--resume"))
    assert behind.exit_code == 2 and "already trained to step 2" in behind.output
    fresh = train_cli(*train_args(videos, tmp_path / "none", sd, "--max-steps", "1", "--resume"))
    assert fresh.exit_code == 2 and "found no checkpoint" in fresh.output


def test_cache_on_and_off_give_the_same_first_step(videos, sd, tmp_path):
    plain, cached = tmp_path / "plain", tmp_path / "cached"
    assert train_cli(*train_args(videos, plain, sd, "--max-steps", "1")).exit_code == 0
    result = train_cli(*train_args(videos, cached, sd, "--max-steps", "1", "--cache"))
    assert result.exit_code == 0, result.output
    assert metrics(plain)[0]["loss"] == pytest.approx(metrics(cached)[0]["loss"], rel=1e-6)
    assert (cached / "cache" / "features.npy").exists()
    assert (cached / "cache" / "latents.npy").exists()


def test_short_training_lowers_the_loss_on_a_set_it_can_overfit(videos, sd, tmp_path):
    run = tmp_path / "run"
    result = train_cli(*train_args(videos, run, sd, "--max-steps", "40", "--lr", "1e-2",
                                   "--no-scale-lr", "--warmup-steps", "0",
                                   "--class-loss-weight", "0"))
    assert result.exit_code == 0, result.output
    # Same examples, same noise and timesteps: only the embedder differs.
    settings = TrainSettings(data=videos, output=run, sd=sd, audio_encoder=TINY_BEATS,
                             audio_seconds=1.0, size=(32, 32), windows_per_clip=2,
                             class_loss_weight=0.0)
    device = torch.device("cpu")
    frozen = load_frozen(settings, device, torch.float32)
    samples, _ = scan(DataSettings(root=videos, audio_seconds=1.0, size=(32, 32)))
    data = TrainingData(samples, DataSettings(root=videos, audio_seconds=1.0, size=(32, 32)), 0)
    source = ExampleSource(data, frozen, settings, device, torch.float32, None)
    features, latents, labels = source.batch([(i, k) for i in range(4) for k in range(2)])
    initial, _ = new_embedder(settings, 96, 32, device)
    trained = load_embedder(run).model

    def terms(model, seed: int) -> dict[str, float]:
        with torch.no_grad():
            generator = torch.Generator().manual_seed(seed)
            found = training_loss(model(features), latents, labels, frozen, settings, generator,
                                  torch.float32)
            return {name: float(value) for name, value in found.items()}

    # A random tiny UNet leaves most of the noise-prediction error out of the token's reach;
    # what the token can change, training must lower, under every noise draw.
    for seed in (1, 2, 3):
        before, after = terms(initial, seed), terms(trained, seed)
        assert after["mse"] < before["mse"] * 0.999
        assert after["l1"] < before["l1"] and after["loss"] < before["loss"]


def test_bad_files_are_skipped_with_a_warning(videos, sd, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(videos, data)
    (data / "dog" / "notes.mp4").write_text("not a video")
    write_video(data / "rain" / "mute.mp4", None)
    run = tmp_path / "run"
    result = train_cli(*train_args(data, run, sd, "--max-steps", "1"))
    assert result.exit_code == 0, result.output
    assert "notes.mp4: skipped" in result.output and "mute.mp4: skipped" in result.output
    assert json.loads((run / "config.json").read_text())["training"]["clips"] == 4


def test_nothing_usable_is_a_clear_error(sd, tmp_path):
    (tmp_path / "empty").mkdir()
    result = train_cli(*train_args(tmp_path / "empty", tmp_path / "run", sd, "--max-steps", "1"))
    assert result.exit_code == 1
    assert "error:" in result.output and str(tmp_path / "empty") in result.output


def test_a_diverging_loss_stops_and_keeps_the_last_good_checkpoint(videos, sd, tmp_path):
    run = tmp_path / "run"
    result = train_cli(*train_args(videos, run, sd, "--max-steps", "40", "--save-every", "1",
                                   "--lr", "1e30", "--no-scale-lr", "--warmup-steps", "0"))
    assert result.exit_code == 1
    assert "the loss became" in result.output and "last good checkpoint" in result.output
    steps = [int(p.name[5:]) for p in (run / "checkpoints").iterdir()]
    assert steps and all(json.loads(line)["loss"] == json.loads(line)["loss"]  # no NaN saved
                         for line in (run / "metrics.jsonl").read_text().splitlines()[:max(steps)])


def test_a_failed_save_leaves_the_previous_checkpoint_intact(videos, sd, tmp_path, monkeypatch):
    from audiotoken_cli.config import EmbedderInfo

    run = tmp_path / "run"
    settings = TrainSettings(data=videos, output=run, sd=sd, audio_encoder=TINY_BEATS)
    embedder, _ = new_embedder(settings, 96, 32, torch.device("cpu"))
    optimizer = torch.optim.AdamW(embedder.parameters())
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    save_checkpoint(run, 1, embedder, optimizer, schedule, EmbedderInfo(), keep=3)
    before = (run / "checkpoints" / "step-1" / "embedder.safetensors").read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError):
        save_checkpoint(run, 2, embedder, optimizer, schedule, EmbedderInfo(), keep=3)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-1"]
    assert (run / "checkpoints" / "step-1" / "embedder.safetensors").read_bytes() == before


def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(videos, sd, tmp_path):
    run = tmp_path / "run"
    argv = [sys.executable, "-m", "audiotoken_cli", *train_args(videos, run, sd, "--max-steps",
                                                              "500", "--save-every", "1000")]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (
            (run / "metrics.jsonl").exists() and (run / "metrics.jsonl").read_text().count("\n") >= 2):
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    done = len(metrics(run))
    assert (run / "checkpoints" / f"step-{done}" / "embedder.safetensors").exists()
    resumed = train_cli(*train_args(videos, run, sd, "--max-steps", str(done + 1), "--resume"))
    assert resumed.exit_code == 0, resumed.output
    assert metrics(run)[-1]["step"] == done + 1


def test_examples_are_a_pure_function_of_seed_and_step():
    a = pick_examples(seed=3, step=10, rank=0, count=4, clips=7, slots=3)
    assert a == pick_examples(seed=3, step=10, rank=0, count=4, clips=7, slots=3)
    assert a != pick_examples(seed=3, step=11, rank=0, count=4, clips=7, slots=3)
    assert a != pick_examples(seed=3, step=10, rank=1, count=4, clips=7, slots=3)


def test_data_parallel_under_torchrun_writes_once(videos, sd, tmp_path):
    run = tmp_path / "run"
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
            "-m", "audiotoken_cli",
            *train_args(videos, run, sd, "--max-steps", "2", "--batch-size", "1")]
    # A session of its own, so a hang kills the workers too, not just the launcher.
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise
    done = subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("trained embedder") == 1  # rank 0 reports; rank 1 is silent
    assert [m["step"] for m in metrics(run)] == [1, 2]
    config = json.loads((run / "config.json").read_text())["training"]
    assert config["world_size"] == 2
    assert config["lr_scaled"] == pytest.approx(1e-5 * 1 * 1 * 2)
    assert load_embedder(run).model.config.token_dim == 32
