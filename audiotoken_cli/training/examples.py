"""Training examples: the frozen models, and (clip, slot) pairs encoded now or read from the feature cache."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from audiotoken_cli.audio.fbank import beats_fbank
from audiotoken_cli.config import TrainSettings
from audiotoken_cli.files import write_atomically
from audiotoken_cli.models.safecache import load_beats_fast
from audiotoken_cli.render.kind import ModelKind, model_kind
from audiotoken_cli.render.prompt import PromptEncoder
from audiotoken_cli.training.data import TrainingData

# ---------------------------------------------------------------------------------------------
# The frozen models


@dataclass
class Frozen:
    """The frozen parts, loaded once."""

    beats: torch.nn.Module
    vae: torch.nn.Module
    unet: torch.nn.Module
    noise_scheduler: object
    encoder: PromptEncoder  # or DualPromptEncoder (SDXL)
    latent_scale: float
    kind: ModelKind | None = None


def load_frozen(settings: TrainSettings, device: torch.device, dtype: torch.dtype) -> Frozen:
    from audiotoken_cli.render.diffusion import quiet_libraries

    quiet_libraries()
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

    from audiotoken_cli.render.diffusion import check_sd_folder, weights_variant
    from audiotoken_cli.training.conditioning import load_text_encoders, vae_dtype

    sd = Path(settings.sd)
    check_sd_folder(sd)
    kind = model_kind(sd)  # SD 1.x, 2.x or XL, from the folder's own files

    variant = weights_variant(sd)
    unet = UNet2DConditionModel.from_pretrained(sd, subfolder="unet", variant=variant)
    vae = AutoencoderKL.from_pretrained(sd, subfolder="vae", variant=variant)
    # Only the noise schedule is used (and its prediction_type: v-prediction for SD 2.x-v).
    scheduler = DDPMScheduler.from_pretrained(sd, subfolder="scheduler")
    beats = load_beats_fast(settings.audio_encoder, device=device, dtype=dtype)
    unet.requires_grad_(False).to(device=device, dtype=dtype)
    vae.requires_grad_(False).to(device=device, dtype=vae_dtype(kind, vae.config, dtype)).eval()
    if settings.gradient_checkpointing:
        # Checkpointing is active only in train mode; the frozen UNet has no dropout, so train
        # mode changes nothing else. Activations are recomputed in the backward pass.
        unet.enable_gradient_checkpointing()
        unet.train()
    else:
        unet.eval()
    encoder = load_text_encoders(sd, kind, variant, device, dtype, settings.gradient_checkpointing)
    return Frozen(beats, vae, unet, scheduler, encoder, vae.config.scaling_factor, kind)


# ---------------------------------------------------------------------------------------------
# Examples: (clip, slot) pairs. Slot k of clip i is a fixed audio window and frame, so the cache
# can hold exactly what the uncached path would compute.


def slot_rng(seed: int, index: int, slot: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed % 2**63, index, slot, 7]))


def step_rng(seed: int, step: int, rank: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed % 2**63, step, rank, 11]))


def pick_examples(seed: int, step: int, rank: int, count: int, clips: int,
                  slots: int) -> list[tuple[int, int]]:
    rng = step_rng(seed, step, rank)
    return [(int(rng.integers(clips)), int(rng.integers(slots))) for _ in range(count)]


class ExampleSource:
    """Features and latents for (clip, slot) pairs, computed now or read from the cache."""

    def __init__(self, data: TrainingData, frozen: Frozen, settings: TrainSettings,
                 device: torch.device, dtype: torch.dtype, cache: FeatureCache | None):
        self.data, self.frozen, self.settings = data, frozen, settings
        self.device, self.dtype, self.cache = device, dtype, cache

    def draw(self, index: int, slot: int) -> dict:
        return self.data.draw(index, slot_rng(self.settings.seed, index, slot))

    def batch(self, pairs: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor, list]:
        """features (B, N, 3·D) float32, latents (B, 4, h, w) float32, labels."""
        return self.batch_with_geometry(pairs)[:3]

    def batch_with_geometry(self, pairs: list[tuple[int, int]]) -> tuple[
            torch.Tensor, torch.Tensor, list, torch.Tensor]:
        """``batch`` and each frame's geometry (B, 4) int64: original height, width, crop top,
        left (SDXL's added conditioning)."""
        labels = [self.data.samples[i].label for i, _ in pairs]
        if self.cache is not None:
            features, latents, geometry = self.cache.read(pairs)
            return features.to(self.device), latents.to(self.device), labels, geometry
        examples = [self.draw(i, k) for i, k in pairs]
        waveforms = torch.stack([e["waveform"] for e in examples])
        pixels = torch.stack([e["pixels"] for e in examples])
        geometry = torch.stack([e["geometry"] for e in examples])
        return self.encode_audio(waveforms), self.encode_pixels(pixels), labels, geometry

    @torch.no_grad()
    def encode_audio(self, waveforms: torch.Tensor) -> torch.Tensor:
        fbank = beats_fbank(waveforms.to(self.device))
        return self.frozen.beats(fbank.to(self.dtype)).float()

    @torch.no_grad()
    def encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        # The distribution's mean rather than a sample: deterministic, so the cached and
        # uncached paths agree, and the VAE's posterior is very narrow anyway.
        vae = self.frozen.vae
        posterior = vae.encode(pixels.to(self.device, vae.dtype)).latent_dist
        return posterior.mean.float() * self.frozen.latent_scale


class FeatureCache:
    """BEATs features and VAE latents for every (clip, slot), memory-mapped from the run folder.

    features.npy: (clips, slots, N, 3·D) in BEATs' compute dtype (float16 on a GPU, float32 on
    the CPU), so the cache holds exactly what the uncached path computes;
    latents.npy: (clips, slots, 4, h, w) float32;
    geometry.npy: (clips, slots, 4) int64, each frame's original size and crop (SDXL's added
    conditioning), so a cached run needs no picture, and no VAE, once built.
    """

    def __init__(self, folder: Path):
        self.folder = folder
        meta = json.loads((folder / "cache.json").read_text())
        self.features = np.load(folder / "features.npy", mmap_mode="r")
        self.latents = np.load(folder / "latents.npy", mmap_mode="r")
        self.geometry = np.load(folder / "geometry.npy")
        self.meta = meta

    def read(self, pairs: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        features = np.stack([self.features[i, k] for i, k in pairs]).astype(np.float32)
        latents = np.stack([self.latents[i, k] for i, k in pairs])
        geometry = np.stack([self.geometry[i, k] for i, k in pairs])
        return torch.from_numpy(features), torch.from_numpy(latents), torch.from_numpy(geometry)

    @staticmethod
    def key(settings: TrainSettings, samples) -> dict:
        """What the cached values depend on; a mismatch rebuilds the cache."""
        return {"seed": settings.seed, "slots": settings.windows_per_clip,
                "audio_seconds": settings.audio_seconds, "size": list(settings.size),
                "audio_encoder": str(settings.audio_encoder), "sd": str(settings.sd),
                "clips": [str(s.audio) for s in samples]}

    @classmethod
    def build(cls, folder: Path, source: ExampleSource, settings: TrainSettings,
              progress: Callable[[int, int], None]) -> FeatureCache:
        folder.mkdir(parents=True, exist_ok=True)
        key = cls.key(settings, source.data.samples)
        meta_file = folder / "cache.json"
        if (meta_file.is_file() and json.loads(meta_file.read_text()).get("key") == key
                and (folder / "geometry.npy").is_file()):  # caches from before SDXL lack it
            return cls(folder)
        clips, slots = len(source.data), settings.windows_per_clip
        first = source.draw(0, 0)
        feature_shape = source.encode_audio(first["waveform"][None]).shape[1:]
        latent_shape = source.encode_pixels(first["pixels"][None]).shape[1:]
        feature_dtype = np.float16 if source.dtype == torch.float16 else np.float32
        features = np.lib.format.open_memmap(folder / "features.npy.partial", mode="w+",
                                             dtype=feature_dtype,
                                             shape=(clips, slots, *feature_shape))
        latents = np.lib.format.open_memmap(folder / "latents.npy.partial", mode="w+",
                                            dtype=np.float32, shape=(clips, slots, *latent_shape))
        geometry = np.zeros((clips, slots, 4), dtype=np.int64)
        for i in range(clips):
            examples = [source.draw(i, k) for k in range(slots)]
            waveforms = torch.stack([e["waveform"] for e in examples])
            pixels = torch.stack([e["pixels"] for e in examples])
            features[i] = source.encode_audio(waveforms).cpu().numpy().astype(feature_dtype)
            latents[i] = source.encode_pixels(pixels).cpu().numpy()
            geometry[i] = torch.stack([e["geometry"] for e in examples]).numpy()
            progress(i + 1, clips)
        features.flush()
        latents.flush()
        del features, latents
        os.replace(folder / "features.npy.partial", folder / "features.npy")
        os.replace(folder / "latents.npy.partial", folder / "latents.npy")
        write_atomically(folder / "geometry.npy", lambda tmp: _save_npy(tmp, geometry))
        write_atomically(meta_file, lambda tmp: tmp.write_text(json.dumps({"key": key})))
        return cls(folder)


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as handle:  # a file object: np.save would append .npy to a name
        np.save(handle, array)
