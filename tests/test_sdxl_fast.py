"""`generate --fast` on SDXL: its LCM-LoRA fused and a tiny autoencoder decoding; the CLI and
the API draw the same pixels, and the PNG records the fast weights and the model kind."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

import audiotoken_cli as audiotoken
from audiotoken_cli.cli import app
from factories import tone, write_audio
from fast_factories import make_lcm_lora, make_tiny_taesd
from sdxl_factories import make_sdxl_embedder, make_tiny_sdxl

TINY_BEATS = Path(__file__).parent / "data" / "tiny_beats.pt"


def test_fast_sdxl_cli_equals_api(tmp_path):
    sd = make_tiny_sdxl(tmp_path / "xl")
    lcm = make_lcm_lora(tmp_path / "lcm" / "pytorch_lora_weights.safetensors", sd)
    taesd = make_tiny_taesd(tmp_path / "taesdxl")
    embedder = make_sdxl_embedder(tmp_path / "run")
    sound = write_audio(tmp_path / "x.wav", tone(2.0, freq=600, seed=2))
    result = CliRunner().invoke(app, [
        "generate", str(sound), "--fast", "--sd", str(sd), "--lcm-lora", str(lcm), "--taesd",
        str(taesd), "--audio-encoder", str(TINY_BEATS), "--embedder", str(embedder), "--device",
        "cpu", "--dtype", "float32", "-W", "32", "-H", "32", "--seed", "4", "-o",
        str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    written = Image.open(tmp_path / "out" / "x_seed4.png")
    info = json.loads(written.text["audiotoken"])
    assert info["sd_kind"] == "sdxl" and info["scheduler"] == "lcm" and info["steps"] == 4
    assert info["lcm_lora_sha256"] and info["taesd_sha256"]
    model = audiotoken.load(device="cpu", dtype="float32", sd=str(sd), audio_encoder=str(TINY_BEATS),
                            embedder=str(embedder), lcm_lora=str(lcm), taesd=str(taesd))
    image = model.generate(str(sound), n=1, seed=4, width=32, height=32)[0]
    assert np.array_equal(np.asarray(image.convert("RGB")), np.asarray(written.convert("RGB")))
