"""The one loaded model. ``generate``, ``embed``, ``video`` and the Python API all load here,
and only here, top to bottom in data-path order:

    resolve (device, dtype) ─▶ audio encoder (BEATs) + embedder ─▶ diffusion (Stable Diffusion)
      ─▶ fast / LoRA (the paper's LoRA, --fast's LCM-LoRA and TAESD) ─▶ tune (channels-last,
      compile) ─▶ prompt encoder and its checks

What is chosen here (``LoadSettings``) stays fixed; what changes per call (``CallSettings``:
prompt, steps, guidance, size, scheduler, window, batch size) goes through ``prepare``, which
checks it against the loaded model and encodes the negative prompt.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from audiotoken_cli.audio.fbank import beats_fbank
from audiotoken_cli.config import (
    DEVICE_CHOICES,
    DTYPE_CHOICES,
    CallSettings,
    GenerateSettings,
    LoadSettings,
)
from audiotoken_cli.errors import ModelError, UsageError
from audiotoken_cli.models.beats import BEATs
from audiotoken_cli.models.embedder import LoadedEmbedder
from audiotoken_cli.models.safecache import load_beats_fast, load_embedder_fast
from audiotoken_cli.render.diffusion import (
    Conditioning,
    Job,
    Rendered,
    RenderSettings,
    render_stream,
)

LCM_SCHEDULER = "lcm"


@dataclass
class AudioTokenizer:
    """A frozen BEATs and an embedder on one device: waveforms in, tokens out (the first half
    of the data path, which ``embed`` runs alone)."""

    beats: BEATs
    embedder: LoadedEmbedder
    device: torch.device
    dtype: torch.dtype
    audio_encoder_path: Path

    @classmethod
    def load(cls, audio_encoder: Path, embedder: Path, device: torch.device,
             dtype: torch.dtype) -> AudioTokenizer:
        """Audio encoder, then embedder; their widths must fit (load_model's first stages)."""
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

    @property
    def encoder_dims(self) -> tuple[int, ...]:
        """One width per text encoder: (d,) for SD 1.x/2.x, (768, 1280) for SDXL."""
        return self.embedder.model.config.encoder_dims

    @torch.inference_mode()
    def __call__(self, waveforms: torch.Tensor) -> torch.Tensor:
        """waveforms (B, S) float32 at 16 kHz → tokens (B, d) float32."""
        fbank = beats_fbank(waveforms.to(self.device))  # (B, T, 128), always float32
        features = self.beats(fbank.to(self.dtype))  # (B, N, 3·D)
        # The embedder is small; running it in float32 keeps tokens exact on every device.
        return self.embedder.model(features.float()).float()


# -- resolve: the device and dtype everything below loads onto --------------------------------

def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then MPS, then CPU; an explicit name must be available."""
    if name not in DEVICE_CHOICES:
        raise UsageError(f"unknown device {name!r}; choose one of {', '.join(DEVICE_CHOICES)}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA GPU is available to this torch build")
    if name == "mps" and not _mps_available():
        raise UsageError("--device mps: Apple's MPS backend is not available on this machine")
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """``auto`` is float16 on CUDA and MPS (half the memory, tensor cores) and float32 on CPU,
    where half precision is slow and lossy."""
    if name not in DTYPE_CHOICES:
        raise UsageError(f"unknown dtype {name!r}; choose one of {', '.join(DTYPE_CHOICES)}")
    if name == "auto":
        return torch.float32 if device.type == "cpu" else torch.float16
    return getattr(torch, name)


# -- load, in data-path order ------------------------------------------------------------------

def load_model(settings: LoadSettings) -> LoadedModel:
    """Load every model ``settings`` names (a bad model fails here, before any audio work)."""
    # resolve
    device = resolve_device(settings.runtime.device)
    dtype = resolve_dtype(settings.runtime.dtype, device)
    # audio encoder → embedder (their widths are checked against each other)
    tokenizer = AudioTokenizer.load(settings.audio_encoder, settings.embedder, device, dtype)
    if settings.sd is None:
        return LoadedModel(settings, tokenizer)
    # diffusion
    from audiotoken_cli.render.diffusion import load_pipeline, tune_for_device

    pipe = load_pipeline(settings.sd, device, dtype, safety_checker=settings.safety_checker,
                         low_vram=settings.low_vram)
    # fast / LoRA: all folded into the weights now, so no step pays for them
    if settings.lora is not None:
        from audiotoken_cli.models.lora import (
            apply_diffusers_lora,
            apply_paper_lora,
            is_paper_lora,
        )

        if is_paper_lora(settings.lora):
            apply_paper_lora(pipe.unet, settings.lora)
        else:  # diffusers' or kohya's format, SD or SDXL
            apply_diffusers_lora(pipe, settings.lora)
    if settings.lcm_lora is not None:
        from audiotoken_cli.render.fast import fuse_lcm_lora

        fuse_lcm_lora(pipe, settings.lcm_lora)  # and the LCM scheduler
    if settings.taesd is not None:
        from audiotoken_cli.render.fast import use_taesd

        use_taesd(pipe, settings.taesd, device, dtype)
    # tune
    tune_for_device(pipe, device, compile_unet=settings.compile)
    # prompt encoder (one per text encoder for SDXL), and the token widths it must take
    encoder = prompt_encoder(pipe)
    encoder.check_token_width(tokenizer.encoder_dims, str(settings.embedder), str(settings.sd))
    return LoadedModel(settings, tokenizer, pipe, encoder)


def prompt_encoder(pipe):
    """The prompt encoder for ``pipe``: SDXL's two text encoders, or the one of SD 1.x/2.x."""
    from audiotoken_cli.render.prompt import DualPromptEncoder, PromptEncoder

    if getattr(pipe, "text_encoder_2", None) is None:
        return PromptEncoder(pipe.tokenizer, pipe.text_encoder)
    return DualPromptEncoder.load(
        (pipe.tokenizer, pipe.tokenizer_2), (pipe.text_encoder, pipe.text_encoder_2),
        zeros_for_empty_negative=bool(pipe.config.get("force_zeros_for_empty_prompt", True)))


@dataclass(frozen=True)
class Prepared:
    """One call's plan on the loaded model: the sampler settings, the encoded negative prompt,
    the UNet batch size and the prompt."""

    call: CallSettings
    render: RenderSettings
    negative: Conditioning
    batch_size: int


class LoadedModel:
    """Audio encoder, embedder and (unless loaded without ``sd``) the Stable Diffusion pipeline
    with its prompt encoder, on one device."""

    def __init__(self, settings: LoadSettings, tokenizer, pipe=None, encoder=None):
        self.settings, self.tokenizer, self.pipe, self.encoder = settings, tokenizer, pipe, encoder
        # The sampler the pipeline came with (LCM once the LCM-LoRA is fused): "pndm" and
        # "lcm" mean this one, whatever scheduler an earlier call swapped in.
        self._own_scheduler = pipe.scheduler if pipe is not None else None
        self._fast_metadata: dict | None = None

    device = property(lambda self: self.tokenizer.device)
    dtype = property(lambda self: self.tokenizer.dtype)
    token_dim = property(lambda self: self.tokenizer.token_dim)

    @property
    def fast(self) -> bool:
        """Whether the LCM-LoRA is fused (it then samples with the LCM scheduler only)."""
        return self.settings.lcm_lora is not None

    def default_call(self) -> CallSettings:
        """The per-call defaults for this model: the paper's, or --fast's few steps; the
        model's own image size (512 SD 1.x, 1024 SDXL)."""
        from audiotoken_cli.render.kind import default_image_size

        side = default_image_size(self.settings.sd)
        if not self.fast:
            return CallSettings(width=side, height=side)
        from audiotoken_cli.render.fast import FAST_GUIDANCE, FAST_STEPS

        return CallSettings(steps=FAST_STEPS, guidance=FAST_GUIDANCE, scheduler=LCM_SCHEDULER,
                            width=side, height=side)

    # -- sound → token ------------------------------------------------------------------------

    def tokens(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(B, S) 16 kHz windows → (B, d) float32 tokens on the model's device."""
        return self.tokenizer(waveforms)

    # -- token → images -----------------------------------------------------------------------

    def require_images(self):
        if self.pipe is None:
            raise UsageError("this model was loaded with images=False; load(images=True) to "
                             "generate")
        return self.pipe

    def check_call(self, call: CallSettings) -> None:
        """The per-call checks against this model: the prompt's <*>, the sampler, the size."""
        from audiotoken_cli.render.diffusion import check_size
        from audiotoken_cli.render.prompt import check_prompt

        pipe = self.require_images()
        check_prompt(call.prompt)
        if self.fast != (call.scheduler == LCM_SCHEDULER):
            raise UsageError("a model loaded with the LCM-LoRA samples with the lcm scheduler "
                             "only; choose another scheduler by loading without it"
                             if self.fast else
                             "scheduler 'lcm' needs the LCM-LoRA; load it with lcm_lora= or "
                             "fast=True (CLI: --fast)")
        check_size(call.width, call.height, pipe)

    def prepare(self, call: CallSettings) -> Prepared:
        """Check ``call``, set its sampler, encode its negative prompt."""
        from audiotoken_cli.render.diffusion import auto_batch_size, use_scheduler

        self.check_call(call)
        self.pipe.scheduler = self._own_scheduler
        if not self.fast:
            use_scheduler(self.pipe, call.scheduler)
        negative = self.conditioning(call.negative_prompt)[0]
        batch = call.batch_size or auto_batch_size(self.device, call.width, call.height)
        render = RenderSettings(call.steps, call.guidance, call.width, call.height,
                                call.scheduler)
        return Prepared(call, render, negative, batch)

    @torch.inference_mode()
    def conditioning(self, prompt: str, tokens: torch.Tensor | None = None) -> list[Conditioning]:
        """The prompt's conditioning with each token (B, d) in place of <*>; without tokens,
        the prompt alone (one, e.g. the negative prompt). One text-encoder call."""
        self.require_images()
        if tokens is None:  # a negative prompt: SDXL's empty one is zeros (its model config)
            made = self.encoder.negative(prompt)
        else:
            made = self.encoder.condition([prompt] * len(tokens), tokens.to(self.device))
        pooled = made.pooled if made.pooled is not None else [None] * len(made.embeds)
        return [Conditioning(row, row_pooled) for row, row_pooled in zip(made.embeds, pooled)]

    def render(self, jobs: Iterable[Job], prepared: Prepared,
               on_step: Callable[[int], None] | None = None) -> Iterator[Rendered]:
        """Images of ``jobs`` in order, ``prepared.batch_size`` per UNet call; ``on_step(n)``
        after each step of a batch of n images."""
        return render_stream(self.require_images(), jobs, prepared.render, prepared.negative,
                             prepared.batch_size, on_step)

    # -- what the images record ---------------------------------------------------------------

    def run_metadata(self, settings: GenerateSettings):
        """The PNG metadata every image of a run shares: the settings, and the models actually
        loaded (the LCM-LoRA and TAESD only when they were)."""
        from audiotoken_cli.pipeline.metadata import RunMetadata

        metadata = RunMetadata.collect(settings, self.tokenizer)
        metadata.models.update(self.fast_metadata())
        return metadata

    def fast_metadata(self) -> dict:
        """The --fast weights and their hashes; empty when neither was loaded."""
        if self._fast_metadata is None:
            self._fast_metadata = _fast_models(self.settings)
        return self._fast_metadata

    def generate_settings(self, call: CallSettings, **command) -> GenerateSettings:
        """A run's full settings: this model's and the call's (``command``: seed, ...)."""
        return GenerateSettings.of(self.settings, call, **command)


def _fast_models(settings: LoadSettings) -> dict:
    if settings.lcm_lora is None and settings.taesd is None:
        return {}
    from audiotoken_cli.hashing import cached_sha256
    from audiotoken_cli.pipeline.naming import model_id
    from audiotoken_cli.render.fast import weights_file

    taesd_file = weights_file(settings.taesd) if settings.taesd else None
    return {
        "lcm_lora": model_id(settings.lcm_lora),
        "lcm_lora_sha256": cached_sha256(settings.lcm_lora) if settings.lcm_lora else None,
        "taesd": model_id(settings.taesd),
        "taesd_sha256": cached_sha256(taesd_file) if taesd_file else None,
    }
