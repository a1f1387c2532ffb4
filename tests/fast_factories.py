"""Tiny weights for ``generate --fast`` in their real on-disk formats.

- An LCM-LoRA: ``pytorch_lora_weights.safetensors`` with the key naming of the published
  ``latent-consistency/lcm-lora-sdv1-5`` file (``lora_unet_<module path with _>.lora_down.weight``,
  ``.lora_up.weight``, ``.alpha``), made for a given UNet's own modules.
- TAESD: a diffusers ``AutoencoderTiny`` folder written by ``save_pretrained``.
"""

from __future__ import annotations

from pathlib import Path

import torch

LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj",
                "ff.net.2", "conv1", "conv2", "time_emb_proj")


def lcm_lora_state_dict(unet: torch.nn.Module, rank: int = 2, seed: int = 0,
                        scale: float = 0.05) -> dict[str, torch.Tensor]:
    """A random LoRA over ``unet``'s attention, feed-forward and resnet layers, kohya-named."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, module in unet.named_modules():
        if not name.endswith(LORA_TARGETS) or not isinstance(module, (torch.nn.Linear,
                                                                     torch.nn.Conv2d)):
            continue
        key = "lora_unet_" + name.replace(".", "_")
        weight = module.weight
        if isinstance(module, torch.nn.Linear):
            down = torch.randn(rank, weight.shape[1], generator=generator) * scale
            up = torch.randn(weight.shape[0], rank, generator=generator) * scale
        else:
            down = torch.randn(rank, weight.shape[1], *weight.shape[2:], generator=generator) * scale
            up = torch.randn(weight.shape[0], rank, 1, 1, generator=generator) * scale
        state[f"{key}.lora_down.weight"] = down
        state[f"{key}.lora_up.weight"] = up
        state[f"{key}.alpha"] = torch.tensor(float(rank))
    return state


def make_lcm_lora(path: Path, sd_folder: Path, seed: int = 0) -> Path:
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file

    unet = UNet2DConditionModel.from_pretrained(Path(sd_folder) / "unet")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(lcm_lora_state_dict(unet, seed=seed), str(path))
    return path


def make_tiny_taesd(folder: Path, seed: int = 0) -> Path:
    """An AutoencoderTiny that upsamples by 2, like the tiny SD's VAE (real TAESD: by 8)."""
    from diffusers import AutoencoderTiny

    torch.manual_seed(seed)
    model = AutoencoderTiny(encoder_block_out_channels=(8, 8), decoder_block_out_channels=(8, 8),
                            num_encoder_blocks=(1, 1), num_decoder_blocks=(1, 1),
                            latent_channels=4)
    model.save_pretrained(folder)
    return Path(folder)
