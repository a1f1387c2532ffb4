"""What differs between SD 1.x/2.x and SDXL in training: text encoders, UNet conditioning,
sample images, the default frame size and the memory options.

SDXL's UNet takes, besides the text embeddings (B, 77, d1 + d2), "added conditioning": the
pooled embedding of ``text_encoder_2`` (B, P) and six numbers per image (original height and
width, crop top and left, target height and width) embedded like timesteps. We give it each
frame's real original size and crop, as SDXL was trained, so the model is told the truth about
the pictures the token learns from.
"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from pathlib import Path

import torch

from audiotoken_cli.config import TrainSettings
from audiotoken_cli.render.kind import TOKENIZERS, ModelKind, model_kind
from audiotoken_cli.render.prompt import DualPromptEncoder, PromptEncoder


def with_model_size(settings: TrainSettings) -> TrainSettings:
    """``settings`` with a frame size: the one given, else the model's own default (its UNet's
    sample size × the VAE's downscale: 512 for SD 1.x, 768 for SD 2.x-v, 1024 for SDXL)."""
    if settings.size is not None:
        return settings
    from audiotoken_cli.render.diffusion import check_sd_folder

    check_sd_folder(Path(settings.sd))  # its message names what a broken folder lacks
    side = model_kind(Path(settings.sd)).default_size
    return dataclasses.replace(settings, size=(side, side))


def load_text_encoders(sd: Path, kind: ModelKind, variant: str | None, device: torch.device,
                       dtype: torch.dtype, checkpointing: bool):
    """The frozen text encoder(s) and tokenizer(s) as a prompt encoder, on ``device``.

    The token's gradient flows back through every text encoder, so with ``checkpointing`` they
    recompute their activations in the backward pass too (active in train mode only; CLIP's
    dropout is 0, so train mode changes nothing else).
    """
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    classes = {"text_encoder": CLIPTextModel, "text_encoder_2": CLIPTextModelWithProjection}
    encoders, tokenizers = [], []
    for part in kind.encoders:
        encoder = classes[part].from_pretrained(sd, subfolder=part, variant=variant)
        encoder.requires_grad_(False).to(device=device, dtype=dtype)
        if checkpointing:
            _enable_checkpointing(encoder)
            encoder.train()
        else:
            encoder.eval()
        encoders.append(encoder)
        tokenizers.append(CLIPTokenizer.from_pretrained(sd, subfolder=TOKENIZERS[part]))
    if kind.name != "sdxl":
        return PromptEncoder(tokenizers[0], encoders[0])
    return DualPromptEncoder.load(tokenizers, encoders, zeros_for_empty_negative=_force_zeros(sd))


def _enable_checkpointing(encoder) -> None:
    """transformers 5.x renamed gradient to activation checkpointing; older 5.x has only the
    first name. Non-reentrant: the encoder's inputs (the spliced rows) carry the gradient."""
    kwargs = {"use_reentrant": False}
    if hasattr(encoder, "activation_checkpointing_enable"):
        encoder.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        encoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def _force_zeros(sd: Path) -> bool:
    import json

    return bool(json.loads((Path(sd) / "model_index.json").read_text()).get(
        "force_zeros_for_empty_prompt", True))


def vae_dtype(kind: ModelKind, vae_config, dtype: torch.dtype) -> torch.dtype:
    """SDXL's VAE overflows in float16 (its config says ``force_upcast``): it runs in float32
    then, as diffusers' SDXL pipeline does. The others keep the compute dtype."""
    if kind.name == "sdxl" and dtype == torch.float16 and vae_config.get("force_upcast", False):
        return torch.float32
    return dtype


def predict(frozen, noisy: torch.Tensor, timesteps: torch.Tensor, prompts: list[str],
            tokens: torch.Tensor, geometry: torch.Tensor | None, size: tuple[int, int],
            dtype: torch.dtype) -> torch.Tensor:
    """The UNet's prediction for noisy latents (B, 4, h, w), with the tokens spliced into the
    prompts; gradients reach ``tokens``. ``geometry`` (B, 4): each frame's original size and
    crop (SDXL only); ``size``: the frames' (width, height)."""
    condition = frozen.encoder.condition(prompts, tokens.to(dtype))
    extra = {}
    if condition.pooled is not None:
        if geometry is None:  # no frame to speak of: as if uncropped at the target size
            width, height = size
            geometry = torch.tensor([[height, width, 0, 0]] * noisy.shape[0])
        extra["added_cond_kwargs"] = {"text_embeds": condition.pooled.to(dtype),
                                      "time_ids": time_ids(geometry, size).to(noisy.device, dtype)}
    return frozen.unet(noisy.to(dtype), timesteps, condition.embeds, **extra).sample


def time_ids(geometry: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, 4) original height, width, crop top, left → SDXL's (B, 6) ``add_time_ids``:
    original size, crop corner, target size, each (height, width) / (top, left)."""
    width, height = size
    target = torch.tensor([height, width], dtype=geometry.dtype).expand(geometry.shape[0], 2)
    return torch.cat([geometry.cpu(), target], dim=1).float()


def park_vae(frozen) -> None:
    """Move the VAE to the CPU while training reads cached latents: on a 24 GB GPU that is the
    room SDXL's activations need."""
    frozen.vae.to("cpu")


@contextmanager
def vae_on(frozen, device: torch.device):
    """The VAE on ``device`` for a while (sample grids) when the latent cache let it wait on
    the CPU during training."""
    parked = next(frozen.vae.parameters()).device
    frozen.vae.to(device)
    try:
        yield
    finally:
        frozen.vae.to(parked)
