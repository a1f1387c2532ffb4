"""``audiotoken embed``: each file's token (the first half of the data path, ``AudioTokenizer``
in model.py) written as a textual-inversion file, and the token file's format.

    waveform (B, S) ─▶ fbank (B, T, 128) ─▶ BEATs (B, N, 3·D) ─▶ embedder ─▶ token (B, d)
"""

from __future__ import annotations

import os
import re
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from itertools import chain
from pathlib import Path

import torch

from audiotoken_cli import __version__
from audiotoken_cli.audio.worker import prestart as prestart_decoder
from audiotoken_cli.config import EmbedSettings, Window
from audiotoken_cli.errors import InputError, ModelError
from audiotoken_cli.files import (
    FileResult,
    check_output_name,
    mirrored_folder,
    output_error,
    write_atomically,
)
from audiotoken_cli.hashing import cached_sha256, file_sha256
from audiotoken_cli.model import AudioTokenizer, load_model

TOKEN_KEY = "emb_params"
"""The tensor name diffusers, A1111 and ComfyUI read from a textual-inversion safetensors file."""
SDXL_KEYS = ("clip_l", "clip_g")
"""An SDXL embedding's tensors, one per text encoder: ``clip_l`` for ``text_encoder`` (CLIP
ViT-L), ``clip_g`` for ``text_encoder_2`` (OpenCLIP bigG). A1111 takes a file holding both keys
as an SDXL embedding; ComfyUI's CLIP-L and CLIP-G tokenizers each read their own key."""

NON_FINITE_AUDIO = ("the audio gives a NaN or infinite token (its samples are far outside "
                    "[-1, 1], so its features overflow)")
NON_FINITE_TOKEN = "the token holds NaN or infinite values"


def check_token(token: torch.Tensor, name: str, problem: str = NON_FINITE_AUDIO) -> torch.Tensor:
    """``token`` unchanged when every value is finite; else ``InputError`` "``name``: ``problem``".

    Every path that makes or accepts a token calls this: a NaN token renders a black image
    without complaint, so it must stop here, where the sound it came from is still known.
    """
    if not bool(torch.isfinite(token).all()):
        raise InputError(f"{name}: {problem}")
    return token


def pop_non_finite(tokens: dict, sounds: Mapping) -> dict:
    """The batch form of ``check_token``: remove the non-finite entries of ``tokens`` (key →
    (d,) token) in place and return key → one-line error. ``sounds[key]`` has ``path``, ``name``
    and ``token`` (the renderer's ``Sound``): a token the caller gave is blamed, else the audio."""
    failures = {}
    for key in [key for key, token in tokens.items() if not bool(torch.isfinite(token).all())]:
        del tokens[key]
        sound = sounds[key]
        problem = NON_FINITE_TOKEN if sound.token is not None else NON_FINITE_AUDIO
        failures[key] = f"{sound.path if sound.path is not None else sound.name}: {problem}"
    return failures


def sound_label(audio: object) -> str:
    """How an error names an API input: a file's path, else "audio array"."""
    return str(audio) if isinstance(audio, (str, os.PathLike)) else "audio array"


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
    from safetensors import SafetensorError

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

    prestart_decoder()  # the decoder process starts while the models load
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
        target = token_path(source, settings, roots.get(source))
        metadata = {**provenance, **audio_provenance(source.name, file_sha256(source),
                                                     settings.window)}
        try:
            write_atomically(target, lambda tmp, t=token, m=metadata: save_token(
                tmp, t, m, tokenizer.encoder_dims))
        except (OSError, SafetensorError) as error:  # a full disk: this file fails, the batch goes on
            yield FileResult(source, "failed", message=_write_failure(source, target, error))
            continue
        renamed = f"embedding name {target.stem}" if target.stem != source.stem else ""
        yield FileResult(source, "written", (target,), renamed)
    yield from waiting


def _write_failure(source: Path, target: Path, error: Exception) -> str:
    """One line for a token file that could not be written. safetensors reports a full disk as
    ``SafetensorError`` with the OS error inside its text, not as an ``OSError``."""
    if isinstance(error, OSError):
        return str(output_error(source, error))
    text = str(error)
    reason = ("no space left on the disk" if "StorageFull" in text or "No space left" in text
              else text.splitlines()[0] if text else type(error).__name__)
    return f"{source}: cannot write its output {target} ({reason})"


def token_path(source: Path, settings: EmbedSettings, root: Path | None = None) -> Path:
    """``NAME.safetensors``: ``--name``, else the audio's stem with each run of whitespace made
    ``_``. The file's stem is the embedding's name in A1111 and ComfyUI, and ComfyUI's
    ``embedding:NAME`` ends at the first space, so ``my dog.wav`` gives ``my_dog``."""
    name = settings.name or re.sub(r"\s+", "_", source.stem)
    return mirrored_folder(source, settings.output_dir, root) / f"{name}.safetensors"


def _embed_plan(sources: Iterable[Path], settings: EmbedSettings, roots: Mapping[Path, Path],
                rank: int, world: int) -> Iterator[FileResult | Path]:
    """This rank's files: a result for those with nothing to do, the path of the others (the
    skeleton is files.claim_files')."""
    from audiotoken_cli.files import claim_files

    def target_of(source: Path) -> Path:
        return token_path(source, settings, roots.get(source))

    for item in claim_files(sources, target_of, lambda target: [target], rank, world):
        source, target = item.source, item.plan
        if not item.mine:
            continue
        problem = _output_problem(source, target)
        if problem is not None:
            yield FileResult(source, "failed", message=problem)
        elif item.collision is not None:
            yield FileResult(source, "failed", message=str(item.collision))
        elif target.exists() and not settings.overwrite:
            yield FileResult(source, "skipped", (target,), "exists; --overwrite replaces it")
        else:
            yield source


def _output_problem(source: Path, target: Path) -> str | None:
    """A name too long for the file system, or a folder we may not look at: one line."""
    try:
        check_output_name(source, target)
        target.exists()
    except InputError as error:
        return str(error)
    except OSError as error:
        return str(output_error(source, error))
    return None


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
        token, error = None, item.error
        if error is None:
            try:
                token = check_token(next(tokens), str(item.request))
            except InputError as failure:
                error = str(failure)
        if error is not None:
            yield item.request, None, FileResult(item.request, "failed", message=error)
        else:
            yield item.request, token, None


def save_token(path: Path, token: torch.Tensor, metadata: dict[str, str],
               encoder_dims: tuple[int, ...] = ()) -> None:
    """Write one token in the textual-inversion layout: ``emb_params`` [1, d] for one text
    encoder; for SDXL's two, ``clip_l`` [1, d1] and ``clip_g`` [1, d2] (``token_tensors``)."""
    from safetensors.torch import save_file

    save_file(token_tensors(token, encoder_dims), str(path), metadata=metadata)


def token_tensors(token: torch.Tensor, encoder_dims: tuple[int, ...] = ()) -> dict[str, torch.Tensor]:
    """A token (d,) as the tensors of its file, float32 on the CPU: {emb_params: [1, d]} or,
    when ``encoder_dims`` names two encoders, {clip_l: [1, d1], clip_g: [1, d2]}."""
    flat = token.detach().float().cpu().reshape(-1)
    if len(encoder_dims) <= 1:
        return {TOKEN_KEY: flat.reshape(1, -1).contiguous()}
    if len(encoder_dims) != len(SDXL_KEYS) or sum(encoder_dims) != flat.numel():
        raise ModelError(f"a token of {flat.numel()} values cannot be split as {list(encoder_dims)}")
    rows = torch.split(flat, list(encoder_dims))
    return {key: row.reshape(1, -1).contiguous() for key, row in zip(SDXL_KEYS, rows)}


def _model_provenance(tokenizer: AudioTokenizer) -> dict[str, str]:
    embedder = tokenizer.embedder
    return {
        "format": "audiotoken-token",
        "device": tokenizer.device.type,
        "dtype": str(tokenizer.dtype).removeprefix("torch."),
        "tool": f"audiotoken-cli {__version__}",
        "token_dim": str(tokenizer.token_dim),
        **({"encoder_dims": ",".join(map(str, tokenizer.encoder_dims))}
           if len(tokenizer.encoder_dims) > 1 else {}),
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
    write_atomically(target, lambda tmp: save_token(tmp, token, metadata, tokenizer.encoder_dims))
    return target


def audio_provenance(name: str, sha256: str, window: Window) -> dict[str, str]:
    return {
        "audio_file": name,
        "audio_sha256": sha256,
        "window_start": f"{window.start:g}",
        "window_duration": f"{window.duration:g}",
    }
