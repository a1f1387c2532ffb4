"""Sound → audio token: the first half of the data path, and ``audiotoken embed`` built on it.

    waveform (B, S) ─▶ fbank (B, T, 128) ─▶ BEATs (B, N, 3·D) ─▶ embedder ─▶ token (B, d)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from audiotoken_cli import __version__
from audiotoken_cli.audio.worker import decode_windows
from audiotoken_cli.audio.fbank import beats_fbank
from audiotoken_cli.config import EmbedSettings, Window
from audiotoken_cli.devices import resolve_device, resolve_dtype
from audiotoken_cli.errors import AudioTokenError, ModelError
from audiotoken_cli.files import (
    FileResult,
    cached_sha256,
    file_sha256,
    find_collisions,
    output_path,
    remove_stale_partials,
    write_atomically,
)
from audiotoken_cli.models.beats import BEATs
from audiotoken_cli.models.embedder import LoadedEmbedder
from audiotoken_cli.models.safecache import load_beats_fast, load_embedder_fast

TOKEN_KEY = "emb_params"
"""The tensor name diffusers, A1111 and ComfyUI read from a textual-inversion safetensors file."""


@dataclass
class AudioTokenizer:
    """A frozen BEATs and an embedder on one device: waveforms in, tokens out."""

    beats: BEATs
    embedder: LoadedEmbedder
    device: torch.device
    dtype: torch.dtype
    audio_encoder_path: Path

    @classmethod
    def load(cls, audio_encoder: Path, embedder: Path, device: torch.device,
             dtype: torch.dtype) -> AudioTokenizer:
        beats = load_beats_fast(audio_encoder, device=device, dtype=dtype)
        loaded = load_embedder_fast(embedder, device=device)
        features = beats.cfg.output_dim
        if loaded.model.config.input_dim != features:
            raise ModelError(
                f"{embedder}: the embedder expects {loaded.model.config.input_dim}-wide audio "
                f"features but {audio_encoder} gives {features} (3 layers × "
                f"{beats.cfg.encoder_embed_dim}); use the audio encoder it was trained with"
            )
        return cls(beats, loaded, device, dtype, Path(audio_encoder))

    @property
    def token_dim(self) -> int:
        return self.embedder.model.config.token_dim

    @torch.inference_mode()
    def __call__(self, waveforms: torch.Tensor) -> torch.Tensor:
        """waveforms (B, S) float32 at 16 kHz → tokens (B, d) float32."""
        fbank = beats_fbank(waveforms.to(self.device))  # (B, T, 128), always float32
        features = self.beats(fbank.to(self.dtype))  # (B, N, 3·D)
        # The embedder is small; running it in float32 keeps tokens exact on every device.
        return self.embedder.model(features.float()).float()


def embed_files(sources: Sequence[Path], settings: EmbedSettings) -> Iterator[FileResult]:
    """Write ``<stem>.safetensors`` for each source; yield one result per source, in order.

    Models load only if some file needs them. Files are decoded one at a time and encoded in
    batches of ``settings.batch_size`` windows; a bad file fails alone.
    """
    plan = {source: [output_path(source, ".safetensors", settings.output_dir)] for source in sources}
    collisions = find_collisions(plan)
    for folder in {output.parent for outputs in plan.values() for output in outputs}:
        remove_stale_partials(folder)  # what a killed run left, before we write beside it
    todo: list[Path] = []
    for source in sources:
        target = plan[source][0]
        if source in collisions:
            yield FileResult(source, "failed", message=str(collisions[source]))
        elif target.exists() and not settings.overwrite:
            yield FileResult(source, "skipped", (target,), "exists; --overwrite replaces it")
        else:
            todo.append(source)
    if not todo:
        return

    device = resolve_device(settings.runtime.device)
    dtype = resolve_dtype(settings.runtime.dtype, device)
    tokenizer = AudioTokenizer.load(settings.audio_encoder, settings.embedder, device, dtype)
    provenance = _model_provenance(tokenizer)
    for source, token, failure in tokenize_files(tokenizer, todo, settings.window,
                                                 settings.batch_size):
        if failure is not None:
            yield failure
            continue
        target = plan[source][0]
        metadata = {**provenance, **_audio_provenance(source, settings.window)}
        write_atomically(target, lambda tmp, t=token, m=metadata: save_token(tmp, t, m))
        yield FileResult(source, "written", (target,))


def tokenize_files(tokenizer: AudioTokenizer, sources: Sequence[Path], window: Window,
                   batch_size: int = 8) -> Iterator[tuple[Path, torch.Tensor | None, FileResult | None]]:
    """Yield, in input order, (source, token (d,), None) or (source, None, failure).

    Files are decoded one at a time and encoded ``batch_size`` windows at once; a bad file fails
    alone.
    """
    for batch in _decoded_batches(sources, window, batch_size):
        good = [waveform for _, waveform in batch if isinstance(waveform, torch.Tensor)]
        tokens = iter(tokenizer(torch.stack(good)) if good else [])  # (B, d)
        for source, decoded in batch:
            if isinstance(decoded, FileResult):
                yield source, None, decoded
            else:
                yield source, next(tokens), None


def _decoded_batches(sources: Sequence[Path], window: Window, batch_size: int):
    """Lists of (source, waveform or failed result), each with at most ``batch_size`` waveforms."""
    batch: list[tuple[Path, torch.Tensor | FileResult]] = []
    decoded = 0
    for source, waveform in decode_windows(sources, window):
        if isinstance(waveform, AudioTokenError):
            batch.append((source, FileResult(source, "failed", message=str(waveform))))
        else:
            batch.append((source, waveform))
            decoded += 1
        if decoded == batch_size:
            yield batch
            batch, decoded = [], 0
    if batch:
        yield batch


def save_token(path: Path, token: torch.Tensor, metadata: dict[str, str]) -> None:
    """Write one token as ``emb_params``, float32, shape [1, d]: the textual-inversion layout."""
    from safetensors.torch import save_file

    tensor = token.detach().float().cpu().reshape(1, -1).contiguous()
    save_file({TOKEN_KEY: tensor}, str(path), metadata=metadata)


def _model_provenance(tokenizer: AudioTokenizer) -> dict[str, str]:
    embedder = tokenizer.embedder
    return {
        "format": "audiotoken-token",
        "device": tokenizer.device.type,
        "dtype": str(tokenizer.dtype).removeprefix("torch."),
        "tool": f"audiotoken-cli {__version__}",
        "token_dim": str(tokenizer.token_dim),
        "prompt": embedder.info.prompt,
        "embedder": embedder.info.source or str(embedder.path),
        # Model hashes are remembered per file (they are hundreds of MB); audio is hashed fresh.
        "embedder_sha256": cached_sha256(embedder.weights_file),
        "audio_encoder": str(tokenizer.audio_encoder_path),
        "audio_encoder_sha256": cached_sha256(tokenizer.audio_encoder_path),
    }


def _audio_provenance(source: Path, window: Window) -> dict[str, str]:
    return {
        "audio_file": source.name,
        "audio_sha256": file_sha256(source),
        "window_start": f"{window.start:g}",
        "window_duration": f"{window.duration:g}",
    }
