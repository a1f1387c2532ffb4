"""Models and images for the `eval` tests: small random models in the real file formats, and the
reference libraries (torch-fidelity, clean-fid, wav2clip) imported the way they can be here."""

from __future__ import annotations

import atexit
import functools
import importlib.util
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, PngImagePlugin

from factories import make_tiny_tokenizer

REFERENCE_INSTALL = "pip install --no-deps -r tests/reference-packages.txt"


def make_tiny_clip(folder: Path, projection: int, seed: int) -> Path:
    """A random CLIP in transformers' layout: model, tokenizer and the PIL image processor."""
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel

    tokenizer = make_tiny_tokenizer(folder)
    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config={"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                     "intermediate_size": 37, "vocab_size": len(tokenizer),
                     "max_position_embeddings": 77, "bos_token_id": 0, "eos_token_id": 1,
                     "pad_token_id": 1},
        vision_config={"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                       "intermediate_size": 37, "image_size": 32, "patch_size": 8},
        projection_dim=projection)
    CLIPModel(config).save_pretrained(folder)
    CLIPImageProcessorPil(size={"shortest_edge": 32},
                          crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def make_tiny_wav2clip(path: Path) -> Path:
    """A small random Wav2CLIP checkpoint in the Lightning layout (``state_dict`` inside)."""
    from audiotoken_cli.eval.wav2clip import Wav2CLIP

    torch.manual_seed(1)
    state = {k: v.clone() for k, v in Wav2CLIP(width=8, hidden=32).state_dict().items()}
    state["audio_encoder.spectrogram.window"] = torch.hann_window(512)
    torch.save({"epoch": 3, "global_step": 100, "state_dict": state}, path)
    return path


@functools.lru_cache(maxsize=1)
def random_inception() -> Path:
    """Random FID Inception weights in pytorch-fid's key layout (no num_batches_tracked, as in
    the released file), built once per test process: He-normal convolutions keep the activations
    from fading to zero, and random batch-norm statistics make every layer matter."""
    from audiotoken_cli.eval.inception import FIDInception

    generator = torch.Generator().manual_seed(2)
    model = FIDInception()
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu", generator=generator)
        elif isinstance(module, torch.nn.BatchNorm2d):
            size = module.num_features
            module.running_mean.copy_(0.1 * torch.randn(size, generator=generator))
            module.running_var.copy_(torch.rand(size, generator=generator) + 0.5)
            module.bias.data.copy_(0.1 * torch.randn(size, generator=generator))
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    folder = Path(tempfile.mkdtemp(prefix="fid-inception-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)  # about 95 MB
    path = folder / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(state, path)
    return path


def save_png(path: Path, seed: int, info: dict | None = None, size: tuple[int, int] = (64, 64)
             ) -> Path:
    """Random pixels, ``size`` = (width, height), with an optional ``audiotoken`` JSON chunk."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    chunks = PngImagePlugin.PngInfo()
    if info is not None:
        chunks.add_text("audiotoken", json.dumps(info))
    Image.fromarray(pixels).save(path, pnginfo=chunks)
    return path


def require_reference(module: str) -> None:
    """Skip, naming the install command, where a reference package is not installed."""
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"the reference package {module} is not installed ({REFERENCE_INSTALL})")


def as_uint8(picture: Image.Image) -> torch.Tensor:
    """A PIL picture as torchmetrics takes it: uint8 (1, 3, H, W)."""
    return torch.from_numpy(np.array(picture.convert("RGB"))).permute(2, 0, 1)[None]


class Features(torch.nn.Module):
    """Hands torchmetrics' FID and KID features computed by a reference extractor."""

    num_features = 2048

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def clip_image_embeddings(folder: Path, pictures: list) -> torch.Tensor:
    """Normalised image embeddings straight from transformers: (N, projection)."""
    from transformers import CLIPImageProcessorPil, CLIPModel

    model = CLIPModel.from_pretrained(str(folder)).eval()
    processor = CLIPImageProcessorPil.from_pretrained(str(folder))
    with torch.no_grad():
        pixels = processor(images=[p.convert("RGB") for p in pictures],
                           return_tensors="pt")["pixel_values"]
        features = model.get_image_features(pixel_values=pixels).pooler_output
    return torch.nn.functional.normalize(features, dim=-1)
