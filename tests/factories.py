"""Builders for test inputs: media files written with PyAV, tiny models in the real formats.

Everything is made inside the test, on the CPU, in milliseconds; nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import torch

from audiotoken_cli.models.beats import BEATs, BEATsConfig
from audiotoken_cli.models.embedder import PAPER_KEYS, AudioEmbedder
from audiotoken_cli.config import EmbedderConfig


def tone(seconds: float, rate: int = 16000, freq: float = 440.0, channels: int = 1,
         amplitude: float = 0.5, seed: int = 0) -> np.ndarray:
    """A tone with a little noise, (channels, samples) float32; channels differ slightly."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * rate)) / rate
    rows = [amplitude * np.sin(2 * np.pi * freq * (1 + 0.1 * c) * t)
            + 0.01 * rng.standard_normal(t.size) for c in range(channels)]
    return np.stack(rows).astype(np.float32)


def write_audio(path: Path, samples: np.ndarray, rate: int = 16000, codec: str | None = None) -> Path:
    """Encode (channels, samples) float audio to ``path``; the container follows the suffix.

    WAV is 16-bit PCM so its decoded values are known exactly (int16 / 32768).
    """
    path = Path(path)
    samples = np.atleast_2d(np.asarray(samples, dtype=np.float32))
    channels = samples.shape[0]
    codec = codec or {".wav": "pcm_s16le", ".flac": "flac", ".mp3": "mp3", ".ogg": "libopus",
                      ".opus": "libopus", ".m4a": "aac"}[path.suffix]
    layout = "mono" if channels == 1 else "stereo"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate, layout=layout)
        _encode_audio(container, stream, samples, rate, layout)
    return path


def write_video(path: Path, samples: np.ndarray | None, rate: int = 16000, seconds: float = 2.0,
                color: tuple[int, int, int] = (200, 40, 40), fps: int = 10) -> Path:
    """A small solid-colour video, with an audio track unless ``samples`` is None."""
    path = Path(path)
    with av.open(str(path), "w") as container:
        webm = path.suffix == ".webm"
        video = container.add_stream("libvpx" if webm else "mpeg4", rate=fps)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = None
        if samples is not None:
            audio = container.add_stream("libopus" if webm else "aac", rate=rate, layout="mono")
        frame = np.zeros((48, 64, 3), dtype=np.uint8) + np.array(color, dtype=np.uint8)
        for _ in range(round(seconds * fps)):
            for packet in video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
        if audio is not None:
            _encode_audio(container, audio, np.atleast_2d(samples), rate, "mono")
    return path


def _encode_audio(container, stream, samples: np.ndarray, rate: int, layout: str) -> None:
    """Feed the encoder in 1024-sample frames (some codecs require a fixed frame size)."""
    clipped = np.clip(samples, -1.0, 1.0)
    pcm16 = stream.codec_context.name.startswith("pcm_s16")
    step = stream.codec_context.frame_size or 1024
    for begin in range(0, clipped.shape[1], step):
        chunk = clipped[:, begin:begin + step]
        if pcm16:
            packed = (chunk * 32767).round().astype(np.int16).T.reshape(1, -1).copy()
            frame = av.AudioFrame.from_ndarray(packed, format="s16", layout=layout)
        else:
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp",
                                               layout=layout)
        frame.sample_rate = rate
        frame.pts = begin
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)


def make_paper_embedder(path: Path, input_dim: int, token_dim: int, seed: int = 0) -> Path:
    """A random embedder saved the way the paper's code saves it: a pickled state dict with its
    key names and 1×1 Conv1d weight shapes (out, in, 1)."""
    generator = torch.Generator().manual_seed(seed)
    model = AudioEmbedder(EmbedderConfig(input_dim, input_dim, token_dim))
    state = {}
    for ours, paper in PAPER_KEYS.items():
        tensor = model.state_dict()[ours]
        values = torch.randn(tensor.shape, generator=generator) * 0.2
        is_conv = paper.startswith("fga.") and paper.endswith("weight")
        state[paper] = values.unsqueeze(-1) if is_conv else values
    torch.save(state, path)
    return Path(path)


# A BEATs cfg as the official code saves it (all its keys), tiny but with the real fine-tuned
# model's switches. Must stay equal to the cfg of tests/data/tiny_beats.pt (made by the official
# code); test_beats.py checks that. Few buckets and a short max_distance make the 88-patch test
# input reach every bucket regime (exact, log-spaced, saturated).
TINY_BEATS_CFG: dict[str, object] = {
    "input_patch_size": 16, "embed_dim": 24, "conv_bias": False,
    "encoder_layers": 12, "encoder_embed_dim": 32, "encoder_ffn_embed_dim": 48,
    "encoder_attention_heads": 4, "activation_fn": "gelu", "layer_wise_gradient_decay_ratio": 0.6,
    "layer_norm_first": False, "deep_norm": True, "dropout": 0.0, "attention_dropout": 0.0,
    "activation_dropout": 0.0, "encoder_layerdrop": 0.05, "dropout_input": 0.0,
    "conv_pos": 16, "conv_pos_groups": 4, "relative_position_embedding": True,
    "num_buckets": 32, "max_distance": 48, "gru_rel_pos": True,
    "finetuned_model": True, "predictor_dropout": 0.0, "predictor_class": 5,
}


def make_tiny_beats_checkpoint(path: Path, seed: int = 0, **cfg_overrides: object) -> Path:
    """A random tiny BEATs in the official file format ``{'cfg': dict, 'model': state_dict}``.

    Built with our module, so the keys are the official ones; a fine-tuned cfg (the default) also
    gets the ``predictor.*`` classifier head. Every parameter is random, norms and gates included,
    so a wrong formula anywhere changes the output.
    """
    cfg = {**TINY_BEATS_CFG, **cfg_overrides}
    model = BEATs(BEATsConfig.from_dict(cfg))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():  # the shared bias table comes once
            param.copy_(_random_beats_value(name, param.shape, generator))
    state = model.state_dict()
    if cfg["finetuned_model"]:
        classes, width = cfg["predictor_class"], cfg["encoder_embed_dim"]
        state["predictor.weight"] = torch.randn(classes, width, generator=generator) * 0.1
        state["predictor.bias"] = torch.randn(classes, generator=generator) * 0.1
    torch.save({"cfg": cfg, "model": state}, path)
    return Path(path)


def _random_beats_value(name: str, shape: torch.Size, generator: torch.Generator) -> torch.Tensor:
    """Values on the scale a trained model has: unit-ish gains, small biases, 1/sqrt(fan-in)."""
    noise = torch.randn(shape, generator=generator)
    if name.endswith("grep_a"):
        return 1.0 + 0.5 * noise
    if "layer_norm" in name and name.endswith("weight"):
        return 1.0 + 0.3 * noise
    if name.endswith("weight_g"):
        return noise.abs() + 0.5
    if name.endswith("relative_attention_bias.weight"):
        return noise
    if name.endswith("bias"):
        return 0.1 * noise
    fan_in = shape[1:].numel() if len(shape) > 1 else 1
    return noise / fan_in**0.5


def make_tiny_tokenizer(folder: Path):
    """A real CLIP BPE tokenizer with a few words and letters, saved to ``folder``."""
    import json

    from transformers import CLIPTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    words = ["a</w>", "photo</w>", "of</w>", "dog</w>", "blurry</w>", "sketch</w>", "the</w>"]
    letters = list("abcdefghijklmnopqrstuvwxyz")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for token in words + letters + [f"{c}</w>" for c in letters]:
        vocab.setdefault(token, len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"),
                              model_max_length=77)
    tokenizer.save_pretrained(folder)
    return tokenizer


def make_tiny_sd(folder: Path, text_width: int = 32, seed: int = 0) -> Path:
    """A tiny random Stable Diffusion folder in diffusers' layout (SD 1.x shape, PNDM scheduler).

    ``text_width`` is the text encoder's width: 768 stands for SD 1.x, 1024 for SD 2.x.
    """
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    folder = Path(folder)
    tokenizer = make_tiny_tokenizer(folder / "_tokenizer_src")
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=8, in_channels=4,
        out_channels=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=text_width,
        attention_head_dim=4, norm_num_groups=8)
    vae = AutoencoderKL(block_out_channels=(8, 16), in_channels=3, out_channels=3,
                        down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4,
                        norm_num_groups=8, sample_size=32)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=text_width, intermediate_size=2 * text_width,
        num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=77,
        bos_token_id=0, eos_token_id=1, pad_token_id=1))
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              skip_prk_steps=True, steps_offset=1)
    pipe = StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=text_encoder,
                                   tokenizer=tokenizer, scheduler=scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(folder)
    import shutil

    shutil.rmtree(folder / "_tokenizer_src")
    return folder
