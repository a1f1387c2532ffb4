"""``audiotoken embed``: each file's token (the first half of the data path, ``AudioTokenizer``
in model.py) written as a textual-inversion file, and the token file's format.

    waveform (B, S) ─▶ fbank (B, T, 128) ─▶ BEATs (B, N, 3·D) ─▶ embedder ─▶ token (B, d)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from itertools import chain
from pathlib import Path

import torch

from audiotoken_cli import __version__
from audiotoken_cli.config import EmbedSettings, Window
from audiotoken_cli.files import (
    FileResult,
    cached_sha256,
    file_sha256,
    output_path,
    write_atomically,
)
from audiotoken_cli.model import AudioTokenizer, load_model

TOKEN_KEY = "emb_params"
"""The tensor name diffusers, A1111 and ComfyUI read from a textual-inversion safetensors file."""


def embed_files(sources: Iterable[Path], settings: EmbedSettings,
                roots: Mapping[Path, Path] | None = None, *, rank: int = 0,
                world: int = 1) -> Iterator[FileResult]:
    """Write ``<stem>.safetensors`` for each source; yield one result per source, in order
    (this rank's sources only: input index ``rank`` modulo ``world``).

    ``sources`` is read lazily. Models load only if some file needs them. Files are decoded in
    the background and encoded in batches of ``settings.batch_size`` windows; a bad file fails
    alone. ``roots``: each source's input root, mirrored under ``settings.output_dir`` (filled
    as the sources stream in).
    """
    roots = {} if roots is None else roots
    entries = _embed_plan(sources, settings, roots, rank, world)
    waiting: deque[FileResult | Path] = deque()
    first = None
    for entry in entries:  # skipped files are reported before any model loads
        if isinstance(entry, FileResult):
            yield entry
        else:
            first = entry
            break
    if first is None:
        return

    def todo() -> Iterator[Path]:
        # Results between two files to encode wait in order behind the first of them.
        for entry in chain([first], entries):
            waiting.append(entry)
            if isinstance(entry, Path):
                yield entry

    from audiotoken_cli.config import LoadSettings

    tokenizer = load_model(LoadSettings(settings.audio_encoder, settings.embedder,
                                        runtime=settings.runtime)).tokenizer
    provenance = _model_provenance(tokenizer)
    for source, token, failure in tokenize_files(tokenizer, todo(), settings.window,
                                                 settings.batch_size):
        while isinstance(waiting[0], FileResult):
            yield waiting.popleft()
        waiting.popleft()
        if failure is not None:
            yield failure
            continue
        target = output_path(source, ".safetensors", settings.output_dir, roots.get(source))
        metadata = {**provenance, **audio_provenance(source.name, file_sha256(source),
                                                     settings.window)}
        write_atomically(target, lambda tmp, t=token, m=metadata: save_token(tmp, t, m))
        yield FileResult(source, "written", (target,))
    yield from waiting


def _embed_plan(sources: Iterable[Path], settings: EmbedSettings, roots: Mapping[Path, Path],
                rank: int, world: int) -> Iterator[FileResult | Path]:
    """This rank's files: a result for those with nothing to do, the path of the others (the
    skeleton is files.claim_files')."""
    from audiotoken_cli.files import claim_files

    def target_of(source: Path) -> Path:
        return output_path(source, ".safetensors", settings.output_dir, roots.get(source))

    for item in claim_files(sources, target_of, lambda target: [target], rank, world):
        source, target = item.source, item.plan
        if not item.mine:
            continue
        if item.collision is not None:
            yield FileResult(source, "failed", message=str(item.collision))
        elif target.exists() and not settings.overwrite:
            yield FileResult(source, "skipped", (target,), "exists; --overwrite replaces it")
        else:
            yield source


def tokenize_files(tokenizer: AudioTokenizer, sources: Iterable[Path], window: Window,
                   batch_size: int = 8) -> Iterator[tuple[Path, torch.Tensor | None, FileResult | None]]:
    """Yield, in input order, (source, token (d,), None) or (source, None, failure).

    ``sources`` is read lazily; files are decoded in a background thread (about two batches
    ahead) and encoded ``batch_size`` windows at once; a bad file fails alone.
    """
    from audiotoken_cli.pipeline.decode_ahead import decode_ahead

    decoded = decode_ahead(sources, window, 2 * batch_size, lambda path: path, lambda path: "")
    batch = []
    for item in decoded:
        batch.append(item)
        if len(batch) == batch_size:
            yield from _tokenize_batch(tokenizer, batch)
            batch = []
    if batch:
        yield from _tokenize_batch(tokenizer, batch)


def _tokenize_batch(tokenizer: AudioTokenizer, batch: list):
    good = [item.waveform for item in batch if item.error is None]
    tokens = iter(tokenizer(torch.stack(good)) if good else [])  # (B, d)
    for item in batch:
        if item.error is not None:
            yield item.request, None, FileResult(item.request, "failed", message=item.error)
        else:
            yield item.request, next(tokens), None


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


def write_token_file(target: Path, token: torch.Tensor, tokenizer: AudioTokenizer,
                     audio_name: str, audio_sha256: str, window: Window) -> Path:
    """The file ``embed`` writes, atomically: the token and its provenance."""
    metadata = {**_model_provenance(tokenizer),
                **audio_provenance(audio_name, audio_sha256, window)}
    write_atomically(target, lambda tmp: save_token(tmp, token, metadata))
    return target


def audio_provenance(name: str, sha256: str, window: Window) -> dict[str, str]:
    return {
        "audio_file": name,
        "audio_sha256": sha256,
        "window_start": f"{window.start:g}",
        "window_duration": f"{window.duration:g}",
    }
