"""`--lora` with an SDXL LoRA in diffusers' or kohya's format: recognised as not the paper's,
loaded through diffusers' load_lora_weights and fused; the UNet then computes what PEFT's own
adapter computes, and a kohya file changes exactly the layers it names."""

from __future__ import annotations

import pytest
import torch

from audiotoken_cli.errors import ModelError
from audiotoken_cli.models.lora import apply_diffusers_lora, is_paper_lora
from sdxl_factories import SDXL_WIDTHS, make_tiny_sdxl


def _unet_output(unet) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(1, 4, 8, 8, generator=generator)
    text = torch.randn(1, 77, sum(SDXL_WIDTHS), generator=generator)
    added = {"text_embeds": torch.randn(1, SDXL_WIDTHS[1], generator=generator),
             "time_ids": torch.tensor([[64.0, 64, 0, 0, 64, 64]])}
    with torch.no_grad():
        return unet(sample, torch.tensor([300]), text, added_cond_kwargs=added).sample


def test_a_diffusers_sdxl_lora_is_fused_and_equals_peft_with_the_adapter(tmp_path):
    from diffusers import StableDiffusionXLPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    folder = make_tiny_sdxl(tmp_path / "xl")
    pipe = StableDiffusionXLPipeline.from_pretrained(folder)
    plain = _unet_output(pipe.unet)
    torch.manual_seed(3)
    pipe.unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights=False,
                                     target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    with_adapter = _unet_output(pipe.unet)
    StableDiffusionXLPipeline.save_lora_weights(
        tmp_path / "lora", unet_lora_layers=convert_state_dict_to_diffusers(
            get_peft_model_state_dict(pipe.unet)))
    lora = tmp_path / "lora" / "pytorch_lora_weights.safetensors"
    assert not is_paper_lora(lora)

    fresh = StableDiffusionXLPipeline.from_pretrained(folder)
    apply_diffusers_lora(fresh, lora)
    fused = _unet_output(fresh.unet)
    assert not torch.allclose(with_adapter, plain, atol=1e-4)
    torch.testing.assert_close(fused, with_adapter, rtol=1e-4, atol=1e-5)
    assert not any("lora" in name for name, _ in fresh.unet.named_parameters())  # fused, no adapter


def test_a_file_that_is_no_lora_for_this_model_is_one_line(tmp_path):
    from diffusers import StableDiffusionXLPipeline
    from safetensors.torch import save_file

    pipe = StableDiffusionXLPipeline.from_pretrained(make_tiny_sdxl(tmp_path / "xl"))
    bogus = tmp_path / "bogus.safetensors"
    save_file({"unet.nothing.lora_A.weight": torch.zeros(2, 2)}, str(bogus))
    with pytest.raises(ModelError, match=r"bogus.safetensors: could not apply this LoRA") as error:
        apply_diffusers_lora(pipe, bogus)
    assert "\n" not in str(error.value)


def test_a_kohya_named_sdxl_lora_lands_in_the_layers_it_names(tmp_path):
    """kohya's key layout (``lora_unet_<module path>.lora_down/.lora_up/.alpha``): after
    ``apply_diffusers_lora`` each adapted weight is W + (alpha / rank) · up · down, the layer's own
    formula, in exactly the layers the file names."""
    from diffusers import StableDiffusionXLPipeline
    from safetensors.torch import save_file

    from fast_factories import lcm_lora_state_dict

    folder = make_tiny_sdxl(tmp_path / "xl")
    pipe = StableDiffusionXLPipeline.from_pretrained(folder)
    before = {name: p.detach().clone() for name, p in pipe.unet.named_parameters()}
    state = lcm_lora_state_dict(pipe.unet, rank=2, seed=4)
    save_file(state, str(tmp_path / "kohya.safetensors"))
    apply_diffusers_lora(pipe, tmp_path / "kohya.safetensors")
    after = dict(pipe.unet.named_parameters())
    name = "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k"
    key = "lora_unet_" + name.replace(".", "_")
    down, up = state[f"{key}.lora_down.weight"], state[f"{key}.lora_up.weight"]
    scale = float(state[f"{key}.alpha"]) / down.shape[0]
    torch.testing.assert_close(after[f"{name}.weight"], before[f"{name}.weight"] + scale * up @ down,
                               rtol=1e-5, atol=1e-6)
    untouched = "down_blocks.1.attentions.0.norm.weight"  # no LoRA names it
    torch.testing.assert_close(after[untouched], before[untouched], rtol=0, atol=0)


def test_the_papers_lora_format_is_told_apart(tmp_path):
    key = "mid_block.attentions.0.transformer_blocks.0.attn1.processor.to_q_lora.down.weight"
    torch.save({key: torch.zeros(2, 4)}, tmp_path / "lora_layers_learned_embeds.bin")
    assert is_paper_lora(tmp_path / "lora_layers_learned_embeds.bin")
    torch.save({"lora_unet_mid_block_attentions_0_proj_in.lora_down.weight": torch.zeros(2, 4)},
               tmp_path / "kohya.bin")
    assert not is_paper_lora(tmp_path / "kohya.bin")
