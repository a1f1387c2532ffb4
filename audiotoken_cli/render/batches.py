"""The one batch loop: a stream of image jobs in, images out in the same order.

Every caller renders through ``render_stream``: streaming ``generate`` (jobs from many sounds
sharing UNet batches), the Python API, and ``video`` (keyframes from their tokens, in-between
frames from slerped prompt embeddings, all on one seed's noise).

A job's conditioning is a small dataclass rather than a bare tensor so that a model whose
pipeline wants more per image (SDXL: a pooled embedding beside the per-token ones) adds a field
here, not a second loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch

from audiotoken_cli.render.diffusion import ImageJob, RenderSettings, render


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
