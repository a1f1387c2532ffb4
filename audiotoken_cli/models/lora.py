"""The paper's optional UNet LoRA (``lora_layers_learned_embeds.bin``), in today's diffusers.

The file is a state dict saved from diffusers' old ``AttnProcsLayers`` wrapping one
``LoRAAttnProcessor`` per attention block, with keys such as

    down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_q_lora.down.weight  (r, in)
    down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_q_lora.up.weight    (out, r)

That processor computed ``to_q(x) + up(down(x))`` (scale 1, no alpha). Current diffusers no longer
has it, so we fold each pair into the projection it adapts: ``W ← W + up·down``. The result is the
same map, needs no extra library (peft), and costs nothing per step.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from audiotoken_cli.errors import ModelError

_KEY = re.compile(r"^(?P<block>.+)\.processor\.to_(?P<proj>q|k|v|out)_lora\.(?P<part>down|up)\.weight$")
_PROJECTION = {"q": "to_q", "k": "to_k", "v": "to_v", "out": "to_out.0"}


def load_paper_lora(path: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Read the file; return {unet Linear's name: (down (r, in), up (out, r))}."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: LoRA file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # many exception types mean "not a readable torch file"
        raise ModelError(f"{path}: not a readable torch state dict") from error
    if not isinstance(state, dict) or not state:
        raise ModelError(f"{path}: expected a state dict of LoRA tensors")
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        match = _KEY.match(key)
        if match is None or not isinstance(tensor, torch.Tensor):
            raise ModelError(f"{path}: not the paper's LoRA format (unexpected key {key!r})")
        target = f"{match['block']}.{_PROJECTION[match['proj']]}"
        pairs.setdefault(target, {})[match["part"]] = tensor
    incomplete = [name for name, pair in pairs.items() if set(pair) != {"down", "up"}]
    if incomplete:
        raise ModelError(f"{path}: LoRA for {incomplete[0]} lacks its down or up weight")
    return {name: (pair["down"], pair["up"]) for name, pair in pairs.items()}


@torch.no_grad()
def apply_paper_lora(unet: torch.nn.Module, path: Path) -> int:
    """Fold the LoRA at ``path`` into ``unet``'s attention projections; return how many."""
    modules = dict(unet.named_modules())
    pairs = load_paper_lora(path)
    for name, (down, up) in pairs.items():
        linear = modules.get(name)
        if not isinstance(linear, torch.nn.Linear):
            raise ModelError(f"{path}: this UNet has no attention projection {name} "
                             "(was the LoRA trained for another model?)")
        if down.shape[1] != linear.in_features or up.shape[0] != linear.out_features:
            raise ModelError(f"{path}: LoRA for {name} is {up.shape[0]}×{down.shape[1]} but the "
                             f"layer is {linear.out_features}×{linear.in_features}")
        delta = up.float() @ down.float()  # (out, in), in float32 before rounding to the model's dtype
        linear.weight.copy_((linear.weight.float() + delta.to(linear.weight.device)).to(linear.weight.dtype))
    return len(pairs)


def is_paper_lora(path: Path) -> bool:
    """Whether ``path`` holds the paper's attention-processor LoRA (a pickled state dict with
    ``….processor.to_q_lora.down.weight`` keys), as opposed to a diffusers or kohya LoRA."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return False  # the paper's file is a torch pickle; safetensors LoRAs are the others
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # not a readable torch file: the diffusers loader names the problem
        return False
    return isinstance(state, dict) and any(_KEY.match(str(key)) for key in state)


def apply_diffusers_lora(pipe, path: Path) -> None:
    """``--lora`` in any format but the paper's (diffusers' ``pytorch_lora_weights.safetensors``,
    kohya's; SD 1.x/2.x or SDXL): through diffusers' ``load_lora_weights``, which knows their
    key layouts, then fused into the weights so no step pays for it."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: LoRA file not found")
    try:
        pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name="user")
        pipe.fuse_lora(lora_scale=1.0)
        pipe.unload_lora_weights()
    except (ValueError, KeyError, IndexError, RuntimeError, OSError, TypeError) as error:
        # diffusers raises several types for a file that is no LoRA of this model's layout
        raise ModelError(f"{path}: could not apply this LoRA to the model "
                         f"({str(error).strip().splitlines()[0]})") from error
