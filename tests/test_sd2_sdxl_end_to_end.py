"""End to end on a tiny SD 2.x (v-prediction, a wider text encoder) and a tiny SDXL (two text
encoders): train → resume → generate, CLI and API alike, the embed export loaded by diffusers'
load_textual_inversion (two calls for SDXL) drawing generate's image, and
video --keyframes-only --storyboard."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from typer.testing import CliRunner

import audiotoken_cli as audiotoken
from audiotoken_cli.cli import app
from factories import tone, write_audio, write_video
from sdxl_factories import SD2_WIDTH, SDXL_WIDTHS, make_tiny_sd2, make_tiny_sdxl

TINY_BEATS = Path(__file__).parent / "data" / "tiny_beats.pt"
SIZE = 32
RENDER = ["--scheduler", "pndm", "--steps", "3", "-W", str(SIZE), "-H", str(SIZE), "-g", "6"]
runner = CliRunner()


def invoke(*args) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


WIDTHS = {"sd2": (SD2_WIDTH,), "sdxl": SDXL_WIDTHS}
MAKERS = {"sd2": make_tiny_sd2, "sdxl": make_tiny_sdxl}


@pytest.fixture(scope="module", params=["sd2", "sdxl"])
def trained(request, tmp_path_factory) -> dict[str, Path]:
    """A tiny model and an embedder trained on it for 2 steps, then resumed to 3."""
    kind = request.param
    folder = tmp_path_factory.mktemp(kind)
    sd = MAKERS[kind](folder / kind)
    videos = folder / "videos"
    videos.mkdir()
    for i, color in enumerate([(200, 40, 40), (40, 200, 40)]):
        write_video(videos / f"clip{i}.mp4", tone(1.5, freq=300 * (i + 1), seed=i), seconds=1.5,
                    color=color)
    common = ["train", videos, "-o", folder / "run", "--sd", sd, "--audio-encoder", TINY_BEATS,
              "--batch-size", "2", "--grad-accum", "1", "--resolution", SIZE, "--audio-seconds",
              "1", "--device", "cpu", "--windows-per-clip", "2", "--sample-every", "0",
              "--save-every", "1", "--lr", "1e-2", "--no-scale-lr"]
    invoke(*common, "--max-steps", "2")
    invoke(*common, "--max-steps", "3", "--resume")
    sound = write_audio(folder / "dog.wav", tone(3.0, freq=420, seed=7))
    return {"sd": sd, "run": folder / "run", "sound": sound, "kind": kind}


def generate_cli(trained, out: Path, *extra) -> Path:
    invoke("generate", trained["sound"], "--sd", trained["sd"], "--audio-encoder", TINY_BEATS,
           "--embedder", trained["run"], "--device", "cpu", "--dtype", "float32", "--seed", "3",
           "-o", out, *RENDER, *extra)
    return out / "dog_seed3.png"


def rgb(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_the_trained_run_drives_generate_and_the_api_draws_the_same_pixels(trained, tmp_path):
    widths = WIDTHS[trained["kind"]]
    assert json.loads((trained["run"] / "config.json").read_text())["sizes"]["token_dim"] == sum(widths)
    png = generate_cli(trained, tmp_path / "cli")
    info = json.loads(Image.open(png).text["audiotoken"])
    assert info["sd_kind"] == trained["kind"]  # the PNG names the model kind
    assert f"Model kind: {'SDXL' if trained['kind'] == 'sdxl' else 'SD 2.x'}" in Image.open(
        png).text["parameters"]
    model = audiotoken.load(device="cpu", dtype="float32", sd=str(trained["sd"]),
                            audio_encoder=str(TINY_BEATS), embedder=str(trained["run"]))
    image = model.generate(str(trained["sound"]), n=1, seed=3, scheduler="pndm", steps=3,
                           width=SIZE, height=SIZE, guidance=6.0)[0]
    assert np.array_equal(rgb(image), rgb(Image.open(png)))
    assert json.loads(image.info["audiotoken"]) == info
    assert rgb(image).std() > 0  # a picture, not a blank


def test_the_export_loaded_by_diffusers_draws_generates_image(trained, tmp_path):
    """`embed`'s file through diffusers' load_textual_inversion (SDXL: clip_l into text_encoder
    and tokenizer, clip_g into text_encoder_2 and tokenizer_2), rendered by diffusers itself
    with the same seed and the model's own scheduler, within 1.5/255 of `generate`."""
    from diffusers import DiffusionPipeline

    png = generate_cli(trained, tmp_path / "cli")
    invoke("embed", trained["sound"], "--audio-encoder", TINY_BEATS, "--embedder",
           trained["run"], "--device", "cpu", "-o", tmp_path / "tok")
    token_file = tmp_path / "tok" / "dog.safetensors"
    pipe = DiffusionPipeline.from_pretrained(trained["sd"])
    tensors = load_file(token_file)
    if trained["kind"] == "sdxl":
        assert {k: tuple(v.shape) for k, v in tensors.items()} == {
            "clip_l": (1, SDXL_WIDTHS[0]), "clip_g": (1, SDXL_WIDTHS[1])}
        pipe.load_textual_inversion(tensors["clip_l"], token="<dog>",
                                    text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer)
        pipe.load_textual_inversion(tensors["clip_g"], token="<dog>",
                                    text_encoder=pipe.text_encoder_2, tokenizer=pipe.tokenizer_2)
    else:
        assert tensors["emb_params"].shape == (1, SD2_WIDTH)
        pipe.load_textual_inversion(str(token_file), token="<dog>")
    with torch.no_grad():
        theirs = pipe("a photo of <dog>", num_inference_steps=3, guidance_scale=6.0, width=SIZE,
                      height=SIZE, generator=torch.Generator().manual_seed(3)).images[0]
    difference = np.abs(rgb(theirs) - rgb(Image.open(png)))
    assert difference.max() <= 1.5, difference.max()


def test_video_keyframes_only_with_a_storyboard(trained, tmp_path):
    song = write_audio(tmp_path / "song.wav", tone(4.0, freq=330, seed=9))
    invoke("video", song, "--sd", trained["sd"], "--audio-encoder", TINY_BEATS, "--embedder",
           trained["run"], "--device", "cpu", "--dtype", "float32", *RENDER, "--hop", "2",
           "--window", "2", "--fps", "4", "--seed", "5", "--keyframes-only", "--storyboard")
    tokens = load_file(str(tmp_path / "song.audiotoken.tokens.safetensors"))["tokens"]
    assert tokens.shape[1] == sum(WIDTHS[trained["kind"]]) and tokens.shape[0] >= 2
    assert Image.open(tmp_path / "song.audiotoken.storyboard.png").size[0] >= SIZE
    assert (tmp_path / "song.audiotoken.mp4").is_file()


def test_without_a_size_images_take_the_models_own(trained, tmp_path):
    """No -W/-H: the model's own size (UNet sample size × VAE downscale; tiny: 64 SDXL, 24
    SD 2.x; the real SDXL base 1024), the same in the CLI and the API."""
    side = {"sdxl": 64, "sd2": 24}[trained["kind"]]
    invoke("generate", trained["sound"], "--sd", trained["sd"], "--audio-encoder", TINY_BEATS,
           "--embedder", trained["run"], "--device", "cpu", "--dtype", "float32", "--seed", "2",
           "--steps", "2", "-o", tmp_path)
    written = Image.open(tmp_path / "dog_seed2.png")
    assert written.size == (side, side)
    model = audiotoken.load(device="cpu", dtype="float32", sd=str(trained["sd"]),
                            audio_encoder=str(TINY_BEATS), embedder=str(trained["run"]))
    image = model.generate(str(trained["sound"]), n=1, seed=2, steps=2)[0]
    assert np.array_equal(rgb(image), rgb(written))
