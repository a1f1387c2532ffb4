"""Pictures for the run folder: sample grids during training, the loss curve at the end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from audiotoken_cli.audio.fbank import beats_fbank
from audiotoken_cli.config import TrainSettings
from audiotoken_cli.files import write_atomically
from audiotoken_cli.training.data import TrainingData
from audiotoken_cli.training.examples import Frozen, slot_rng

# ---------------------------------------------------------------------------------------------
# Pictures: sample grids during training, the loss curve at the end


@torch.no_grad()
def sample_grid(run: Path, step: int, embedder, frozen: Frozen, samples, data_settings,
                 settings: TrainSettings, device, dtype) -> list:
    """One image per held-out clip from its first window, in a row, as samples/step-N.png.
    Returns the images (``train --eval-every`` scores them)."""
    from PIL import Image

    from audiotoken_cli.render.diffusion import (
        ImageJob,
        RenderSettings,
        render,
        sample_pipeline,
    )
    from audiotoken_cli.training.conditioning import vae_on

    data = TrainingData(samples, data_settings, settings.seed)
    was_training = embedder.training
    embedder.eval()
    conditions = []
    for i in range(len(samples)):
        waveform = data.draw(i, slot_rng(settings.seed, i, 0))["waveform"]
        fbank = beats_fbank(waveform[None].to(device))
        token = embedder(frozen.beats(fbank.to(dtype)).float())
        conditions.append(frozen.encoder.condition([settings.prompt], token.to(dtype)))
    seeds = [settings.seed + i for i in range(len(samples))]
    width, height = settings.size
    negative = frozen.encoder.negative("")  # SDXL: pooled too (zeros, as the model says)
    jobs = [ImageJob(c.embeds[0], negative.embeds[0], seed, _first(c.pooled),
                     _first(negative.pooled)) for c, seed in zip(conditions, seeds)]
    with vae_on(frozen, device):
        images = render(sample_pipeline(frozen), jobs, RenderSettings(
            steps=settings.sample_steps, width=width, height=height, scheduler="dpm++"))
    embedder.train(was_training)
    # Each tile is captioned with its clip, so a grid of training clips is not taken for
    # held-out ones and a picture can be traced to its sound.
    caption = 16
    grid = Image.new("RGB", (width * len(images), height + caption), "white")
    for i, image in enumerate(images):
        if image is not None:
            grid.paste(image, (i * width, caption))
    draw_captions(grid, [Path(s.audio).name for s in samples], width, caption)
    target = run / "samples" / f"step-{step}.png"
    write_atomically(target, lambda tmp: grid.save(tmp, format="PNG"))
    return images


def _first(rows: torch.Tensor | None) -> torch.Tensor | None:
    return None if rows is None else rows[0]


def draw_captions(grid, names: list[str], width: int, height: int) -> None:
    """Each name in the strip above its tile, cut to fit."""
    from PIL import ImageDraw

    draw = ImageDraw.Draw(grid)
    fits = max(1, (width - 4) // 6)  # PIL's default bitmap font is about 6 px a character
    for i, name in enumerate(names):
        text = name if len(name) <= fits else name[:max(1, fits - 3)] + "..."
        draw.text((i * width + 2, 2), text, fill="black")


def loss_curve(run: Path, width: int = 640, height: int = 360) -> None:
    """loss.png: the loss per step (light) and its running mean (dark), drawn with PIL."""
    from PIL import Image, ImageDraw

    path = run / "metrics.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    losses = [row["loss"] for row in rows if "loss" in row]  # eval lines carry no loss
    if not losses:
        return
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = 50, 20, width - 20, height - 40
    low, high = min(losses), max(losses)
    span = (high - low) or 1.0

    def point(i: int, value: float) -> tuple[float, float]:
        x = left + (right - left) * (i / max(len(losses) - 1, 1))
        return x, bottom - (bottom - top) * (value - low) / span

    window = max(1, len(losses) // 20)
    smooth = [float(np.mean(losses[max(0, i - window + 1):i + 1])) for i in range(len(losses))]
    draw.line([point(i, v) for i, v in enumerate(smooth)], fill=(20, 60, 160), width=3)
    draw.line([point(i, v) for i, v in enumerate(losses)], fill=(120, 150, 220), width=1)
    draw.rectangle([left, top, right, bottom], outline="black")
    draw.text((left, bottom + 8), f"step 1 … {len(losses)}", fill="black")
    draw.text((4, top), f"{high:.4g}", fill="black")
    draw.text((4, bottom - 10), f"{low:.4g}", fill="black")
    draw.text((left, 4), "training loss (thin: per step; thick: running mean)", fill="black")
    write_atomically(run / "loss.png", lambda tmp: image.save(tmp, format="PNG"))
