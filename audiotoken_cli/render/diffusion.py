"""The frozen Stable Diffusion: load it once, pick a scheduler, render batches of images, and
the one batch loop every caller renders through (``render_stream``).

Each image is an ``ImageJob``: its text embeddings (with the audio token spliced in) and its seed.
Jobs from many files and ``-n`` are rendered together, ``batch_size`` images per UNet call. Every
image draws its initial noise from its own generator seeded with its own seed, so its pixels do
not depend on which other images share the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from audiotoken_cli.errors import ModelError, UsageError

SCHEDULERS = ("dpm++", "pndm", "ddim", "euler", "euler-a")
SAMPLER_NAMES = {  # as A1111 names them, for the PNG's `parameters` chunk
    "dpm++": "DPM++ 2M Karras",
    "pndm": "PNDM",
    "ddim": "DDIM",
    "euler": "Euler",
    "euler-a": "Euler a",
    "lcm": "LCM",  # --fast only
}
TILING_PIXELS = 1024 * 1024
"""Above this many pixels the VAE decodes in tiles, which keeps its memory flat."""


@dataclass(frozen=True)
class ImageJob:
    """One image to render: (77, d) prompt embeddings, (77, d) negative ones, and a seed; pooled
    embeddings only for pipelines that take them (SDXL)."""

    prompt_embeds: torch.Tensor
    negative_embeds: torch.Tensor
    seed: int
    pooled_embeds: torch.Tensor | None = None
    negative_pooled_embeds: torch.Tensor | None = None


@dataclass(frozen=True)
class RenderSettings:
    steps: int = 25
    guidance: float = 7.5
    width: int = 512
    height: int = 512
    scheduler: str = "dpm++"


def quiet_libraries() -> None:
    """diffusers and transformers print loading bars and advice meant for developers; our own
    progress display replaces them. Set before they are imported, so import-time notes go too."""
    import os
    import warnings

    # diffusers reports old scheduler configs (e.g. `clip_sample` unset) as FutureWarnings
    # meant for model authors; a user can do nothing about them.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"diffusers(\.|$)")
    warnings.filterwarnings("ignore", message=r".*clip_sample.*")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    for logging in (diffusers_logging, transformers_logging):
        logging.set_verbosity_error()
        logging.disable_progress_bar()


SD_PARTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
"""The sub-folders every Stable Diffusion pipeline needs (the safety checker is optional)."""


def check_sd_folder(model: Path) -> None:
    """A diffusers SD folder, or a ModelError naming the folder and what it lacks, before
    diffusers says something vaguer (e.g. about a config it could not find)."""
    if not model.is_dir():
        raise ModelError(f"{model}: not a folder; --sd takes a diffusers Stable Diffusion folder "
                         "or a hub id")
    if not (model / "model_index.json").is_file():
        raise ModelError(f"{model}: not a diffusers Stable Diffusion folder (no model_index.json)")
    for part in SD_PARTS:
        if not (model / part).is_dir():
            raise ModelError(f"{model}: no {part}/ folder in this Stable Diffusion folder (it "
                             f"needs {', '.join(p + '/' for p in SD_PARTS)}); is the download "
                             "complete?")


def load_pipeline(model: Path, device: torch.device, dtype: torch.dtype, *,
                  safety_checker: bool = True, low_vram: bool = False):
    """Load a diffusers Stable Diffusion folder, frozen, on ``device``.

    The model's own safety checker stays when it ships one, unless ``safety_checker`` is False.
    ``low_vram`` keeps each sub-model on the CPU until it runs (CUDA only).
    """
    quiet_libraries()
    from diffusers import StableDiffusionPipeline

    model = Path(model)
    check_sd_folder(model)
    extra = {} if safety_checker else {"safety_checker": None, "requires_safety_checker": False}
    try:
        pipe = StableDiffusionPipeline.from_pretrained(model, dtype=dtype,
                                                       variant=weights_variant(model), **extra)
    except (OSError, ValueError, KeyError) as error:
        raise ModelError(f"{model}: could not load the Stable Diffusion pipeline "
                         f"({str(error).strip().splitlines()[0]})") from error
    for part in (pipe.unet, pipe.vae, pipe.text_encoder):
        part.requires_grad_(False).eval()
    pipe.set_progress_bar_config(disable=True)
    if low_vram and device.type == "cuda":
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    # diffusers uses PyTorch's scaled-dot-product attention by default (AttnProcessor2_0);
    # nothing to switch on, but say so for readers looking for it.
    return pipe


def tune_for_device(pipe, device: torch.device, *, compile_unet: bool = False) -> None:
    """GPU speed-ups that leave the pixels' meaning alone.

    - channels-last UNet on CUDA: cuDNN's convolutions run NHWC natively (tensor cores).
    - ``compile_unet``: torch.compile of the UNet. The first batch pays the compilation (tens
      of seconds to minutes on a GPU, more on a CPU); each later call is faster. Worth it for
      long runs only, hence opt-in.
    Classifier-free guidance already runs as one UNet call on a batch of 2B (diffusers
    concatenates the unconditional and conditional halves), and the VAE decodes the whole
    batch at once.
    """
    if device.type == "cuda":
        pipe.unet.to(memory_format=torch.channels_last)
    if compile_unet:
        pipe.unet = torch.compile(pipe.unet, fullgraph=False, dynamic=False)


def sample_pipeline(frozen):
    """A pipeline around training's frozen parts, for sample grids (no safety checker: the
    images stay in the run folder)."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(unet=frozen.unet, vae=frozen.vae,
                                   text_encoder=frozen.encoder.text_encoder,
                                   tokenizer=frozen.encoder.tokenizer,
                                   scheduler=frozen.noise_scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    use_scheduler(pipe, "dpm++")
    return pipe


def weights_variant(folder: Path) -> str | None:
    """"fp16" when the folder holds only fp16 weight files (what `download` fetches from repos
    that offer them), so diffusers looks for those names."""
    unet = Path(folder) / "unet"
    plain = any(unet.glob("diffusion_pytorch_model.safetensors")) or any(
        unet.glob("diffusion_pytorch_model.bin")) or any(unet.glob("diffusion_pytorch_model-*"))
    return "fp16" if any(unet.glob("*.fp16.*")) and not plain else None


def use_scheduler(pipe, name: str) -> None:
    """Swap the pipeline's scheduler; ``pndm`` keeps the model's own configuration."""
    from diffusers import (
        DDIMScheduler,
        DPMSolverMultistepScheduler,
        EulerAncestralDiscreteScheduler,
        EulerDiscreteScheduler,
    )

    if name not in SCHEDULERS:
        raise UsageError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}")
    config = pipe.scheduler.config
    if name == "dpm++":
        pipe.scheduler = DPMSolverMultistepScheduler.from_config(
            config, algorithm_type="dpmsolver++", solver_order=2, use_karras_sigmas=True)
    elif name == "ddim":
        pipe.scheduler = DDIMScheduler.from_config(config)
    elif name == "euler":
        pipe.scheduler = EulerDiscreteScheduler.from_config(config)
    elif name == "euler-a":
        pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(config)


def check_size(width: int, height: int, pipe) -> None:
    """The VAE downsamples by 8 (and the UNet further): sizes must be multiples of 8."""
    factor = getattr(pipe, "vae_scale_factor", 8)
    for name, value in (("--width", width), ("--height", height)):
        if value % factor:
            raise UsageError(f"{name} {value} is not a multiple of {factor}; try "
                             f"{max(factor, round(value / factor) * factor)}")


def auto_batch_size(device: torch.device, width: int, height: int) -> int:
    """Images per UNet call: as many as fit comfortably, up to 8.

    A 512×512 image with guidance costs roughly 1.5 GB of activations in float16; we keep to
    half the free memory. CPU and MPS gain little from batching, so they render one at a time
    (on the CPU a bigger batch only delays the first finished file).
    """
    if device.type != "cuda":
        return 1
    free, _total = torch.cuda.mem_get_info(device)
    per_image = 1.5e9 * (width * height) / (512 * 512)
    return max(1, min(8, int(free * 0.5 // per_image)))


def render(pipe, jobs: Sequence[ImageJob], settings: RenderSettings,
           on_step: Callable[[], None] | None = None) -> list:
    """Render ``jobs`` in one batch; returns PIL images, or None where the safety checker
    flagged one (the pipeline blacks those out; we do not save them)."""
    device = pipe._execution_device
    generators = [torch.Generator(device="cpu").manual_seed(job.seed) for job in jobs]
    latents = _initial_noise(pipe, generators, settings).to(device)
    dtype = pipe.unet.dtype
    if settings.width * settings.height > TILING_PIXELS:
        pipe.vae.enable_tiling()

    def step_end(_pipe, _step, _timestep, kwargs):
        if on_step is not None:
            on_step()
        return kwargs

    pooled = {}
    if jobs[0].pooled_embeds is not None:  # SDXL-style pipelines only
        pooled = {"pooled_prompt_embeds": torch.stack([j.pooled_embeds for j in jobs]).to(device, dtype),
                  "negative_pooled_prompt_embeds": torch.stack(
                      [j.negative_pooled_embeds for j in jobs]).to(device, dtype)}
    output = pipe(
        prompt_embeds=torch.stack([job.prompt_embeds for job in jobs]).to(device, dtype),
        negative_prompt_embeds=torch.stack([job.negative_embeds for job in jobs]).to(device, dtype),
        **pooled,
        num_inference_steps=settings.steps,
        guidance_scale=settings.guidance,
        width=settings.width,
        height=settings.height,
        latents=latents,
        generator=generators,
        callback_on_step_end=step_end,
    )
    flagged = output.nsfw_content_detected or [False] * len(jobs)
    return [None if bad else image for image, bad in zip(output.images, flagged)]


def _initial_noise(pipe, generators: list[torch.Generator], settings: RenderSettings) -> torch.Tensor:
    """(B, 4, H/8, W/8) noise, each image from its own CPU generator.

    Drawing on the CPU makes a seed give the same image on CUDA, MPS and CPU alike, and one
    generator per image makes it independent of the batch it lands in.
    """
    factor = pipe.vae_scale_factor
    shape = (pipe.unet.config.in_channels, settings.height // factor, settings.width // factor)
    noise = [torch.randn(shape, generator=g, dtype=torch.float32) for g in generators]
    # The pipeline scales given latents by the scheduler's init_noise_sigma itself.
    return torch.stack(noise).to(pipe.unet.dtype)


# ---------------------------------------------------------------------------------------------
# The one batch loop: a stream of image jobs in, images out in the same order. Streaming
# ``generate`` (jobs from many sounds sharing UNet batches), the Python API and ``video``
# (keyframes, and in-between frames from slerped prompt embeddings on one seed's noise) all
# render through ``render_stream``. A job's conditioning is a small dataclass rather than a bare
# tensor so that a model whose pipeline wants more per image (SDXL: a pooled embedding beside
# the per-token ones) adds a field here, not a second loop.


@dataclass(frozen=True)
class Conditioning:
    """What the UNet is conditioned on for one image: (77, d) prompt embeddings, and for models
    that use one, a pooled embedding (d_pooled,)."""

    prompt_embeds: torch.Tensor
    pooled: torch.Tensor | None = None


@dataclass(frozen=True)
class Job:
    """One image: its conditioning and the seed of its initial noise. ``conditioning`` None is a
    place-holder that renders nothing and comes back in its place (a failed sound, reported in
    input order). ``key`` is the caller's handle."""

    conditioning: Conditioning | None
    seed: int
    key: object = None


@dataclass(frozen=True)
class Rendered:
    """A job and its PIL image; ``image`` is None for a place-holder or when the safety checker
    flagged the image (``blocked``)."""

    job: Job
    image: object
    blocked: bool = False


def render_stream(pipe, jobs: Iterable[Job], settings: RenderSettings, negative: Conditioning,
                  batch_size: int, on_step: Callable[[int], None] | None = None
                  ) -> Iterator[Rendered]:
    """Render ``jobs`` (read lazily) ``batch_size`` images per UNet call, results in job order.

    A batch is rendered as soon as it is full, so the first images come while later jobs are
    still being made; place-holders ride along with the batch they fall in.
    ``on_step(images)`` is called after each denoising step of a batch, with the batch's
    number of images (``generate``'s progress counts image-steps, ``video``'s UNet steps).
    """
    waiting: list[Job] = []
    count = 0
    for job in jobs:
        waiting.append(job)
        count += job.conditioning is not None
        if count == batch_size or (count == 0 and job.conditioning is None):
            yield from _render_batch(pipe, waiting, settings, negative, on_step)
            waiting, count = [], 0
    if waiting:
        yield from _render_batch(pipe, waiting, settings, negative, on_step)


def _render_batch(pipe, taken: list[Job], settings: RenderSettings, negative: Conditioning,
                  on_step) -> Iterator[Rendered]:
    batch = [job for job in taken if job.conditioning is not None]
    step = None if on_step is None else (lambda: on_step(len(batch)))
    images = iter(render(pipe, [_image_job(job, negative) for job in batch], settings, step)
                  if batch else [])
    for job in taken:
        if job.conditioning is None:
            yield Rendered(job, None)
        else:
            image = next(images)
            yield Rendered(job, image, blocked=image is None)


def _image_job(job: Job, negative: Conditioning) -> ImageJob:
    return ImageJob(job.conditioning.prompt_embeds, negative.prompt_embeds, job.seed,
                    job.conditioning.pooled, negative.pooled)
