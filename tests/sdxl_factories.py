"""Tiny random SDXL and SD 2.x pipelines in diffusers' real folder layout.

Built the way diffusers' own pipeline tests build their dummy components (a few channels, real
classes, saved with ``save_pretrained``), so our loading code reads them exactly as it reads the
real models. The text widths differ from each other and from the SD 1.x tiny model (32), so a
token row in the wrong encoder or an encoder swap changes the shapes or the numbers.

Like the real models, the tokenizers put ``<|startoftext|>``/``<|endoftext|>`` at the top of the
vocabulary, the second tokenizer (OpenCLIP's) pads with ``!``, and the text-encoder configs keep
the legacy ``eos_token_id: 2``, with which transformers pools at the highest input id.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

SDXL_WIDTHS = (32, 48)
"""text_encoder (CLIP ViT-L's place, 768 in the real model) and text_encoder_2 (bigG's, 1280)."""
SD2_WIDTH = 48
"""The tiny SD 2.x text width (1024 in the real model); SD 1.x's tiny one is 32."""
TIME_EMBED = 8


def make_clip_tokenizer(folder: Path, pad: str = "<|endoftext|>"):
    """A real CLIP BPE tokenizer with a few words and letters; special tokens last, as in CLIP."""
    from transformers import CLIPTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    words = ["a</w>", "photo</w>", "of</w>", "dog</w>", "blurry</w>", "sketch</w>", "the</w>"]
    letters = list("abcdefghijklmnopqrstuvwxyz")
    vocab: dict[str, int] = {"!": 0}
    for token in words + letters + [f"{c}</w>" for c in letters] + ["<|startoftext|>",
                                                                    "<|endoftext|>"]:
        vocab.setdefault(token, len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"),
                              model_max_length=77, pad_token=pad)
    tokenizer.save_pretrained(folder)
    return tokenizer


def _text_config(vocab: int, width: int, act: str, projection: int | None = None):
    from transformers import CLIPTextConfig

    # bos 0 / eos 2 / pad 1: the legacy ids the real SD 2.x and SDXL configs still carry.
    return CLIPTextConfig(vocab_size=vocab, hidden_size=width, intermediate_size=2 * width,
                          num_hidden_layers=3, num_attention_heads=4, max_position_embeddings=77,
                          hidden_act=act, projection_dim=projection or width,
                          bos_token_id=0, eos_token_id=2, pad_token_id=1)


def _tiny_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(block_out_channels=(8, 16), in_channels=3, out_channels=3,
                         down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4,
                         norm_num_groups=8, sample_size=32)


def make_tiny_sdxl(folder: Path, seed: int = 0, force_zeros: bool = True) -> Path:
    """A tiny random StableDiffusionXLPipeline folder: UNet with SDXL's text-time added
    conditioning, two text encoders (CLIPTextModel, CLIPTextModelWithProjection), a tokenizer
    for each, Euler scheduler as in the base model."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    folder = Path(folder)
    first, second = SDXL_WIDTHS
    tokenizer = make_clip_tokenizer(folder / "_tok1")
    tokenizer_2 = make_clip_tokenizer(folder / "_tok2", pad="!")
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=32, in_channels=4,
        out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4),
        use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=TIME_EMBED, transformer_layers_per_block=(1, 1),
        # six added numbers (original size, crop, target size), each embedded, plus the pooled text
        projection_class_embeddings_input_dim=6 * TIME_EMBED + second,
        cross_attention_dim=first + second, norm_num_groups=8)
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, steps_offset=1,
                                       beta_schedule="scaled_linear", timestep_spacing="leading")
    text_encoder = CLIPTextModel(_text_config(len(tokenizer), first, "quick_gelu"))
    text_encoder_2 = CLIPTextModelWithProjection(_text_config(len(tokenizer_2), second, "gelu"))
    pipe = StableDiffusionXLPipeline(vae=_tiny_vae(), text_encoder=text_encoder,
                                     text_encoder_2=text_encoder_2, tokenizer=tokenizer,
                                     tokenizer_2=tokenizer_2, unet=unet, scheduler=scheduler,
                                     force_zeros_for_empty_prompt=force_zeros)
    pipe.save_pretrained(folder)
    shutil.rmtree(folder / "_tok1")
    shutil.rmtree(folder / "_tok2")
    return folder


def make_tiny_sd2(folder: Path, seed: int = 0) -> Path:
    """A tiny random SD 2.x folder: OpenCLIP-style text encoder (gelu, pad ``!``), linear
    projections in the UNet's attention, a v-prediction DDIM scheduler as in SD 2.1."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    torch.manual_seed(seed)
    folder = Path(folder)
    tokenizer = make_clip_tokenizer(folder / "_tok", pad="!")
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=12, in_channels=4,
        out_channels=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=SD2_WIDTH,
        attention_head_dim=(2, 4), use_linear_projection=True, norm_num_groups=8)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                              prediction_type="v_prediction")
    text_encoder = CLIPTextModel(_text_config(len(tokenizer), SD2_WIDTH, "gelu"))
    pipe = StableDiffusionPipeline(unet=unet, vae=_tiny_vae(), text_encoder=text_encoder,
                                   tokenizer=tokenizer, scheduler=scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(folder)
    shutil.rmtree(folder / "_tok")
    return folder


def make_sdxl_embedder(folder: Path, input_dim: int = 96, seed: int = 0) -> Path:
    """A random embedder in our own format with one token row per tiny-SDXL text encoder."""
    from audiotoken_cli.config import EmbedderConfig, EmbedderInfo
    from audiotoken_cli.models.embedder import AudioEmbedder, save_embedder

    torch.manual_seed(seed)
    config = EmbedderConfig(input_dim=input_dim, hidden_dim=input_dim,
                            token_dim=sum(SDXL_WIDTHS), encoder_dims=SDXL_WIDTHS)
    model = AudioEmbedder(config)
    with torch.no_grad():  # tokens on the scale of real embedding rows
        for parameter in model.parameters():
            parameter.mul_(2.0)
    return save_embedder(model, folder, EmbedderInfo(audio_encoder="tiny", source="test"))
