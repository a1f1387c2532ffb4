"""The reusable core of ``generate``: models loaded once, images streamed out, nothing written.

    sounds ─▶ [background thread: decode + hash] ─▶ tokens (BEATs + embedder) ─▶ prompt
      embeddings (text encoder, once per sound) ─▶ UNet batches ─▶ (PIL image, metadata)

A sound is a file, an in-memory waveform (16 kHz float32) or a ready token (d,). Only about two
batches of decoded audio and prompt embeddings are held at any time, so memory does not grow
with the number of sounds, and the first batch renders while later files are still decoding.
``generate_files`` (generate.py) adds the naming plan and the writes; the Python API uses this.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from audiotoken_cli.config import SAMPLE_RATE, GenerateSettings, Window
from audiotoken_cli.devices import resolve_device, resolve_dtype
from audiotoken_cli.files import cached_sha256
from audiotoken_cli.pipeline.decode_ahead import Decoded, decode_ahead
from audiotoken_cli.pipeline.metadata import RunMetadata
from audiotoken_cli.pipeline.naming import PlannedImage, model_id
from audiotoken_cli.pipeline.tokens import AudioTokenizer, pop_non_finite
from audiotoken_cli.render.diffusion import (
    ImageJob,
    RenderSettings,
    auto_batch_size,
    check_size,
    load_pipeline,
    render,
    tune_for_device,
    use_scheduler,
)
from audiotoken_cli.render.prompt import PromptEncoder, check_prompt

TOKENIZE_BATCH = 8
"""Most audio windows tokenized in one BEATs call (fewer when the render batch is smaller, so
the first image is not held back by tokenizing sounds it does not need)."""


@dataclass(frozen=True)
class Sound:
    """One input: exactly one of ``path``, ``waveform`` (S,) or ``token`` (d,).

    ``name`` stands for the sound in the metadata (``audio_file``): a file's name, else the
    caller's label.
    """

    name: str
    path: Path | None = None
    waveform: torch.Tensor | None = None
    token: torch.Tensor | None = None

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
    prompt_embeds: torch.Tensor  # (77, d)
    audio_sha256: str


class ImageRenderer:
    """Tokenizer, Stable Diffusion and prompt encoder, loaded once; images streamed per request."""

    def __init__(self, settings: GenerateSettings, tokenizer: AudioTokenizer, pipe,
                 encoder: PromptEncoder, device: torch.device, dtype: torch.dtype,
                 metadata: RunMetadata, batch_size: int):
        self.settings, self.tokenizer, self.pipe, self.encoder = settings, tokenizer, pipe, encoder
        self.device, self.dtype, self.metadata, self.batch_size = device, dtype, metadata, batch_size
        self.render_settings = RenderSettings(settings.steps, settings.guidance, settings.width,
                                              settings.height, settings.scheduler)
        with torch.inference_mode():
            # The unconditional embedding is the same for every image: encoded once per run.
            self.negative = encoder.encode([settings.negative_prompt])[0]  # (77, d)

    @classmethod
    def load(cls, settings: GenerateSettings) -> ImageRenderer:
        """Load every model (a bad model fails here, before any audio work)."""
        check_prompt(settings.prompt)
        if settings.lcm_lora is not None:
            settings = replace(settings, scheduler="lcm")
        device = resolve_device(settings.runtime.device)
        dtype = resolve_dtype(settings.runtime.dtype, device)
        tokenizer = AudioTokenizer.load(settings.audio_encoder, settings.embedder, device, dtype)
        pipe = load_pipeline(settings.sd, device, dtype, safety_checker=settings.safety_checker,
                             low_vram=settings.low_vram)
        if settings.lora is not None:
            from audiotoken_cli.models.lora import apply_paper_lora

            apply_paper_lora(pipe.unet, settings.lora)
        if settings.lcm_lora is not None:
            from audiotoken_cli.render.fast import fuse_lcm_lora

            fuse_lcm_lora(pipe, settings.lcm_lora)
        else:
            use_scheduler(pipe, settings.scheduler)
        if settings.taesd is not None:
            from audiotoken_cli.render.fast import use_taesd

            use_taesd(pipe, settings.taesd, device, dtype)
        tune_for_device(pipe, device, compile_unet=settings.compile)
        check_size(settings.width, settings.height, pipe)
        encoder = PromptEncoder(pipe.tokenizer, pipe.text_encoder)
        encoder.check_token_width(tokenizer.token_dim, str(settings.embedder), str(settings.sd))
        metadata = RunMetadata.collect(settings, tokenizer)
        metadata.models.update(_fast_models(settings))
        batch_size = settings.batch_size or auto_batch_size(device, settings.width, settings.height)
        return cls(settings, tokenizer, pipe, encoder, device, dtype, metadata, batch_size)

    def images(self, sounds: Iterable[object], num_images: int = 1, seed: int | None = None
               ) -> Iterator[RenderedImage | RenderFailure]:
        """Images of each sound (paths, waveforms or tokens), seeds ``seed .. seed+n-1``."""
        base = self.settings.seed if seed is None else seed
        seeds = tuple(range(base, base + num_images))
        requests = (Request(Sound.of(item, self.tokenizer.token_dim), seeds, key=i)
                    for i, item in enumerate(sounds))
        return self.stream(requests)

    def stream(self, requests: Iterable[Request], on_step=None
               ) -> Iterator[RenderedImage | RenderFailure]:
        """Results in request order: every seed's image, or one failure per unusable sound.

        ``requests`` is consumed lazily, in a background thread that decodes ahead.
        """
        limit = 2 * self._tokenize_batch
        decoded = decode_ahead(requests, self.settings.window, limit,
                               lambda r: r.sound.path, lambda r: _sound_hash(r.sound))
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
                if sound.token.numel() != self.tokenizer.token_dim:
                    failures[i] = (f"{sound.name}: the token has {sound.token.numel()} values; "
                                   f"this model needs {self.tokenizer.token_dim}")
                else:
                    tokens[i] = sound.token.to(self.device)
            else:
                waves[i] = item.waveform if sound.path is not None else _window(
                    sound.waveform, self.settings.window)
        if waves:
            made = self.tokenizer(torch.stack(list(waves.values())))  # (B, d)
            tokens.update(zip(waves, made))
        failures.update(pop_non_finite(tokens, {i: item.request.sound for i, item in enumerate(chunk)}))
        if tokens:
            order = sorted(tokens)
            # One text-encoder call per distinct prompt: here, one per sound, batched.
            embeds = self.encoder.encode([self.settings.prompt] * len(order),
                                         torch.stack([tokens[i] for i in order]))  # (B, 77, d)
            prompted = dict(zip(order, embeds))
        for i, item in enumerate(chunk):
            if i in failures:
                yield RenderFailure(item.request, failures[i])
            else:
                yield _Prompted(item.request, prompted[i], item.audio_sha256)

    def _render(self, entries: Iterator[_Prompted | RenderFailure], on_step
                ) -> Iterator[RenderedImage | RenderFailure]:
        """UNet batches of ``batch_size`` images, which may span sounds; results in order."""
        waiting: list = []  # RenderFailure or (_Prompted, seed), in request order
        jobs = 0
        for entry in entries:
            if isinstance(entry, RenderFailure):
                waiting.append(entry)
            else:
                waiting += [(entry, seed) for seed in entry.request.seeds]
                jobs += len(entry.request.seeds)
            while jobs >= self.batch_size or (waiting and jobs == 0):
                taken, waiting, count = _take(waiting, self.batch_size)
                jobs -= count
                yield from self._render_batch(taken, on_step)
        while waiting:
            taken, waiting, _count = _take(waiting, self.batch_size)
            yield from self._render_batch(taken, on_step)

    def _render_batch(self, taken: list, on_step) -> Iterator[RenderedImage | RenderFailure]:
        batch = [item for item in taken if not isinstance(item, RenderFailure)]
        # The progress display counts image-steps: one per image of the batch per step.
        step = None if on_step is None else (lambda: [on_step() for _ in batch])
        images = iter(render(self.pipe, [ImageJob(p.prompt_embeds, self.negative, seed)
                                         for p, seed in batch], self.render_settings, step)
                      if batch else [])
        for item in taken:
            if isinstance(item, RenderFailure):
                yield item
                continue
            prompted, seed = item
            yield RenderedImage(prompted.request, seed, next(images),
                                self.image_info(prompted.request.sound, seed,
                                                prompted.audio_sha256))

    def image_info(self, sound: Sound, seed: int, audio_sha256: str) -> dict:
        """The PNG metadata of one image (RunMetadata.for_image, with the sound's hash taken
        ahead, off the critical path)."""
        source = sound.path if sound.path is not None else Path(sound.name)
        self.metadata.audio_hashes[source] = audio_sha256
        try:
            return self.metadata.for_image(PlannedImage(source=source, seed=seed, path=source))
        finally:
            # Kept per image only: the table would otherwise grow with the number of sounds.
            self.metadata.audio_hashes.pop(source, None)


def _take(waiting: list, size: int) -> tuple[list, list, int]:
    """The head of ``waiting`` holding up to ``size`` images (failures among them ride along)."""
    count = 0
    for index, item in enumerate(waiting):
        if not isinstance(item, RenderFailure):
            if count == size:
                return waiting[:index], waiting[index:], count
            count += 1
    return waiting, [], count


def _window(waveform: torch.Tensor, window: Window) -> torch.Tensor:
    """An in-memory waveform cut to the window as files are: from ``start``, looped when short."""
    start = round(window.start * SAMPLE_RATE)
    audio = waveform[start:]
    if audio.numel() == 0:
        audio = waveform
    wanted = window.num_samples
    repeats = -(-wanted // audio.numel())
    return audio.repeat(repeats)[:wanted].float()


def _sound_hash(sound: Sound) -> str:
    """sha256 of the file, or of the waveform's / token's float32 bytes."""
    from audiotoken_cli.files import file_sha256

    if sound.path is not None:
        return file_sha256(sound.path)
    tensor = sound.waveform if sound.waveform is not None else sound.token
    return hashlib.sha256(tensor.float().contiguous().numpy().tobytes()).hexdigest()


def _fast_models(settings: GenerateSettings) -> dict:
    """The --fast weights in each image's metadata: which, and their hashes."""
    if settings.lcm_lora is None and settings.taesd is None:
        return {}
    from audiotoken_cli.render.fast import weights_file

    taesd_file = weights_file(settings.taesd) if settings.taesd else None
    return {
        "lcm_lora": model_id(settings.lcm_lora),
        "lcm_lora_sha256": cached_sha256(settings.lcm_lora) if settings.lcm_lora else None,
        "taesd": model_id(settings.taesd),
        "taesd_sha256": cached_sha256(taesd_file) if taesd_file else None,
    }
