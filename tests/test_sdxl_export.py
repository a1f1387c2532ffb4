"""`audiotoken embed` with an SDXL embedder: clip_l + clip_g in one file, loadable by diffusers'
two load_textual_inversion calls into the same SDXL pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from typer.testing import CliRunner

from audiotoken_cli.audio.decode import load_window
from audiotoken_cli.audio.fbank import beats_fbank
from audiotoken_cli.cli import app
from audiotoken_cli.config import Window
from audiotoken_cli.models.beats import load_beats
from audiotoken_cli.models.embedder import load_embedder
from audiotoken_cli.render.prompt import DualPromptEncoder
from factories import tone, write_audio
from sdxl_factories import SDXL_WIDTHS, make_sdxl_embedder, make_tiny_sdxl

TINY_BEATS = Path(__file__).parent / "data" / "tiny_beats.pt"


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("xl")
    return {"sdxl": make_tiny_sdxl(folder / "sdxl"),
            "embedder": make_sdxl_embedder(folder / "run"),
            "sound": write_audio(folder / "dog.wav", tone(3.0, freq=300, seed=1))}


def _token(setup) -> torch.Tensor:
    """The token step by step through the library: (d1 + d2,)."""
    beats = load_beats(TINY_BEATS)
    embedder = load_embedder(setup["embedder"]).model
    with torch.no_grad():
        return embedder(beats(beats_fbank(load_window(setup["sound"], Window())[None])))[0]


def _embed(setup, out: Path) -> Path:
    result = CliRunner().invoke(app, ["embed", str(setup["sound"]), "-o", str(out),
                                      "--audio-encoder", str(TINY_BEATS),
                                      "--embedder", str(setup["embedder"]), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    return out / "dog.safetensors"


def test_an_sdxl_token_file_holds_clip_l_and_clip_g(setup, tmp_path):
    path = _embed(setup, tmp_path / "out")
    tensors = load_file(path)
    assert sorted(tensors) == ["clip_g", "clip_l"]
    assert tensors["clip_l"].shape == (1, SDXL_WIDTHS[0])
    assert tensors["clip_g"].shape == (1, SDXL_WIDTHS[1])
    assert all(t.dtype == torch.float32 for t in tensors.values())
    token = _token(setup)
    torch.testing.assert_close(torch.cat([tensors["clip_l"][0], tensors["clip_g"][0]]), token,
                               rtol=0, atol=1e-6)
    with safe_open(path, "pt") as handle:
        meta = handle.metadata()
    assert meta["encoder_dims"] == "32,48" and meta["token_dim"] == "80"


def test_two_load_textual_inversion_calls_give_our_prompt_conditioning(setup, tmp_path):
    """The export, loaded as diffusers documents for SDXL embeddings (clip_l into text_encoder
    and tokenizer, clip_g into text_encoder_2 and tokenizer_2), conditions the pipeline exactly
    as our own splicing of the same token does."""
    from diffusers import StableDiffusionXLPipeline

    path = _embed(setup, tmp_path / "out")
    state = load_file(path)
    theirs = StableDiffusionXLPipeline.from_pretrained(setup["sdxl"])
    theirs.load_textual_inversion(state["clip_l"], token="<dog>", text_encoder=theirs.text_encoder,
                                  tokenizer=theirs.tokenizer)
    theirs.load_textual_inversion(state["clip_g"], token="<dog>",
                                  text_encoder=theirs.text_encoder_2, tokenizer=theirs.tokenizer_2)
    with torch.no_grad():
        embeds, _, pooled, _ = theirs.encode_prompt("a photo of <dog>", device="cpu",
                                                    num_images_per_prompt=1,
                                                    do_classifier_free_guidance=True)
    ours_pipe = StableDiffusionXLPipeline.from_pretrained(setup["sdxl"])
    encoder = DualPromptEncoder.load((ours_pipe.tokenizer, ours_pipe.tokenizer_2),
                                     (ours_pipe.text_encoder, ours_pipe.text_encoder_2))
    with torch.no_grad():
        ours = encoder.condition(["a photo of <*>"], _token(setup)[None])
    torch.testing.assert_close(ours.embeds, embeds, rtol=0, atol=1e-5)
    torch.testing.assert_close(ours.pooled, pooled, rtol=0, atol=1e-5)
