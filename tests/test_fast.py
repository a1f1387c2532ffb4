"""`generate --fast`: a tiny LCM-LoRA and a tiny TAESD in their real formats, fetched through
the download path from the local hub stand-in under the preset's real ids, or given as paths."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from audiotoken_cli.config import GenerateSettings, RuntimeSettings, Window
from audiotoken_cli.hub import BUILTIN_PRESETS
from factories import tone, write_audio
from fast_factories import make_lcm_lora, make_tiny_taesd
from hub_server import FakeHub

pytest.importorskip("peft")  # diffusers loads LoRAs through PEFT (a dependency of ours)

DATA = Path(__file__).parent / "data"
TINY_BEATS = DATA / "tiny_beats.pt"
ROOT = Path(__file__).parent.parent
LCM_ID, LCM_FILE = "latent-consistency/lcm-lora-sdv1-5", "pytorch_lora_weights.safetensors"
TAESD_ID = "madebyollin/taesd"


@pytest.fixture(scope="module")
def tiny(tiny_models, tmp_path_factory) -> dict[str, Path]:
    """The session's tiny models (tests/conftest.py) with a LoRA and a TAESD made for them."""
    folder = tmp_path_factory.mktemp("fast")
    return {**tiny_models,
            "lcm_lora": make_lcm_lora(folder / "lcm" / LCM_FILE, tiny_models["sd"]),
            "taesd": make_tiny_taesd(folder / "taesd")}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run(home: Path, hub_url: str | None, *args: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "XDG_"))}
    environment.update({"XDG_CACHE_HOME": str(home / "cache"), "HF_HOME": str(home / "hf"),
                        "XDG_CONFIG_HOME": str(home / "config"), "NO_PROXY": "127.0.0.1",
                        "PYTHONPATH": str(ROOT), "COLUMNS": "200"})
    if hub_url:
        environment["HF_ENDPOINT"] = hub_url
    return subprocess.run([sys.executable, "-m", "audiotoken_cli", *args], capture_output=True,
                          text=True, env=environment, timeout=300)


def test_the_preset_names_both_fast_components():
    preset = BUILTIN_PRESETS["vggsound"]
    assert preset.lcm_lora == f"{LCM_ID}/{LCM_FILE}" and preset.taesd == TAESD_ID


def test_fast_downloads_both_and_records_them_in_each_png(tiny, tmp_path):
    sound = write_audio(tmp_path / "dog.wav", tone(2.0, freq=300))
    with FakeHub() as hub:
        hub.add_file(LCM_ID, LCM_FILE, tiny["lcm_lora"].read_bytes(), lfs=True)
        hub.add_folder(TAESD_ID, tiny["taesd"])
        hub.add_file(TAESD_ID, "taesd_decoder.pth", b"a pickle we must not fetch")
        done = run(tmp_path, hub.url, "generate", str(sound), "--fast", "--sd", str(tiny["sd"]),
                   "--audio-encoder", str(TINY_BEATS), "--embedder", str(tiny["embedder"]),
                   "-W", "64", "-H", "64", "--device", "cpu", "--seed", "4")
        assert hub.errors == []
        fetched = " ".join(path for method, path in hub.requests if method == "GET")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "taesd_decoder.pth" not in fetched
    image = Image.open(tmp_path / "dog_seed4.png")
    info = json.loads(image.text["audiotoken"])
    assert info["steps"] == 4 and info["guidance"] == 1.0 and info["scheduler"] == "lcm"
    assert info["lcm_lora"].endswith(LCM_FILE) and info["lcm_lora_sha256"] == sha256(tiny["lcm_lora"])
    taesd_weights = tiny["taesd"] / "diffusion_pytorch_model.safetensors"
    assert info["taesd_sha256"] == sha256(taesd_weights) and "taesd" in info["taesd"]
    assert "Sampler: LCM" in image.text["parameters"] and "Steps: 4" in image.text["parameters"]

    # Cached: the same run works with the network gone.
    (tmp_path / "dog_seed4.png").unlink()
    again = run(tmp_path, "http://127.0.0.1:9", "generate", str(sound), "--fast", "--offline",
                "--sd", str(tiny["sd"]), "--audio-encoder", str(TINY_BEATS), "--embedder",
                str(tiny["embedder"]), "-W", "64", "-H", "64", "--device", "cpu", "--seed", "4")
    assert again.returncode == 0, again.stderr[-2000:]
    assert (tmp_path / "dog_seed4.png").exists()


def test_local_fast_weights_are_fused_and_decode_with_the_tiny_autoencoder(tiny, tmp_path):
    from diffusers import AutoencoderTiny, LCMScheduler, UNet2DConditionModel
    from safetensors.torch import load_file

    from audiotoken_cli.pipeline.renderer import ImageRenderer, RenderedImage

    settings = GenerateSettings(sd=tiny["sd"], audio_encoder=TINY_BEATS, embedder=tiny["embedder"],
                                seed=2, steps=4, guidance=1.0, width=64, height=64,
                                window=Window(duration=2.0), lcm_lora=tiny["lcm_lora"],
                                taesd=tiny["taesd"], runtime=RuntimeSettings("cpu", "float32"))
    renderer = ImageRenderer.load(settings)
    assert isinstance(renderer.pipe.scheduler, LCMScheduler)
    assert isinstance(renderer.pipe.vae, AutoencoderTiny)
    # Fused: W' = W + (alpha / rank) · up @ down, the LoRA's own formula, in the UNet's weights.
    base = UNet2DConditionModel.from_pretrained(tiny["sd"] / "unet").state_dict()
    lora = load_file(str(tiny["lcm_lora"]))
    name = "up_blocks.1.attentions.0.transformer_blocks.0.attn2.to_v"
    key = "lora_unet_" + name.replace(".", "_")
    up, down = lora[f"{key}.lora_up.weight"], lora[f"{key}.lora_down.weight"]
    scale = float(lora[f"{key}.alpha"]) / down.shape[0]
    fused = renderer.pipe.unet.state_dict()[f"{name}.weight"]
    assert torch.allclose(fused, base[f"{name}.weight"] + scale * up @ down, atol=1e-6)
    sound = write_audio(tmp_path / "x.wav", tone(2.0))
    [result] = list(renderer.images([sound]))
    assert isinstance(result, RenderedImage) and result.image.size == (64, 64)
    assert result.info["steps"] == 4 and result.info["lcm_lora_sha256"] == sha256(tiny["lcm_lora"])


def test_fast_options_need_fast_and_refuse_a_scheduler(tmp_path):
    sound = write_audio(tmp_path / "x.wav", tone(1.0))
    mixed = run(tmp_path, None, "generate", str(sound), "--fast", "--scheduler", "ddim")
    assert mixed.returncode == 2 and "LCM scheduler" in mixed.stderr
    alone = run(tmp_path, None, "generate", str(sound), "--taesd", "x")
    assert alone.returncode == 2 and "add --fast" in alone.stderr
