"""The Python API, which the command line stands on.

    import audiotoken_cli as audiotoken

    model = audiotoken.load()                      # the paper's weights, fetched once and cached
    token = model.embed("dog.wav")                 # (768,) float32
    images = model.generate("dog.wav", n=4, seed=7)  # four PIL images, as `audiotoken generate` makes

Every image carries the same metadata as the CLI's PNGs (``image.info["parameters"]`` and
``image.info["audiotoken"]``); ``save_image`` writes it into the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch

from audiotoken_cli.config import PAPER_PROMPT, GenerateSettings, RuntimeSettings, Window
from audiotoken_cli import validation
from audiotoken_cli.errors import UsageError
from audiotoken_cli.pipeline.tokens import NON_FINITE_TOKEN, check_token, sound_label
from audiotoken_cli.validation import check_generate_options, check_window, validate_generate

AudioInput = Union[str, os.PathLike, tuple, np.ndarray, torch.Tensor]
"""A file path; a ``(samples, sample_rate)`` pair; or a numpy / torch array at 16 kHz, shaped
(samples,) or (channels, samples)."""

MAX_SEED = validation.MAX_SEED


def load(model: str = "vggsound", device: str = "auto", dtype: str = "auto", *,
         sd: str | None = None, audio_encoder: str | None = None, embedder: str | None = None,
         lora: str | None = None, images: bool = True, safety_checker: bool = True,
         low_vram: bool = False, offline: bool = False, quiet: bool = True) -> AudioToken:
    """Load a model preset (or components given as paths, URLs or hub ids) for embedding and
    generating, with the CLI's presets, cache and checksum verification.

    ``images=False`` loads only the audio encoder and embedder (for ``embed``), skipping Stable
    Diffusion's download and memory. Missing weights are downloaded unless ``offline``.

    >>> model = audiotoken.load(device="cpu", embedder="run/")   # a trained run folder
    """
    from audiotoken_cli.devices import resolve_device, resolve_dtype
    from audiotoken_cli.hub import FetchOptions, resolve_components
    from audiotoken_cli.pipeline.tokens import AudioTokenizer

    roles = ("audio_encoder", "embedder") + (("sd", "lora") if images else ())
    given = {"sd": sd, "audio_encoder": audio_encoder, "embedder": embedder, "lora": lora}
    notice = (lambda message: None) if quiet else print
    paths = resolve_components(model, given, roles, FetchOptions(offline, quiet, notice))
    runtime = RuntimeSettings(device=device, dtype=dtype)
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    tokenizer = AudioTokenizer.load(paths["audio_encoder"], paths["embedder"], torch_device,
                                    torch_dtype)
    loaded = AudioToken(tokenizer, paths, runtime)
    if images:
        loaded._load_images(safety_checker=safety_checker, low_vram=low_vram)
    return loaded


@dataclass
class AudioToken:
    """A loaded audio encoder, embedder and (unless loaded with ``images=False``) Stable
    Diffusion pipeline. Make one with ``load``."""

    tokenizer: Any = field(repr=False)
    paths: dict
    runtime: RuntimeSettings
    _pipe: Any = field(default=None, repr=False)
    _prompt_encoder: Any = field(default=None, repr=False)
    _own_scheduler: Any = field(default=None, repr=False)
    _flags: dict = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return self.tokenizer.device

    @property
    def token_dim(self) -> int:
        """d: 768 for SD 1.x, 1024 for SD 2.x."""
        return self.tokenizer.token_dim

    @property
    def pipe(self):
        """The diffusers ``StableDiffusionPipeline`` (frozen), for use with other tools."""
        if self._pipe is None:
            raise UsageError("this model was loaded with images=False; load(images=True) to generate")
        return self._pipe

    # -- sound → token ------------------------------------------------------------------------

    def embed(self, audio: AudioInput, *, start: float = 0.0, duration: float = 10.0) -> torch.Tensor:
        """The audio token of one sound: float32 tensor of shape (d,), on the CPU.

        ``audio`` is a file path, a ``(samples, sample_rate)`` pair, or a 16 kHz array (S,) or
        (C, S). Equal to ``audiotoken embed --start START --duration DURATION``.

        >>> token = model.embed((mic_buffer, 48_000))
        """
        window = Window(start=start, duration=duration)
        check_window(window, "start", "duration")
        waveform = _waveform(audio, window)
        return check_token(self.tokenizer(waveform[None])[0].cpu(), sound_label(audio))  # (d,)

    # -- sound → images -----------------------------------------------------------------------

    def generate(self, audio: AudioInput | list, n: int = 4, seed: int | None = None,
                 prompt: str = PAPER_PROMPT, **settings) -> list | Iterator[list]:
        """Images of a sound, pixel for pixel what ``audiotoken generate`` writes.

        Image i uses seed ``seed + i`` (a random base when None). Settings: ``negative_prompt``,
        ``steps`` (25), ``guidance`` (7.5), ``width``/``height`` (512), ``scheduler``
        ("dpm++", "pndm", "ddim", "euler", "euler-a"), ``start``/``duration`` (the audio window,
        seconds), ``batch_size``.

        One input returns a list of ``n`` PIL images. A list of inputs returns an iterator that
        yields each input's list in turn, rendering as it goes (for streaming many sounds).

        >>> for images in model.generate(["dog.wav", "rain.wav"], n=2, seed=7): ...
        """
        if isinstance(audio, list):
            return (self.generate(item, n, seed, prompt, **settings) for item in audio)
        window, options = _split_window(settings)
        waveform = _waveform(audio, window)
        token = check_token(self.tokenizer(waveform[None])[0], sound_label(audio))  # (d,)
        return self._render(token, n, seed, prompt, options, window, _describe(audio, waveform))

    def generate_from_token(self, token: torch.Tensor, n: int = 4, seed: int | None = None,
                            prompt: str = PAPER_PROMPT, **settings) -> list:
        """Images from a token you hold: a mix of sounds, or one read from an ``embed`` file.

        ``token`` is (d,) or (1, d) (the ``emb_params`` layout). Settings as for ``generate``.

        >>> mix = (model.embed("dog.wav") + model.embed("rain.wav")) / 2
        >>> images = model.generate_from_token(mix, n=2, seed=7)
        """
        token = torch.as_tensor(token, dtype=torch.float32).reshape(-1)
        if token.numel() != self.token_dim:
            raise UsageError(f"the token has {token.numel()} values; this model's tokens have "
                             f"{self.token_dim}")
        check_token(token, "token", NON_FINITE_TOKEN)
        window, options = _split_window(settings)
        digest = hashlib.sha256(token.numpy().tobytes()).hexdigest()
        return self._render(token.to(self.device), n, seed, prompt, options, window,
                            ("<token>", digest))

    # -- internals ----------------------------------------------------------------------------

    def _load_images(self, *, safety_checker: bool, low_vram: bool) -> None:
        from audiotoken_cli.render.diffusion import load_pipeline
        from audiotoken_cli.render.prompt import PromptEncoder

        pipe = load_pipeline(self.paths["sd"], self.device, self.tokenizer.dtype,
                             safety_checker=safety_checker, low_vram=low_vram)
        if self.paths.get("lora") is not None:
            from audiotoken_cli.models.lora import apply_paper_lora

            apply_paper_lora(pipe.unet, self.paths["lora"])
        encoder = PromptEncoder(pipe.tokenizer, pipe.text_encoder)
        encoder.check_token_width(self.token_dim, str(self.paths["embedder"]), str(self.paths["sd"]))
        self._pipe, self._prompt_encoder, self._own_scheduler = pipe, encoder, pipe.scheduler
        self._flags = {"safety_checker": safety_checker, "low_vram": low_vram}

    def _settings(self, seed: int, n: int, prompt: str, options: dict, window: Window) -> GenerateSettings:
        base = GenerateSettings(sd=self.paths["sd"], audio_encoder=self.paths["audio_encoder"],
                                embedder=self.paths["embedder"], lora=self.paths.get("lora"),
                                seed=seed, num_images=n, prompt=prompt, window=window,
                                runtime=self.runtime, **self._flags)
        try:
            return replace(base, **options)
        except TypeError as error:
            raise UsageError(f"unknown generate setting: {error}") from None

    def _render(self, token: torch.Tensor, n: int, seed: int | None, prompt: str, options: dict,
                window: Window, audio: tuple[str, str]) -> list:
        from audiotoken_cli.pipeline.metadata import RunMetadata, a1111_parameters
        from audiotoken_cli.pipeline.naming import PlannedImage
        from audiotoken_cli.render.diffusion import (ImageJob, RenderSettings, auto_batch_size,
                                                     check_size, render, use_scheduler)
        from audiotoken_cli.render.prompt import check_prompt

        seed = secrets.randbelow(2**31) if seed is None else seed
        # The CLI's range checks, before the pipeline loads (an embed-only model still says so).
        check_generate_options({**options, "seed": seed, "num_images": n, "window": window})
        pipe = self.pipe
        settings = self._settings(seed, n, prompt, options, window)
        validate_generate(settings)
        check_prompt(settings.prompt)
        pipe.scheduler = self._own_scheduler  # "pndm" means the model's own, whatever ran before
        use_scheduler(pipe, settings.scheduler)
        check_size(settings.width, settings.height, pipe)
        with torch.inference_mode():
            negative = self._prompt_encoder.encode([settings.negative_prompt])[0]  # (77, d)
            embeds = self._prompt_encoder.encode([settings.prompt], token[None])[0]  # (77, d)
        jobs = [ImageJob(embeds, negative, seed + i) for i in range(n)]
        batch = settings.batch_size or auto_batch_size(self.device, settings.width, settings.height)
        render_settings = RenderSettings(settings.steps, settings.guidance, settings.width,
                                         settings.height, settings.scheduler)
        metadata = RunMetadata.collect(settings, self.tokenizer)
        name, digest = audio
        source = Path(name)
        metadata.audio_hashes[source] = digest
        images = []
        for begin in range(0, n, batch):
            for offset, image in enumerate(render(pipe, jobs[begin:begin + batch], render_settings)):
                if image is None:  # blocked by the safety checker, as the CLI skips it
                    continue
                info = metadata.for_image(PlannedImage(source, seed + begin + offset, source))
                if not source.is_file():  # an array or a token: no file to point back to
                    info["audio_path"] = None
                image.info["parameters"] = a1111_parameters(info)
                image.info["audiotoken"] = json.dumps(info, sort_keys=True)
                images.append(image)
        return images


def save_image(image, path: str | os.PathLike) -> None:
    """Write a PNG with the image's settings chunks (``parameters``, ``audiotoken``), atomically."""
    from audiotoken_cli.files import write_atomically
    from audiotoken_cli.pipeline.metadata import save_png

    info = json.loads(image.info["audiotoken"]) if "audiotoken" in image.info else None
    if info is None:
        raise UsageError("this image carries no audiotoken metadata; save it with image.save()")
    write_atomically(Path(path), lambda tmp: save_png(tmp, image, info))


def train(data: str | os.PathLike, output: str | os.PathLike, *, model: str = "vggsound",
          sd: str | None = None, audio_encoder: str | None = None, init: str | None = None,
          device: str = "auto", offline: bool = False, quiet: bool = True, events=None,
          **settings) -> Path:
    """Train an embedder on a folder of videos (or audio files with images): the function behind
    ``audiotoken train``. Returns the run folder, which ``load(embedder=...)`` accepts.

    ``settings`` are ``TrainSettings`` fields (``max_steps``, ``batch_size``, ``lr``, ``size``,
    ``labels``, ``cache``, ``resume``, ...).

    >>> run = audiotoken.train("videos/", "run/", max_steps=2000)
    """
    from audiotoken_cli.config import TrainSettings
    from audiotoken_cli.hub import FetchOptions, resolve_components
    from audiotoken_cli.training.loop import train as run_training

    validation.check_train_options({**settings, "output": output})  # before any download or load
    fetch = FetchOptions(offline, quiet, (lambda message: None) if quiet else print)
    paths = resolve_components(model, {"sd": sd, "audio_encoder": audio_encoder},
                               ("sd", "audio_encoder"), fetch)
    init_path = resolve_components(model, {"embedder": init}, ("embedder",), fetch)["embedder"] \
        if init else None
    try:
        config = TrainSettings(data=Path(data), output=Path(output), init=init_path,
                               runtime=RuntimeSettings(device=device), **paths, **settings)
    except TypeError as error:
        raise UsageError(f"unknown train setting: {error}") from None
    return run_training(config, events)


def _split_window(settings: dict) -> tuple[Window, dict]:
    options = dict(settings)
    window = Window(start=float(options.pop("start", 0.0)),
                    duration=float(options.pop("duration", 10.0)))
    for private in ("sd", "audio_encoder", "embedder", "lora", "output_dir", "overwrite", "runtime"):
        if private in options:
            raise UsageError(f"{private!r} is chosen in load(), not per call")
    return window, options


def _waveform(audio: AudioInput, window: Window) -> torch.Tensor:
    """Any accepted input → (S,) float32 at 16 kHz, by the file path's rules."""
    from audiotoken_cli.audio.arrays import window_from_array
    from audiotoken_cli.audio.decode import load_window

    if isinstance(audio, (str, os.PathLike)):
        return load_window(Path(audio), window)
    if isinstance(audio, tuple) and len(audio) == 2 and isinstance(audio[1], (int, np.integer)):
        return window_from_array(audio[0], int(audio[1]), window)
    if isinstance(audio, (np.ndarray, torch.Tensor)):
        return window_from_array(audio, 16_000, window)
    raise UsageError(f"audio must be a path, a (samples, sample_rate) pair or an array, not "
                     f"{type(audio).__name__}")


def _describe(audio: AudioInput, waveform: torch.Tensor) -> tuple[str, str]:
    """(path, sha256) for the metadata: a file's own path and hash, or the window's samples."""
    if isinstance(audio, (str, os.PathLike)):
        from audiotoken_cli.files import file_sha256

        return str(Path(audio)), file_sha256(Path(audio))
    return "<array>", hashlib.sha256(waveform.numpy().tobytes()).hexdigest()

