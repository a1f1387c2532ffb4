"""SDXL and SD 2.x models: kind read from the folder; the token spliced into both text encoders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from sdxl_factories import SD2_WIDTH, SDXL_WIDTHS, make_tiny_sd2, make_tiny_sdxl

from audiotoken_cli.errors import ModelError
from audiotoken_cli.render.kind import model_kind
from audiotoken_cli.render.prompt import DualPromptEncoder, PromptEncoder


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    from factories import make_tiny_sd

    folder = tmp_path_factory.mktemp("models")
    return {"sdxl": make_tiny_sdxl(folder / "xl"), "sd2": make_tiny_sd2(folder / "sd2"),
            "sd1": make_tiny_sd(folder / "sd1", text_width=32)}


def test_the_kind_is_read_from_the_folder_not_its_name(models, tmp_path):
    xl = model_kind(models["sdxl"])
    assert (xl.name, xl.text_widths, xl.prediction_type) == ("sdxl", SDXL_WIDTHS, "epsilon")
    sd2 = model_kind(models["sd2"])
    assert (sd2.name, sd2.text_widths, sd2.prediction_type) == ("sd2", (SD2_WIDTH,), "v_prediction")
    assert model_kind(models["sd1"]).name == "sd1"
    # A misleading name changes nothing.
    renamed = shutil.copytree(models["sd2"], tmp_path / "stable-diffusion-xl-base-1.0")
    assert model_kind(renamed).name == "sd2"
    # The default size is the UNet's sample size times the VAE's downscale, as diffusers does.
    assert xl.default_size == 32 * 2 and sd2.default_size == 12 * 2


def test_a_folder_of_another_pipeline_is_refused_in_one_line(models, tmp_path):
    other = shutil.copytree(models["sd1"], tmp_path / "other")
    index = json.loads((other / "model_index.json").read_text())
    (other / "model_index.json").write_text(json.dumps({**index, "_class_name": "FluxPipeline"}))
    with pytest.raises(ModelError, match=r"FluxPipeline, not a Stable Diffusion") as error:
        model_kind(other)
    assert "\n" not in str(error.value)


def _hand_made_pipeline(folder: Path, rows: list[torch.Tensor]):
    """diffusers' own SDXL pipeline with ``<*>`` added to both tokenizers and the token's rows
    written into copies of both embedding tables: the textual-inversion way."""
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(folder)
    for tokenizer, encoder, row in ((pipe.tokenizer, pipe.text_encoder, rows[0]),
                                    (pipe.tokenizer_2, pipe.text_encoder_2, rows[1])):
        tokenizer.add_tokens("<*>")
        encoder.resize_token_embeddings(len(tokenizer))
        with torch.no_grad():
            encoder.get_input_embeddings().weight[tokenizer.convert_tokens_to_ids("<*>")] = row
    return pipe


def test_splicing_into_both_encoders_equals_writing_both_rows_by_hand(models):
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(models["sdxl"])
    encoder = DualPromptEncoder.load((pipe.tokenizer, pipe.tokenizer_2),
                                     (pipe.text_encoder, pipe.text_encoder_2))
    assert encoder.widths == SDXL_WIDTHS
    tokens = torch.randn(2, sum(SDXL_WIDTHS), generator=torch.Generator().manual_seed(1))
    prompts = ["a photo of <*>", "a sketch of the <*> dog"]
    with torch.no_grad():
        ours = encoder.condition(prompts, tokens)
        negative = encoder.negative("")
    for i, prompt in enumerate(prompts):
        rows = list(torch.split(tokens[i], list(SDXL_WIDTHS)))
        by_hand = _hand_made_pipeline(models["sdxl"], rows)
        with torch.no_grad():
            embeds, neg, pooled, neg_pooled = by_hand.encode_prompt(
                prompt, device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=True)
        torch.testing.assert_close(ours.embeds[i], embeds[0], rtol=0, atol=1e-6)
        torch.testing.assert_close(ours.pooled[i], pooled[0], rtol=0, atol=1e-6)
        torch.testing.assert_close(negative.embeds[0], neg[0], rtol=0, atol=0)
        torch.testing.assert_close(negative.pooled[0], neg_pooled[0], rtol=0, atol=0)
    # The pooled embedding depends on the second encoder's row, the first row only reaches the
    # first encoder's half of the embeddings.
    moved = tokens.clone()
    moved[:, :SDXL_WIDTHS[0]] += 1.0
    with torch.no_grad():
        other = encoder.condition(prompts, moved)
    torch.testing.assert_close(other.pooled, ours.pooled, rtol=0, atol=0)
    torch.testing.assert_close(other.embeds[..., SDXL_WIDTHS[0]:], ours.embeds[..., SDXL_WIDTHS[0]:],
                               rtol=0, atol=0)
    assert not torch.equal(other.embeds[..., :SDXL_WIDTHS[0]], ours.embeds[..., :SDXL_WIDTHS[0]])


def test_a_single_encoder_embedder_is_refused_by_sdxl_and_the_reverse(models):
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    xl = StableDiffusionXLPipeline.from_pretrained(models["sdxl"])
    dual = DualPromptEncoder.load((xl.tokenizer, xl.tokenizer_2), (xl.text_encoder, xl.text_encoder_2))
    with pytest.raises(ModelError, match=r"emb: the embedder makes 32-wide tokens but xl is an SDXL"):
        dual.check_token_width(32, "emb", "xl")
    dual.check_token_width(SDXL_WIDTHS, "emb", "xl")
    sd2 = StableDiffusionPipeline.from_pretrained(models["sd2"])
    single = PromptEncoder(sd2.tokenizer, sd2.text_encoder)
    single.check_token_width((SD2_WIDTH,), "emb", "sd2")
    with pytest.raises(ModelError, match=r"tokens for 2 text encoders \[32, 48\] \(SDXL\)"):
        single.check_token_width(SDXL_WIDTHS, "emb", "sd2")
