"""`audiotoken train` on a tiny SDXL and a tiny SD 2.x (v-prediction): runs, resumes exactly,
conditions SDXL on each frame's real size and crop, and its run loads as an embedder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from audiotoken_cli.cli import app
from audiotoken_cli.config import TrainSettings
from audiotoken_cli.models.embedder import load_embedder
from audiotoken_cli.training.conditioning import time_ids, with_model_size
from audiotoken_cli.training.frames import fit_and_crop_with_geometry
from factories import tone, write_video
from sdxl_factories import SD2_WIDTH, SDXL_WIDTHS, make_tiny_sd2, make_tiny_sdxl

TINY_BEATS = Path(__file__).parent / "data" / "tiny_beats.pt"
runner = CliRunner()


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    return {"sdxl": make_tiny_sdxl(folder / "xl"), "sd2": make_tiny_sd2(folder / "sd2")}


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("videos")
    for i, color in enumerate([(200, 40, 40), (40, 200, 40), (40, 40, 200)]):
        write_video(root / f"clip{i}.mp4", tone(1.5, freq=300 * (i + 1), seed=i), seconds=1.5,
                    color=color)
    return root


def train(videos: Path, run: Path, sd: Path, *extra) -> None:
    args = ["train", str(videos), "-o", str(run), "--sd", str(sd), "--audio-encoder",
            str(TINY_BEATS), "--batch-size", "2", "--grad-accum", "1", "--resolution", "32",
            "--audio-seconds", "1", "--device", "cpu", "--windows-per-clip", "2",
            "--save-every", "2", *map(str, extra)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("kind, widths", [("sdxl", SDXL_WIDTHS), ("sd2", (SD2_WIDTH,))])
def test_train_then_resume_repeats_the_uninterrupted_run(models, videos, tmp_path, kind, widths):
    whole = tmp_path / "whole"
    train(videos, whole, models[kind], "--max-steps", "4", "--sample-every", "4", "--cache")
    halves = tmp_path / "halves"
    train(videos, halves, models[kind], "--max-steps", "2", "--sample-every", "0", "--cache")
    train(videos, halves, models[kind], "--max-steps", "4", "--sample-every", "0", "--cache",
          "--resume")
    assert [m["loss"] for m in metrics(halves)] == [m["loss"] for m in metrics(whole)]
    assert all(m["loss"] == m["loss"] for m in metrics(whole))  # finite, not NaN
    loaded = load_embedder(whole)
    assert loaded.model.config.encoder_dims == widths
    assert loaded.model.config.token_dim == sum(widths)
    resumed = load_embedder(halves)
    for name, tensor in loaded.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], tensor, rtol=0, atol=0)
    assert (whole / "samples" / "step-4.png").is_file() and (whole / "loss.png").is_file()
    config = json.loads((whole / "config.json").read_text())
    assert config["training"]["settings"]["size"] == [32, 32]


def test_cached_and_uncached_sdxl_runs_agree(models, videos, tmp_path):
    """The cache holds each frame's geometry with its latents, so SDXL's added conditioning
    is the same whether the pictures are read again or not."""
    train(videos, tmp_path / "cached", models["sdxl"], "--max-steps", "1", "--sample-every",
          "0", "--cache")
    train(videos, tmp_path / "plain", models["sdxl"], "--max-steps", "1", "--sample-every", "0")
    cached, plain = metrics(tmp_path / "cached")[0], metrics(tmp_path / "plain")[0]
    assert cached["mse"] == pytest.approx(plain["mse"], rel=1e-5)


def test_sdxl_is_conditioned_on_each_frames_real_size_and_crop(models, videos, tmp_path):
    """A 64×48 frame cropped to 32×32: original (48, 64), crop corner (top 0, left 5) in the
    resized 43×32 picture, target (32, 32); the UNet's prediction depends on these numbers."""
    from PIL import Image

    picture = Image.new("RGB", (64, 48), "red")
    cropped, geometry = fit_and_crop_with_geometry(picture, (32, 32))
    assert cropped.size == (32, 32) and geometry == (48, 64, 0, 5)
    ids = time_ids(torch.tensor([geometry]), (32, 32))
    assert ids.tolist() == [[48.0, 64.0, 0.0, 5.0, 32.0, 32.0]]

    from audiotoken_cli.training.examples import load_frozen
    from audiotoken_cli.training.conditioning import predict

    settings = with_model_size(TrainSettings(data=videos, output=tmp_path / "r", sd=models["sdxl"],
                                             audio_encoder=TINY_BEATS, size=(32, 32)))
    frozen = load_frozen(settings, torch.device("cpu"), torch.float32)
    noisy = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    token = torch.randn(1, sum(SDXL_WIDTHS), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        real = predict(frozen, noisy, torch.tensor([500]), ["a photo of <*>"], token,
                       torch.tensor([geometry]), (32, 32), torch.float32)
        other = predict(frozen, noisy, torch.tensor([500]), ["a photo of <*>"], token,
                        torch.tensor([[32, 32, 0, 0]]), (32, 32), torch.float32)
    assert real.shape == (1, 4, 16, 16) and not torch.equal(real, other)


def test_the_default_frame_size_follows_the_model(models, tmp_path):
    def size(sd: Path, given=None):
        settings = TrainSettings(data=tmp_path, output=tmp_path / "r", sd=sd,
                                 audio_encoder=TINY_BEATS, size=given)
        return with_model_size(settings).size

    # UNet sample size × VAE downscale, read from the folder (tiny: 32·2 and 12·2; the real
    # SDXL base gives 128·8 = 1024, SD 2.1 96·8 = 768, SD 1.4 64·8 = 512)
    assert size(models["sdxl"]) == (64, 64) and size(models["sd2"]) == (24, 24)
    assert size(models["sdxl"], (40, 24)) == (40, 24)


def test_sdxl_trains_data_parallel_under_torchrun(models, videos, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    run = tmp_path / "run"
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
            "-m", "audiotoken_cli", "train", str(videos), "-o", str(run), "--sd",
            str(models["sdxl"]), "--audio-encoder", str(TINY_BEATS), "--batch-size", "1",
            "--grad-accum", "1", "--resolution", "32", "--audio-seconds", "1", "--device", "cpu",
            "--windows-per-clip", "2", "--sample-every", "0", "--max-steps", "2"]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)  # a hang kills the workers too
    try:
        stdout, stderr = process.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise
    assert process.returncode == 0, stderr[-3000:]
    assert stdout.count("trained embedder") == 1  # rank 0 reports; rank 1 is silent
    assert [m["step"] for m in metrics(run)] == [1, 2]
    assert json.loads((run / "config.json").read_text())["training"]["world_size"] == 2
    assert load_embedder(run).model.config.encoder_dims == SDXL_WIDTHS
