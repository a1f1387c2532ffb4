"""The streaming front of ``generate``: sounds in, images and their metadata out, nothing written.

    sounds ─▶ [background thread: decode + hash] ─▶ tokens (BEATs + embedder) ─▶ prompt
      embeddings (text encoder, once per sound) ─▶ jobs ─▶ the one batch loop
      (render/diffusion.py) ─▶ (PIL image, metadata)

A sound is a file, an in-memory waveform (16 kHz float32) or a ready token (d,). Only about two
batches of decoded audio and prompt embeddings are held at any time, so memory does not grow
with the number of sounds, and the first batch renders while later files are still decoding.
``generate_files`` (generate.py) adds the naming plan and the writes; the Python API uses this
with sounds it decoded itself. The models come loaded (model.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from audiotoken_cli.config import SAMPLE_RATE, CallSettings, GenerateSettings
from audiotoken_cli.errors import InputError
from audiotoken_cli.model import LoadedModel, load_model
from audiotoken_cli.pipeline.decode_ahead import Decoded, decode_ahead
from audiotoken_cli.pipeline.naming import PlannedImage
from audiotoken_cli.pipeline.tokens import pop_non_finite
from audiotoken_cli.render.diffusion import Job

TOKENIZE_BATCH = 8
"""Most audio windows tokenized in one BEATs call (fewer when the render batch is smaller, so
the first image is not held back by tokenizing sounds it does not need)."""


@dataclass(frozen=True)
class Sound:
    """One input: a ``path``, a ``waveform`` (S,) or a ``token`` (d,).

    ``name`` stands for the sound in the metadata (``audio_file``): a file's name, else the
    caller's label. ``windowed``: the waveform is already the run's window (the caller decoded
    it; a ``path`` beside it is only for the metadata). ``sha256``: the sound's hash, when the
    caller knows it.
    """

    name: str
    path: Path | None = None
    waveform: torch.Tensor | None = None
    token: torch.Tensor | None = None
    windowed: bool = False
    sha256: str | None = None

    @classmethod
    def of(cls, item: object, token_dim: int, name: str | None = None) -> Sound:
        """A path (str or Path), a 1-D tensor of ``token_dim`` values (a token) or any other
        1-D tensor (a 16 kHz waveform)."""
        if isinstance(item, Sound):
            return item
        if isinstance(item, (str, Path)):
            return cls(name or Path(item).name, path=Path(item))
        if isinstance(item, torch.Tensor):
            flat = item.detach().reshape(-1) if item.dim() == 2 and item.shape[0] == 1 else item
            if flat.dim() != 1:
                raise ValueError(f"expected a 1-D waveform or token, got shape {tuple(item.shape)}")
            if flat.numel() == token_dim:
                return cls(name or "token", token=flat.detach().float().cpu())
            return cls(name or "waveform", waveform=flat.detach().float().cpu())
        raise TypeError(f"cannot make a sound of {type(item).__name__}; give a path, a "
                        "waveform tensor or a token tensor")

    @property
    def needs_decoding(self) -> bool:
        return self.path is not None and not self.windowed and self.token is None


@dataclass(frozen=True)
class Request:
    """Render ``sound`` once per seed; ``key`` comes back with each result (the caller's handle)."""

    sound: Sound
    seeds: tuple[int, ...]
    key: object = None


@dataclass(frozen=True)
class RenderedImage:
    """One image and its PNG metadata; ``image`` is None when the safety checker flagged it."""

    request: Request
    seed: int
    image: object
    info: dict


@dataclass(frozen=True)
class RenderFailure:
    """A sound that could not be used (undecodable file, wrong token width): its images are not
    rendered; the stream goes on."""

    request: Request
    message: str


@dataclass
class _Prompted:
    request: Request
    conditioning: object  # render.diffusion.Conditioning
    audio_sha256: str


class ImageRenderer:
    """A loaded model and one run's settings; images streamed per request."""

    def __init__(self, model: LoadedModel, settings: GenerateSettings,
                 call: CallSettings | None = None):
        """``call``: the per-call settings as the caller gave them (the API); by default those
        of ``settings`` (a command line's, where --fast implies the LCM scheduler)."""
        self.model, self.settings = model, settings
        self.prepared = model.prepare(call or settings.call_settings)
        self.metadata = model.run_metadata(settings)

    @classmethod
    def load(cls, settings: GenerateSettings) -> ImageRenderer:
        """Load the models ``settings`` names (model.py) and prepare its run."""
        return cls(load_model(settings.load_settings), settings)

    pipe = property(lambda self: self.model.pipe)
    tokenizer = property(lambda self: self.model.tokenizer)
    batch_size = property(lambda self: self.prepared.batch_size)

    def images(self, sounds: Iterable[object], num_images: int = 1, seed: int | None = None
               ) -> Iterator[RenderedImage | RenderFailure]:
        """Images of each sound (paths, waveforms or tokens), seeds ``seed .. seed+n-1``."""
        base = self.settings.seed if seed is None else seed
        seeds = tuple(range(base, base + num_images))
        requests = (Request(Sound.of(item, self.model.token_dim), seeds, key=i)
                    for i, item in enumerate(sounds))
        return self.stream(requests)

    def stream(self, requests: Iterable[Request], on_step=None
               ) -> Iterator[RenderedImage | RenderFailure]:
        """Results in request order: every seed's image, or one failure per unusable sound.

        ``requests`` is consumed lazily, in a background thread that decodes the files ahead
        (through the decoder worker) and hashes every sound.
        """
        limit = 2 * self._tokenize_batch
        decoded = decode_ahead(requests, self.settings.window, limit,
                               lambda r: r.sound.path if r.sound.needs_decoding else None,
                               lambda r: _sound_hash(r.sound))
        return self._render(self._prompted(decoded), on_step)

    def stream_decoded(self, requests: Iterable[Request], on_step=None
                       ) -> Iterator[RenderedImage | RenderFailure]:
        """``stream`` for sounds that need no decoding (waveforms, tokens, or files the caller
        decoded): in this thread, no worker, nothing started."""
        decoded = (Decoded(r, r.sound.waveform if r.sound.windowed else None,
                           audio_sha256=_sound_hash(r.sound)) for r in requests)
        return self._render(self._prompted(decoded), on_step)

    @property
    def _tokenize_batch(self) -> int:
        return max(1, min(TOKENIZE_BATCH, self.batch_size))

    def _prompted(self, decoded: Iterator[Decoded]) -> Iterator[_Prompted | RenderFailure]:
        """Tokens, then prompt embeddings, one tokenizer batch at a time."""
        chunk: list[Decoded] = []
        for item in decoded:
            chunk.append(item)
            if len(chunk) == self._tokenize_batch:
                yield from self._prompt_chunk(chunk)
                chunk = []
        if chunk:
            yield from self._prompt_chunk(chunk)

    @torch.inference_mode()
    def _prompt_chunk(self, chunk: list[Decoded]) -> Iterator[_Prompted | RenderFailure]:
        tokens: dict[int, torch.Tensor] = {}
        failures: dict[int, str] = {}
        waves = {}
        for i, item in enumerate(chunk):
            sound = item.request.sound
            if item.error is not None:
                failures[i] = item.error
            elif sound.token is not None:
                if sound.token.numel() != self.model.token_dim:
                    failures[i] = (f"{sound.name}: the token has {sound.token.numel()} values; "
                                   f"this model needs {self.model.token_dim}")
                else:
                    tokens[i] = sound.token.to(self.model.device)
            else:
                try:
                    waves[i] = item.waveform if item.waveform is not None else _window(
                        sound, self.settings.window)
                except InputError as error:
                    failures[i] = str(error)
        if waves:
            made = self.model.tokens(torch.stack(list(waves.values())))  # (B, d)
            tokens.update(zip(waves, made))
        failures.update(pop_non_finite(tokens, {i: item.request.sound for i, item in enumerate(chunk)}))
        if tokens:
            order = sorted(tokens)
            # One text-encoder call per distinct prompt: here, one per sound, batched.
            conditioned = dict(zip(order, self.model.conditioning(
                self.settings.prompt, torch.stack([tokens[i] for i in order]))))
        for i, item in enumerate(chunk):
            if i in failures:
                yield RenderFailure(item.request, failures[i])
            else:
                yield _Prompted(item.request, conditioned[i], item.audio_sha256)

    def _render(self, entries: Iterator[_Prompted | RenderFailure], on_step
                ) -> Iterator[RenderedImage | RenderFailure]:
        """The one batch loop over every seed of every sound; results in order."""
        def jobs() -> Iterator[Job]:
            for entry in entries:
                if isinstance(entry, RenderFailure):
                    yield Job(None, 0, entry)  # rides along, reported in its place
                else:
                    yield from (Job(entry.conditioning, seed, entry)
                                for seed in entry.request.seeds)

        # The progress display counts image-steps: one per image of the batch per step.
        step = None if on_step is None else (lambda images: [on_step() for _ in range(images)])
        for done in self.model.render(jobs(), self.prepared, step):
            entry = done.job.key
            if isinstance(entry, RenderFailure):
                yield entry
            else:
                yield RenderedImage(entry.request, done.job.seed, done.image,
                                    self.image_info(entry.request.sound, done.job.seed,
                                                    entry.audio_sha256))

    def image_info(self, sound: Sound, seed: int, audio_sha256: str) -> dict:
        """The PNG metadata of one image (RunMetadata.for_image, with the sound's hash taken
        ahead, off the critical path). A sound held in memory has no ``audio_path``."""
        source = sound.path if sound.path is not None else Path(sound.name)
        self.metadata.audio_hashes[source] = audio_sha256
        try:
            info = self.metadata.for_image(PlannedImage(source=source, seed=seed, path=source))
        finally:
            # Kept per image only: the table would otherwise grow with the number of sounds.
            self.metadata.audio_hashes.pop(source, None)
        if sound.path is None:
            info["audio_path"] = None
        return info


def _window(sound: Sound, window) -> torch.Tensor:
    """An in-memory waveform cut to the window by the same rule (and errors) as the Python
    API's arrays: audio/arrays.py."""
    from audiotoken_cli.audio.arrays import window_from_array

    return window_from_array(sound.waveform, SAMPLE_RATE, window, name=sound.name)


def _sound_hash(sound: Sound) -> str:
    """sha256 of the file, or of the waveform's / token's float32 bytes."""
    from audiotoken_cli.hashing import file_sha256

    if sound.sha256 is not None:
        return sound.sha256
    if sound.path is not None:
        return file_sha256(sound.path)
    tensor = sound.waveform if sound.waveform is not None else sound.token
    return hashlib.sha256(tensor.float().contiguous().numpy().tobytes()).hexdigest()
