"""The Python API, which the command line stands on.

    import audiotoken_cli as audiotoken

    model = audiotoken.load()                      # the paper's weights, fetched once and cached
    token = model.embed("dog.wav")                 # (768,) float32
    images = model.generate("dog.wav", n=4, seed=7)  # four PIL images, as `audiotoken generate` makes

Every image carries the same metadata as the CLI's PNGs (``image.info["parameters"]`` and
``image.info["audiotoken"]``); ``save_image`` writes it into the file.

Settings fixed at load (models, LoRA, ``--fast``'s weights, compile, safety checker, low VRAM,
device, dtype) are arguments of ``load``; the per-call ones (prompt, steps, guidance, size,
scheduler, window, batch size) are keywords of each call. The model underneath is the one every
command loads (model.py), and images come from the one batch loop (render/diffusion.py).

Audio given to the API is decoded in this process, not in the decoder worker the batch commands
use: a call handles one sound at a time for a caller that owns its process and its time limits,
and the worker's start (about half a second) would dominate an interactive call (the web UI's
live tab). Crash and hang isolation matter for folders of unknown files, which go through the
CLI's commands (or ``video`` here, which shares their per-file skeleton).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Union

import numpy as np
import torch

from audiotoken_cli import validation
from audiotoken_cli.config import (
    CALL_FIELDS,
    LOAD_FIELDS,
    PAPER_PROMPT,
    CallSettings,
    LoadSettings,
    RuntimeSettings,
    Window,
)
from audiotoken_cli.errors import InputError, UsageError
from audiotoken_cli.pipeline.tokens import NON_FINITE_TOKEN, check_token, sound_label
from audiotoken_cli.validation import check_generate_options, check_window
from audiotoken_cli.video import VideoEvents, VideoResult

__all__ = ["AudioToken", "VideoEvents", "VideoResult", "load", "save_image", "train"]

AudioInput = Union[str, os.PathLike, tuple, np.ndarray, torch.Tensor]
"""A file path; a ``(samples, sample_rate)`` pair; or a numpy / torch array at 16 kHz, shaped
(samples,) or (channels, samples)."""

MAX_SEED = validation.MAX_SEED
PER_CALL = tuple(name for name in CALL_FIELDS if name not in ("prompt", "window")) + (
    "start", "duration")
"""The keywords ``generate`` and ``generate_from_token`` take as ``**settings``."""
CHOSEN_AT_LOAD = LOAD_FIELDS + ("device", "dtype", "fast", "images", "model", "offline", "quiet")


def load(model: str = "vggsound", device: str = "auto", dtype: str = "auto", *,
         sd: str | None = None, audio_encoder: str | None = None, embedder: str | None = None,
         lora: str | None = None, lcm_lora: str | None = None, taesd: str | None = None,
         fast: bool = False, compile: bool = False, images: bool = True,
         safety_checker: bool = True, low_vram: bool = False, offline: bool = False,
         quiet: bool = True) -> AudioToken:
    """Load a model preset (or components given as paths, URLs or hub ids) for embedding and
    generating, with the CLI's presets, cache and checksum verification.

    ``images=False`` loads only the audio encoder and embedder (for ``embed``), skipping Stable
    Diffusion's download and memory. Missing weights are downloaded unless ``offline``.
    ``fast=True`` is the CLI's ``--fast``: the preset's LCM-LoRA (fused into the UNet; 4 steps,
    guidance off, the LCM scheduler) and TAESD; ``lcm_lora=`` / ``taesd=`` name others (either
    alone works too). ``compile`` torch.compiles the UNet (worth it for long runs on a GPU).

    >>> model = audiotoken.load(device="cpu", embedder="run/")   # a trained run folder
    >>> quick = audiotoken.load(fast=True)                       # 4-step previews
    """
    from audiotoken_cli.hub import FetchOptions, resolve_components
    from audiotoken_cli.model import load_model

    roles = ("audio_encoder", "embedder") + (("sd", "lora") if images else ())
    if images and (fast or lcm_lora or taesd):
        roles += ("lcm_lora", "taesd") if fast else tuple(
            role for role, given in (("lcm_lora", lcm_lora), ("taesd", taesd)) if given)
    given = {"sd": sd, "audio_encoder": audio_encoder, "embedder": embedder, "lora": lora,
             "lcm_lora": lcm_lora, "taesd": taesd}
    notice = (lambda message: None) if quiet else print
    paths = resolve_components(model, given, roles, FetchOptions(offline, quiet, notice))
    if fast and images and not (paths.get("lcm_lora") and paths.get("taesd")):
        raise UsageError(f"fast=True needs an LCM-LoRA and a tiny autoencoder; preset {model!r} "
                         "names none: pass lcm_lora= and taesd=")
    settings = LoadSettings(**paths, compile=compile, safety_checker=safety_checker,
                            low_vram=low_vram, runtime=RuntimeSettings(device=device, dtype=dtype))
    return AudioToken(load_model(settings))


class AudioToken:
    """A loaded audio encoder, embedder and (unless loaded with ``images=False``) Stable
    Diffusion pipeline. Make one with ``load``."""

    def __init__(self, model):
        self._model = model  # model.LoadedModel: the one loaded model every command uses

    def __repr__(self) -> str:
        return f"AudioToken({self._model.settings!r})"

    @property
    def device(self) -> torch.device:
        return self._model.device

    @property
    def token_dim(self) -> int:
        """d: 768 for SD 1.x, 1024 for SD 2.x."""
        return self._model.token_dim

    @property
    def pipe(self):
        """The diffusers ``StableDiffusionPipeline`` (frozen), for use with other tools."""
        return self._model.require_images()

    @property
    def settings(self) -> LoadSettings:
        """What this model was loaded with (resolved paths, device and dtype as given)."""
        return self._model.settings

    # -- sound → token ------------------------------------------------------------------------

    def embed(self, audio: AudioInput, *, start: float = 0.0, duration: float = 10.0) -> torch.Tensor:
        """The audio token of one sound: float32 tensor of shape (d,), on the CPU.

        ``audio`` is a file path, a ``(samples, sample_rate)`` pair, or a 16 kHz array (S,) or
        (C, S). Equal to ``audiotoken embed --start START --duration DURATION``.

        >>> token = model.embed((mic_buffer, 48_000))
        """
        window = Window(start=start, duration=duration)
        check_window(window, "start", "duration")
        token = self._model.tokens(_waveform(audio, window)[None])[0].cpu()  # (1, S) → (d,)
        return check_token(token, sound_label(audio))

    def save_token(self, audio: AudioInput, path: str | os.PathLike, *, start: float = 0.0,
                   duration: float = 10.0) -> Path:
        """Write the file ``audiotoken embed`` writes for this sound (``emb_params`` [1, d] and
        its provenance), atomically; returns its path.

        >>> model.save_token("dog.wav", "dog.safetensors")
        """
        from audiotoken_cli.pipeline.tokens import write_token_file

        window = Window(start=start, duration=duration)
        check_window(window, "start", "duration")
        waveform = _waveform(audio, window)
        name, digest = _describe(audio, waveform)
        token = check_token(self._model.tokens(waveform[None])[0], sound_label(audio))
        return write_token_file(Path(path), token, self._model.tokenizer, Path(name).name,
                                digest, window)

    # -- sound → images -----------------------------------------------------------------------

    def generate(self, audio: AudioInput | list, n: int = 4, seed: int | None = None,
                 prompt: str = PAPER_PROMPT, *, on_step: Callable[[int, int], None] | None = None,
                 **settings) -> list | Iterator[list]:
        """Images of a sound, pixel for pixel what ``audiotoken generate`` writes.

        Image i uses seed ``seed + i`` (a random base when None). Settings: ``negative_prompt``,
        ``steps`` (25; 4 with the LCM-LoRA), ``guidance`` (7.5; 1.0 with the LCM-LoRA),
        ``width``/``height`` (512), ``scheduler`` ("dpm++", "pndm", "ddim", "euler",
        "euler-a"; "lcm" with the LCM-LoRA), ``start``/``duration`` (the audio window, seconds),
        ``batch_size``. ``on_step(done, total)`` counts image-steps as they finish.

        One input returns a list of ``n`` PIL images. A list of inputs returns an iterator that
        yields each input's list in turn, rendering as it goes (for streaming many sounds).

        >>> for images in model.generate(["dog.wav", "rain.wav"], n=2, seed=7): ...
        """
        if isinstance(audio, list):
            return (self.generate(item, n, seed, prompt, on_step=on_step, **settings)
                    for item in audio)
        call = self._call(prompt, settings)
        waveform = _waveform(audio, call.window)
        name, digest = _describe(audio, waveform)
        path = Path(audio) if isinstance(audio, (str, os.PathLike)) else None
        from audiotoken_cli.pipeline.renderer import Sound

        sound = Sound(Path(name).name if path else name, path=path, waveform=waveform,
                      windowed=True, sha256=digest)
        return self._images(sound, n, seed, call, on_step)

    def generate_from_token(self, token: torch.Tensor, n: int = 4, seed: int | None = None,
                            prompt: str = PAPER_PROMPT, *,
                            on_step: Callable[[int, int], None] | None = None,
                            **settings) -> list:
        """Images from a token you hold: a mix of sounds, or one read from an ``embed`` file.

        ``token`` is (d,) or (1, d) (the ``emb_params`` layout). Settings as for ``generate``;
        the same seed and settings give the same initial noise, so nearby tokens give nearby
        images (a token that moves, moves the picture).

        >>> mix = (model.embed("dog.wav") + model.embed("rain.wav")) / 2
        >>> images = model.generate_from_token(mix, n=2, seed=7)
        """
        from audiotoken_cli.pipeline.renderer import Sound

        token = torch.as_tensor(token, dtype=torch.float32).detach().cpu().reshape(-1)
        if token.numel() != self.token_dim:
            raise UsageError(f"the token has {token.numel()} values; this model's tokens have "
                             f"{self.token_dim}")
        check_token(token, "token", NON_FINITE_TOKEN)
        call = self._call(prompt, settings)
        digest = hashlib.sha256(token.numpy().tobytes()).hexdigest()
        return self._images(Sound("<token>", token=token, sha256=digest), n, seed, call, on_step)

    def video(self, audio: str | os.PathLike, output_dir: str | os.PathLike | None = None, *,
              seed: int | None = None, hop: float = 2.0, window: float = 10.0, fps: int = 8,
              keyframes_only: bool = False, storyboard: bool = False,
              save_keyframes: bool = False, audio_reactive: bool = False, video: bool = True,
              overwrite: bool = False, events: VideoEvents | None = None,
              **settings) -> VideoResult:
        """``audiotoken video`` for one file: an MP4 that moves with the sound, its sidecar and
        tokens (and the storyboard, keyframe PNGs when asked), beside it or in ``output_dir``.

        Settings as for ``generate`` (no window: ``hop`` and ``window`` place the keyframes).
        ``events`` (``audiotoken.VideoEvents``) reports progress; its ``on_storyboard(path)`` is
        called as soon as the storyboard is written, before any in-between frame renders.
        Raises the CLI's one-line error (an ``AudioTokenError``) when the file cannot be used.

        >>> result = model.video("song.mp3", seed=7, storyboard=True)
        >>> result.mp4
        """
        from audiotoken_cli.video import VideoSettings, make_video

        for name in ("start", "duration"):
            if name in settings:
                raise UsageError(f"{name!r} is not a video setting: hop= and window= place "
                                 "each keyframe's window")
        call = self._call(settings.pop("prompt", PAPER_PROMPT), settings)
        seed = secrets.randbelow(2**31) if seed is None else seed
        check_generate_options({**_fields(call), "seed": seed, "output_dir": output_dir})
        self._model.check_call(call)
        generate = self._model.generate_settings(
            call, seed=seed, overwrite=overwrite,
            output_dir=None if output_dir is None else Path(output_dir))
        options = VideoSettings(generate, hop=hop, window=window, fps=fps, video=video,
                                save_keyframes=save_keyframes, storyboard=storyboard,
                                keyframes_only=keyframes_only, audio_reactive=audio_reactive)
        if not isinstance(audio, (str, os.PathLike)):
            raise UsageError("video takes an audio or video file's path")
        return make_video(Path(audio), options, self._model, events)

    # -- internals ----------------------------------------------------------------------------

    def _call(self, prompt: str, settings: dict) -> CallSettings:
        """The per-call settings over this model's defaults; a setting fixed at load, or an
        unknown one, is a UsageError naming it."""
        values = dict(settings)
        for name in values:
            if name in CHOSEN_AT_LOAD:
                raise UsageError(f"{name!r} is chosen in load(), not per call: "
                                 f"audiotoken.load({name}=...)")
            if name not in PER_CALL:
                raise UsageError(f"unknown setting {name!r}; the per-call settings are "
                                 f"{', '.join(PER_CALL)}")
        window = Window(start=float(values.pop("start", 0.0)),
                        duration=float(values.pop("duration", 10.0)))
        return replace(self._model.default_call(), prompt=prompt, window=window, **values)

    def _images(self, sound, n: int, seed: int | None, call: CallSettings, on_step) -> list:
        from audiotoken_cli.pipeline.renderer import (
            ImageRenderer,
            RenderFailure,
            Request,
        )

        seed = secrets.randbelow(2**31) if seed is None else seed
        # The CLI's range checks, before the pipeline is needed (an embed-only model says so
        # after them).
        check_generate_options({**_fields(call), "seed": seed, "num_images": n})
        self._model.require_images()
        renderer = ImageRenderer(self._model, self._model.generate_settings(
            call, seed=seed, num_images=n), call)
        images = []
        request = Request(sound, tuple(range(seed, seed + n)))
        for result in renderer.stream_decoded([request], _step_counter(on_step, n * call.steps)):
            if isinstance(result, RenderFailure):  # this one input's problem, as the CLI says it
                raise InputError(result.message)
            if result.image is None:  # blocked by the safety checker, as the CLI skips it
                continue
            result.image.info["parameters"] = _a1111(result.info)
            result.image.info["audiotoken"] = json.dumps(result.info, sort_keys=True)
            images.append(result.image)
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

    _check_train_names(settings)
    validation.check_train_options({**settings, "output": output})  # before any download or load
    fetch = FetchOptions(offline, quiet, (lambda message: None) if quiet else print)
    paths = resolve_components(model, {"sd": sd, "audio_encoder": audio_encoder},
                               ("sd", "audio_encoder"), fetch)
    init_path = resolve_components(model, {"embedder": init}, ("embedder",), fetch)["embedder"] \
        if init else None
    config = TrainSettings(data=Path(data), output=Path(output), init=init_path,
                           runtime=RuntimeSettings(device=device), **paths, **settings)
    return run_training(config, events)


def _check_train_names(settings: dict) -> None:
    """An unknown ``train`` setting, or one given by its own argument, named with the valid ones."""
    from dataclasses import fields

    from audiotoken_cli.config import TrainSettings

    own = {"data", "output", "sd", "audio_encoder", "init", "runtime"}
    valid = sorted(f.name for f in fields(TrainSettings) if f.name not in own)
    for name in settings:
        if name not in valid:
            raise UsageError(f"unknown setting {name!r}; train's settings are {', '.join(valid)}")


def _fields(call: CallSettings) -> dict:
    return {name: getattr(call, name) for name in CALL_FIELDS}


def _step_counter(on_step: Callable[[int, int], None] | None, total: int):
    """The renderer's per-image-step tick as ``on_step(done, total)``."""
    if on_step is None:
        return None
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        on_step(done, total)
    return tick


def _a1111(info: dict) -> str:
    from audiotoken_cli.pipeline.metadata import a1111_parameters

    return a1111_parameters(info)


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
        from audiotoken_cli.hashing import file_sha256

        return str(Path(audio)), file_sha256(Path(audio))
    return "<array>", hashlib.sha256(waveform.numpy().tobytes()).hexdigest()

