"""The Python API (`import audiotoken_cli as audiotoken`) against the CLI it stands under."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from factories import make_paper_embedder, make_tiny_sd, tone, write_audio
from PIL import Image
from safetensors.torch import load_file
from typer.testing import CliRunner

import audiotoken_cli as audiotoken
from audiotoken_cli.cli import app

DATA = Path(__file__).parent / "data"
TINY_BEATS = DATA / "tiny_beats.pt"
RENDER = ["--scheduler", "pndm", "--steps", "3", "-W", "64", "-H", "64"]
runner = CliRunner()


@pytest.fixture(scope="module")
def parts(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    return {
        "sd": make_tiny_sd(folder / "sd", text_width=32),
        "embedder": make_paper_embedder(folder / "emb.bin", input_dim=96, token_dim=32, seed=5),
        "audio_encoder": TINY_BEATS,
    }


@pytest.fixture(scope="module")
def model(parts):
    return audiotoken.load(device="cpu", dtype="float32", sd=str(parts["sd"]),
                           audio_encoder=str(parts["audio_encoder"]), embedder=str(parts["embedder"]))


def cli(parts, *args):
    argv = [args[0], "--audio-encoder", str(parts["audio_encoder"]), "--embedder",
            str(parts["embedder"]), "--device", "cpu", "--dtype", "float32", *map(str, args[1:])]
    if args[0] == "generate":
        argv += ["--sd", str(parts["sd"]), *RENDER]
    result = runner.invoke(app, argv)
    assert result.exit_code == 0, result.output
    return result


def rgb(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_generate_equals_the_cli_in_pixels_and_metadata(parts, model, tmp_path):
    clip = write_audio(tmp_path / "a.wav", tone(3.0, freq=300, seed=3))
    images = model.generate(str(clip), n=2, seed=7, scheduler="pndm", steps=3, width=64, height=64)
    assert isinstance(images, list) and len(images) == 2
    out = tmp_path / "cli"
    cli(parts, "generate", clip, "-n", "2", "--seed", "7", "-o", out)
    for offset, image in enumerate(images):
        written = Image.open(out / f"a_seed{7 + offset}.png")
        assert np.array_equal(rgb(image), rgb(written))
        assert json.loads(image.info["audiotoken"]) == json.loads(written.text["audiotoken"])
        assert image.info["parameters"] == written.text["parameters"]


def test_save_image_writes_the_same_chunks(model, tmp_path):
    clip = write_audio(tmp_path / "a.wav", tone(2.0, freq=500, seed=4))
    image = model.generate(clip, n=1, seed=3, scheduler="pndm", steps=2, width=64, height=64)[0]
    audiotoken.save_image(image, tmp_path / "out.png")
    saved = Image.open(tmp_path / "out.png")
    assert saved.text["audiotoken"] == image.info["audiotoken"]
    assert np.array_equal(rgb(saved), rgb(image))


@pytest.mark.parametrize("rate", [16_000, 44_100])
def test_embed_of_an_in_memory_array_equals_embed_of_the_file(parts, model, tmp_path, rate):
    samples = tone(4.0, rate=rate, freq=700, channels=2, seed=rate)
    clip = write_audio(tmp_path / "m.wav", samples, rate=rate)
    # What the file holds after 16-bit quantisation: the array a microphone library would hand over.
    quantised = np.round(np.clip(samples, -1, 1) * 32767).astype(np.int16)  # as write_audio stores it
    cli(parts, "embed", clip, "-o", tmp_path / "tokens")
    from_file = load_file(tmp_path / "tokens" / "m.safetensors")["emb_params"][0]
    from_pair = model.embed((quantised, rate))
    assert from_pair.shape == (model.token_dim,)
    torch.testing.assert_close(from_pair, from_file, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(model.embed(str(clip)), from_file, rtol=1e-5, atol=1e-6)


def test_a_bare_array_is_taken_at_16_khz_and_channels_are_averaged(model):
    samples = torch.from_numpy(tone(2.0, freq=400, channels=2, seed=9))
    together = model.embed(samples)
    mono = model.embed(samples.mean(dim=0))
    torch.testing.assert_close(together, mono)
    # (samples, channels), as sound cards deliver it, is the same sound.
    torch.testing.assert_close(model.embed(samples.T.numpy()), together)


def test_generate_from_an_embed_file_equals_generate_from_the_sound(parts, model, tmp_path):
    clip = write_audio(tmp_path / "s.wav", tone(3.0, freq=900, seed=5))
    cli(parts, "embed", clip)
    token = load_file(tmp_path / "s.safetensors")["emb_params"]  # (1, d)
    settings = dict(n=1, seed=11, scheduler="pndm", steps=2, width=64, height=64)
    from_token = model.generate_from_token(token, **settings)[0]
    from_sound = model.generate(clip, **settings)[0]
    assert np.array_equal(rgb(from_token), rgb(from_sound))
    assert json.loads(from_token.info["audiotoken"])["audio_file"] == "<token>"


def test_a_list_of_inputs_streams_one_list_per_input(model, tmp_path):
    clips = [write_audio(tmp_path / f"{i}.wav", tone(1.5, freq=200 + 300 * i, seed=i)) for i in range(2)]
    stream = model.generate(clips, n=1, seed=1, scheduler="pndm", steps=2, width=64, height=64)
    assert inspect.isgenerator(stream)
    results = list(stream)
    assert [len(images) for images in results] == [1, 1]
    names = [json.loads(images[0].info["audiotoken"])["audio_file"] for images in results]
    assert names == ["0.wav", "1.wav"]


def test_bad_inputs_raise_the_cli_errors(model, tmp_path):
    with pytest.raises(audiotoken.InputError, match="silent"):
        model.embed(np.zeros(16_000, dtype=np.float32))
    with pytest.raises(audiotoken.InputError, match="NaN"):
        model.embed(np.full(16_000, np.nan, dtype=np.float32))
    with pytest.raises(audiotoken.InputError, match="no such file"):
        model.embed(tmp_path / "missing.wav")
    with pytest.raises(audiotoken.UsageError, match="token has 5 values"):
        model.generate_from_token(torch.ones(5))
    with pytest.raises(audiotoken.UsageError, match="<\\*>"):
        model.generate(np.ones(16_000, np.float32) * 0.1, prompt="no placeholder", n=1, steps=1,
                       width=64, height=64)


def test_embed_only_load_skips_stable_diffusion(parts):
    light = audiotoken.load(device="cpu", audio_encoder=str(parts["audio_encoder"]),
                            embedder=str(parts["embedder"]), images=False, offline=True)
    assert light.embed(tone(1.0, seed=1)[0]).shape == (32,)
    with pytest.raises(audiotoken.UsageError, match="images=False"):
        light.generate(tone(1.0, seed=1)[0], n=1)


# ---------------------------------------------------------------------------------------------
# The pinned public surface: changing it is a deliberate act, noted in CHANGELOG.md.

PUBLIC = {
    "load": "(model: 'str' = 'vggsound', device: 'str' = 'auto', dtype: 'str' = 'auto', *, "
            "sd: 'str | None' = None, audio_encoder: 'str | None' = None, embedder: 'str | None' = "
            "None, lora: 'str | None' = None, lcm_lora: 'str | None' = None, taesd: 'str | None' = "
            "None, fast: 'bool' = False, compile: 'bool' = False, images: 'bool' = True, "
            "safety_checker: 'bool' = True, low_vram: 'bool' = False, offline: 'bool' = False, "
            "quiet: 'bool' = True) -> 'AudioToken'",
    "probe": "(path: 'str | Path', *, timeout: 'float | None' = None) -> 'MediaInfo'",
    "save_image": "(image, path: 'str | os.PathLike') -> 'None'",
    "train": "(data: 'str | os.PathLike', output: 'str | os.PathLike', *, model: 'str' = "
             "'vggsound', sd: 'str | None' = None, audio_encoder: 'str | None' = None, init: "
             "'str | None' = None, device: 'str' = 'auto', offline: 'bool' = False, quiet: 'bool' "
             "= True, events=None, **settings) -> 'Path'",
}
METHODS = {
    "embed": "(self, audio: 'AudioInput', *, start: 'float' = 0.0, duration: 'float' = 10.0) -> "
             "'torch.Tensor'",
    "generate": "(self, audio: 'AudioInput | list', n: 'int' = 4, seed: 'int | None' = None, "
                "prompt: 'str' = 'a photo of <*>', *, on_step: 'Callable[[int, int], None] | "
                "None' = None, **settings) -> 'list | Iterator[list]'",
    "generate_from_token": "(self, token: 'torch.Tensor', n: 'int' = 4, seed: 'int | None' = "
                           "None, prompt: 'str' = 'a photo of <*>', *, on_step: "
                           "'Callable[[int, int], None] | None' = None, **settings) -> 'list'",
    "save_token": "(self, audio: 'AudioInput', path: 'str | os.PathLike', *, start: 'float' = "
                  "0.0, duration: 'float' = 10.0) -> 'Path'",
    "video": "(self, audio: 'str | os.PathLike', output_dir: 'str | os.PathLike | None' = None, "
             "*, seed: 'int | None' = None, hop: 'float' = 2.0, window: 'float' = 10.0, fps: "
             "'int' = 8, keyframes_only: 'bool' = False, storyboard: 'bool' = False, "
             "save_keyframes: 'bool' = False, audio_reactive: 'bool' = False, video: 'bool' = "
             "True, overwrite: 'bool' = False, events: 'VideoEvents | None' = None, **settings) "
             "-> 'VideoResult'",
}


def test_the_public_api_is_pinned():
    assert sorted(audiotoken.__all__) == sorted(
        ["AudioToken", "AudioTokenError", "InputError", "MediaInfo", "ModelError", "UsageError",
         "VideoEvents", "VideoResult", "__version__", "load", "probe", "save_image", "train"])
    for name, signature in PUBLIC.items():
        assert str(inspect.signature(getattr(audiotoken, name))) == signature, name
        assert getattr(audiotoken, name).__doc__, name
    for name, signature in METHODS.items():
        method = getattr(audiotoken.AudioToken, name)
        assert str(inspect.signature(method)) == signature, name
        assert ">>>" in method.__doc__, name
    for prop in ("device", "token_dim", "pipe"):
        assert isinstance(getattr(audiotoken.AudioToken, prop), property)
    assert issubclass(audiotoken.InputError, audiotoken.AudioTokenError)


def test_importing_the_package_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, audiotoken_cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
