"""Per-file features for ``eval``, from each model, cached by the file's sha256.

A second ``eval`` over the same real set (or the same images) reads the features back instead of
decoding and running the models again. The cache lives in the user cache folder, under one folder
per model weights hash, so features of different models never mix.

CLIP goes through transformers: ``CLIPModel`` for the embeddings, ``CLIPTokenizer`` for the class
prompts, and transformers' PIL image processor (``CLIPImageProcessorPil``: resize the shortest side
bicubic, centre crop, CLIP's mean and std). We use the PIL processor because the faster one needs
torchvision, which cannot be installed beside the CPU torch wheel; its numbers are the reference
preprocessing of the model cards.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from audiotoken_cli.errors import ModelError

MODEL_IDS = {"clip_b32": "openai/clip-vit-base-patch32",
             "clip_l14": "openai/clip-vit-large-patch14",
             "wav2clip": "Wav2CLIP (Wu et al. 2022)", "inception": "pytorch-fid InceptionV3"}


def cache_root() -> Path:
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("audiotoken")) / "eval-features"


class FeatureCache:
    """Feature vectors of one model, keyed by the sha256 of the file they came from."""

    def __init__(self, model_hash: str | None, kind: str):
        # Without the weights' hash the features could belong to any model: no cache then.
        self.folder = cache_root() / f"{kind}-{model_hash[:16]}" if model_hash else None
        self.hits = 0
        self.computed = 0

    def _path(self, file_hash: str) -> Path:
        return self.folder / file_hash[:2] / f"{file_hash}.safetensors"

    def has(self, file_hash: str) -> bool:
        return self.folder is not None and self._path(file_hash).is_file()

    def get(self, file_hash: str) -> torch.Tensor | None:
        from safetensors.torch import load_file

        if not self.has(file_hash):
            return None
        path = self._path(file_hash)
        try:
            feature = load_file(str(path))["feature"]
        except Exception:  # noqa: BLE001 - a damaged cache entry is recomputed, not fatal
            return None
        self.hits += 1
        return feature

    def put(self, file_hash: str, feature: torch.Tensor) -> None:
        from safetensors.torch import save_file

        from audiotoken_cli.files import write_atomically

        if self.folder is None:
            return
        path = self._path(file_hash)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, lambda tmp: save_file({"feature": feature.contiguous()}, str(tmp)))


def cached_features(files: list[tuple[Path, str]], cache: FeatureCache,
                    compute: Callable[[list[Path]], torch.Tensor]) -> list[torch.Tensor]:
    """One feature per (file, sha256): from the cache, the rest computed in one batch."""
    found = [cache.get(digest) for _, digest in files]
    missing = [i for i, feature in enumerate(found) if feature is None]
    if missing:
        fresh = compute([files[i][0] for i in missing])
        for i, feature in zip(missing, fresh):
            found[i] = feature.detach().float().cpu()
            cache.put(files[i][1], found[i])
            cache.computed += 1
    return found


class PictureMemo:
    """Pictures read once per batch, though three models look at them."""

    def __init__(self, reader: Callable):
        self.reader, self.pictures = reader, {}

    def __call__(self, paths: list[Path]) -> list:
        for path in paths:
            if path not in self.pictures:
                self.pictures[path] = self.reader(path)
        return [self.pictures[path] for path in paths]


class Clip:
    """A CLIP model from a transformers folder: normalised image and text embeddings."""

    def __init__(self, folder: Path, device: torch.device):
        from transformers import CLIPImageProcessorPil, CLIPModel, CLIPTokenizer

        try:
            self.model = CLIPModel.from_pretrained(str(folder)).to(device).eval()
            self.processor = CLIPImageProcessorPil.from_pretrained(str(folder))
            self.tokenizer = CLIPTokenizer.from_pretrained(str(folder))
        except (OSError, ValueError) as error:
            raise ModelError(f"{folder}: not a transformers CLIP folder ({error})") from error
        self.device = device

    @torch.no_grad()
    def images(self, pictures: list) -> torch.Tensor:
        pixels = self.processor(images=pictures, return_tensors="pt")["pixel_values"]
        out = self.model.get_image_features(pixel_values=pixels.to(self.device))
        return _normalised(out.pooler_output)

    @torch.no_grad()
    def texts(self, texts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(texts, padding=True, return_tensors="pt").to(self.device)
        out = self.model.get_text_features(**tokens)
        return _normalised(out.pooler_output)

    @property
    def logit_scale(self) -> float:
        return float(self.model.logit_scale.exp())


def _normalised(features: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(features.float(), dim=-1)


def inception_features(model, pictures: list, device: torch.device, protocol: str) -> torch.Tensor:
    """(N, 2048) pool3 features; each picture resized to 299×299 on its own, by the FID protocol
    (``inception.prepare``), so a batch may mix sizes."""
    from audiotoken_cli.eval.inception import prepare

    batch = torch.stack([prepare(picture, protocol) for picture in pictures])
    with torch.no_grad():
        return model(batch.to(device))


WAV2CLIP_MAX_SECONDS = 600
"""MACS embeds each whole track (its clips are 10 s); a longer file is cut here to bound memory."""


def load_track(path: Path) -> torch.Tensor:
    """The whole track, mono 16 kHz, not looped or padded: what MACS gives Wav2CLIP
    (``librosa.load(sr=16000)``)."""
    from audiotoken_cli.audio.decode import _check_readable_file, _decode_span
    from audiotoken_cli.config import SAMPLE_RATE
    from audiotoken_cli.errors import InputError

    _check_readable_file(path)
    chunks = _decode_span(path, 0.0, WAV2CLIP_MAX_SECONDS * SAMPLE_RATE)
    if not chunks or sum(len(c) for c in chunks) == 0:
        raise InputError(f"{path}: the audio track holds no samples")
    import numpy as np

    return torch.from_numpy(np.concatenate(chunks)[:WAV2CLIP_MAX_SECONDS * SAMPLE_RATE])


def wav2clip_features(model, sounds: list[Path], device: torch.device) -> torch.Tensor:
    """(N, 512) Wav2CLIP embeddings of each whole sound, one sound at a time."""
    return torch.stack([model.embed(load_track(path).to(device)) for path in sounds])
