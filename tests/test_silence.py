"""Silence is a sound; a token that is not finite is an error wherever it arises.

All-zero audio gets a token and images (the fbank floors its log at float32 epsilon, as Kaldi
does), in ``embed``, ``generate``, ``video`` and the API. Zero samples is still an error. Finite
samples too large for the fbank (1e30) would give a NaN token and a black image: one line instead.
"""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from factories import make_paper_embedder, make_tiny_sd, tone, write_audio
from hostile_factories import FLOAT, write_wav
from PIL import Image
from safetensors.torch import load_file
from typer.testing import CliRunner

import audiotoken_cli as audiotoken
from audiotoken_cli.audio.fbank import beats_fbank
from audiotoken_cli.cli import app
from audiotoken_cli.config import GenerateSettings, RuntimeSettings
from audiotoken_cli.pipeline.renderer import ImageRenderer, RenderedImage, RenderFailure

DATA = Path(__file__).parent / "data"
TINY_BEATS = DATA / "tiny_beats.pt"
RATE, SIZE = 16000, 32
runner = CliRunner()


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    return {"sd": make_tiny_sd(folder / "sd", text_width=32),
            "embedder": make_paper_embedder(folder / "emb.bin", input_dim=96, token_dim=32, seed=5)}


@pytest.fixture(scope="module")
def model(models):
    return audiotoken.load(device="cpu", dtype="float32", sd=str(models["sd"]),
                           audio_encoder=str(TINY_BEATS), embedder=str(models["embedder"]))


def invoke(command: str, models, *args):
    argv = [command, *map(str, args), "--audio-encoder", str(TINY_BEATS),
            "--embedder", str(models["embedder"]), "--device", "cpu", "--dtype", "float32"]
    if command != "embed":
        argv += ["--sd", str(models["sd"]), "--scheduler", "pndm", "--steps", "2",
                 "-W", str(SIZE), "-H", str(SIZE)]
    return runner.invoke(app, argv)


def silence(seconds: float) -> np.ndarray:
    return np.zeros((1, round(seconds * RATE)), np.float32)


def overflowing(seconds: float) -> np.ndarray:
    """Finite float samples far outside [-1, 1]: their fbank power overflows float32."""
    return np.random.default_rng(0).standard_normal((1, round(seconds * RATE))).astype(np.float32) * 1e30


def test_the_fbank_of_silence_is_kaldis_log_floor():
    features = beats_fbank(torch.zeros(1, RATE))  # (1, T, 128)
    floor = (np.log(np.finfo(np.float32).eps) - 15.41663) / (2 * 6.55582)
    assert torch.isfinite(features).all()
    np.testing.assert_allclose(features.numpy(), floor, rtol=1e-6)


def test_a_silent_file_gets_a_token_and_images(models, tmp_path):
    quiet = write_audio(tmp_path / "quiet.wav", silence(2.0))
    result = invoke("embed", models, quiet, "-o", tmp_path / "tokens")
    assert result.exit_code == 0, result.output
    token = load_file(str(tmp_path / "tokens" / "quiet.safetensors"))["emb_params"]
    assert token.shape == (1, 32) and torch.isfinite(token).all()
    result = invoke("generate", models, quiet, "-o", tmp_path / "images", "-n", "2", "--seed", "4")
    assert result.exit_code == 0, result.output
    for seed in (4, 5):
        picture = np.asarray(Image.open(tmp_path / "images" / f"quiet_seed{seed}.png"))
        assert picture.shape == (SIZE, SIZE, 3) and picture.std() > 0  # an image, not black


def test_the_api_treats_silence_as_a_sound_and_zero_samples_as_an_error(model, models, tmp_path):
    token = model.embed(np.zeros(RATE, np.float32))
    quiet = write_audio(tmp_path / "quiet.wav", silence(1.0))
    torch.testing.assert_close(model.embed(str(quiet)), token, rtol=0, atol=0)
    [image] = model.generate(np.zeros(RATE, np.float32), n=1, seed=1, scheduler="pndm",
                             steps=2, width=SIZE, height=SIZE)
    assert np.asarray(image).std() > 0
    with pytest.raises(audiotoken.InputError, match="holds no samples"):
        model.embed(np.zeros(0, np.float32))


def test_a_video_with_silent_stretches_at_start_middle_and_end(models, tmp_path):
    # 4 s silence, 2 s tone, 4 s silence, 2 s tone, 4 s silence: three wholly silent windows.
    parts = [silence(4), tone(2, freq=300, seed=1), silence(4), tone(2, freq=2000, seed=2), silence(4)]
    song = write_audio(tmp_path / "song.wav", np.concatenate(parts, axis=1))
    result = invoke("video", models, song, "--hop", 2, "--window", 4, "--fps", 2, "--seed", 3,
                    "--keyframes-only")
    assert result.exit_code == 0, result.output
    with av.open(str(tmp_path / "song.audiotoken.mp4")) as container:
        assert abs(sum(1 for _ in container.decode(video=0)) - 2 * 16) <= 1
    sidecar = json.loads((tmp_path / "song.audiotoken.json").read_text())
    tokens = load_file(str(tmp_path / "song.audiotoken.tokens.safetensors"))["tokens"]
    assert tokens.shape == (9, 32) and torch.isfinite(tokens).all()
    silent = [k["index"] for k in sidecar["keyframes"]
              if k["start"] + k["duration"] <= 4 or (6 <= k["start"] and k["start"] + k["duration"] <= 10)
              or k["start"] >= 12]
    assert silent[0] == 0 and silent[-1] == 8 and len(silent) >= 3  # start, middle and end
    # Every wholly silent window is the same sound: the token of 4 s of silence.
    result = invoke("embed", models, write_audio(tmp_path / "hush.wav", silence(4)),
                    "--duration", 4, "-o", tmp_path / "hush")
    assert result.exit_code == 0, result.output
    hush = load_file(str(tmp_path / "hush" / "hush.safetensors"))["emb_params"][0]
    for index in silent:
        torch.testing.assert_close(tokens[index], hush, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(tokens[4], tokens[5], atol=1e-3)  # the tones are heard too


def test_overflowing_samples_are_one_line_in_embed_and_generate(models, tmp_path):
    huge = write_wav(tmp_path / "huge.wav", overflowing(1.0), fmt=FLOAT)
    good = write_audio(tmp_path / "good.wav", tone(1.0, seed=3))
    for command in ("embed", "generate"):
        out = tmp_path / command
        result = invoke(command, models, huge, good, "-o", out)
        assert result.exit_code == 1, result.output
        lines = [line for line in result.output.splitlines() if str(huge) in line and "error" in line]
        assert lines == [f"error: {huge}: the audio gives a NaN or infinite token (its samples are "
                         "far outside [-1, 1], so its features overflow)"], result.output
        assert "Traceback" not in result.output
        assert [p.stem.split("_seed")[0] for p in out.iterdir()] == ["good"]  # nothing black


def test_the_good_token_beside_an_overflowing_one_in_a_batch_is_unchanged(models, tmp_path):
    huge = write_wav(tmp_path / "huge.wav", overflowing(1.0), fmt=FLOAT)
    good = write_audio(tmp_path / "good.wav", tone(1.0, seed=3))
    assert invoke("embed", models, huge, good, "-o", tmp_path / "both").exit_code == 1
    assert invoke("embed", models, good, "-o", tmp_path / "alone").exit_code == 0
    both = load_file(str(tmp_path / "both" / "good.safetensors"))["emb_params"]
    alone = load_file(str(tmp_path / "alone" / "good.safetensors"))["emb_params"]
    torch.testing.assert_close(both, alone, rtol=1e-5, atol=1e-6)


ONE_LINE_AUDIO = r"^[^\n]+: the audio gives a NaN or infinite token[^\n]*$"
ONE_LINE_TOKEN = r"^[^\n]+: the token holds NaN or infinite values$"


def test_a_non_finite_token_is_an_error_in_the_api(model):
    with pytest.raises(audiotoken.InputError, match=ONE_LINE_AUDIO):
        model.embed(overflowing(1.0)[0])
    with pytest.raises(audiotoken.InputError, match=ONE_LINE_AUDIO):
        model.generate(overflowing(1.0)[0], n=1, seed=1, steps=1, width=SIZE, height=SIZE)
    token = model.embed(tone(1.0)[0]).clone()
    for bad in (float("nan"), float("inf")):
        token[3] = bad
        with pytest.raises(audiotoken.InputError, match=ONE_LINE_TOKEN):
            model.generate_from_token(token, n=1, seed=1, steps=1, width=SIZE, height=SIZE)


def test_the_streaming_renderer_refuses_non_finite_tokens_and_goes_on(models):
    settings = GenerateSettings(sd=models["sd"], audio_encoder=TINY_BEATS, embedder=models["embedder"],
                                seed=1, steps=1, width=SIZE, height=SIZE, scheduler="pndm",
                                runtime=RuntimeSettings(device="cpu", dtype="float32"))
    renderer = ImageRenderer.load(settings)
    nan_token = torch.full((32,), float("nan"))
    huge = torch.from_numpy(overflowing(1.0)[0])
    good = torch.from_numpy(tone(1.0, seed=2)[0])
    results = list(renderer.images([nan_token, huge, good]))
    failures = [r.message for r in results if isinstance(r, RenderFailure)]
    assert failures == ["token: the token holds NaN or infinite values",
                        "waveform: the audio gives a NaN or infinite token (its samples are far "
                        "outside [-1, 1], so its features overflow)"]
    [image] = [r for r in results if isinstance(r, RenderedImage)]
    assert image.request.sound.name == "waveform" and np.asarray(image.image).std() > 0


def test_a_video_of_overflowing_audio_fails_with_one_line(models, tmp_path):
    huge = write_wav(tmp_path / "huge.wav", overflowing(4.0), fmt=FLOAT)
    result = invoke("video", models, huge, "--hop", 2, "--window", 2, "--fps", 2, "--keyframes-only")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"{huge} (window at 0 s): the audio gives a NaN or infinite token" in result.output
    assert not list(tmp_path.glob("huge.audiotoken*"))
