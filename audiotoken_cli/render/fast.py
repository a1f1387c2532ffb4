"""``--fast``: a few steps instead of 25, and a tiny decoder instead of the VAE.

- LCM-LoRA (``latent-consistency/lcm-lora-sdv1-5``): a LoRA distilled for latent-consistency
  sampling, fused into the UNet once at load, with diffusers' ``LCMScheduler`` at 4 steps.
  Guidance 1.0 switches classifier-free guidance off (the LoRA was distilled with guidance built
  in), which also halves every UNet call.
- TAESD (``madebyollin/taesd``, diffusers' ``AutoencoderTiny``): decodes latents with about 1 %
  of the VAE's compute; slightly softer detail.

Both load through diffusers (the LoRA through its PEFT backend, so ``peft`` is a dependency).
"""

from __future__ import annotations

from pathlib import Path

import torch

from audiotoken_cli.errors import ModelError

FAST_STEPS = 4
FAST_GUIDANCE = 1.0
FAST_SCHEDULER = "lcm"


def fuse_lcm_lora(pipe, lora_file: Path) -> None:
    """Fuse the LCM-LoRA into the UNet's weights and switch to the LCM scheduler.

    Fusing costs one pass over the weights at load; afterwards each step is as cheap as without
    a LoRA (no adapter layers left in the forward pass).
    """
    from diffusers import LCMScheduler

    lora_file = Path(lora_file)
    if not lora_file.is_file():
        raise ModelError(f"{lora_file}: not an LCM-LoRA file (--lcm-lora wants "
                         "pytorch_lora_weights.safetensors)")
    if lora_file.suffix != ".safetensors":
        raise ModelError(f"{lora_file}: the LCM-LoRA must be a .safetensors file (no pickles)")
    try:
        pipe.load_lora_weights(str(lora_file.parent), weight_name=lora_file.name,
                               adapter_name="lcm")
        pipe.fuse_lora(components=["unet"], lora_scale=1.0)
        pipe.unload_lora_weights()
    except (ValueError, KeyError, RuntimeError, OSError) as error:
        raise ModelError(f"{lora_file}: could not apply the LCM-LoRA to this UNet "
                         f"({str(error).strip().splitlines()[0]})") from error
    pipe.scheduler = LCMScheduler.from_config(pipe.scheduler.config)


def use_taesd(pipe, folder: Path, device: torch.device, dtype: torch.dtype) -> None:
    """Replace the pipeline's VAE by the tiny autoencoder (decode only is used)."""
    from diffusers import AutoencoderTiny

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise ModelError(f"{folder}: not a diffusers AutoencoderTiny folder (no config.json); "
                         "--taesd wants e.g. madebyollin/taesd")
    try:
        tiny = AutoencoderTiny.from_pretrained(folder, dtype=dtype)
    except (OSError, ValueError, KeyError) as error:
        raise ModelError(f"{folder}: could not load the tiny autoencoder "
                         f"({str(error).strip().splitlines()[0]})") from error
    factor = 2 ** (len(tiny.config.decoder_block_out_channels) - 1)
    if factor != pipe.vae_scale_factor:
        raise ModelError(f"{folder}: this tiny autoencoder upsamples by {factor} but the model's "
                         f"VAE by {pipe.vae_scale_factor}; use the TAESD made for this model")
    pipe.vae = tiny.requires_grad_(False).eval().to(device)


def weights_file(folder: Path) -> Path | None:
    """The weight file that stands for a diffusers model folder in the metadata."""
    for name in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors"):
        if (Path(folder) / name).is_file():
            return Path(folder) / name
    return None
