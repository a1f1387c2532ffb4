"""``train --eval-every N``: AIS and IIS on the held-out clips while training, so a user sees
whether the token is getting better.

Every N steps one image is drawn per held-out clip (the sample grid's images: the clip's first
window, seed + i), and scored as ``audiotoken eval`` scores (docs/eval.md), with the same models
and code:

- AIS (MACS): cosine between the Wav2CLIP embedding of the clip's whole track and the
  CLIP ViT-B/32 embedding of the image;
- IIS (MACS): CLIP ViT-B/32 cosine between the image and the clip's real frame (the training
  frame of that window).

The sounds' and frames' embeddings do not change during training: they are computed once. Each
evaluation is a line of ``metrics.jsonl`` (``step``, ``ais``, ``iis``, ``eval_clips``,
``eval_split``); ``eval.png`` draws them at the end of the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from audiotoken_cli.config import TrainSettings
from audiotoken_cli.eval.metrics import cosines


@dataclass
class HeldOutScorer:
    """CLIP ViT-B/32 and the clips' fixed references: (K, 512) sound and frame embeddings."""

    clip: object
    sounds: torch.Tensor
    frames: torch.Tensor
    split: str  # "held-out", or "training" when the set was too small to hold clips out

    def score(self, step: int, images: list) -> dict:
        drawn = [i for i, image in enumerate(images) if image is not None]
        made = self.clip.images([images[i] for i in drawn]).cpu()
        return {"step": step, "ais": float(cosines(self.sounds[drawn], made).mean()),
                "iis": float(cosines(self.frames[drawn], made).mean()), "eval_clips": len(drawn),
                "eval_split": self.split}


def load_scorer(settings: TrainSettings, clips: list, data_settings, split: str,
                device: torch.device) -> HeldOutScorer:
    """Resolve and load the two models, and embed each clip's sound and real frame once."""
    from audiotoken_cli.eval.features import Clip, load_track
    from audiotoken_cli.eval.wav2clip import load_wav2clip
    from audiotoken_cli.hub import FetchOptions
    from audiotoken_cli.hub.fetch import resolve
    from audiotoken_cli.hub.specs import EVAL_COMPONENTS
    from audiotoken_cli.training.data import TrainingData
    from audiotoken_cli.training.examples import slot_rng

    options = FetchOptions()
    clip = Clip(resolve(str(settings.clip_b32 or EVAL_COMPONENTS["clip_b32"]), "clip_b32",
                        options), device)
    wav2clip = load_wav2clip(resolve(str(settings.wav2clip or EVAL_COMPONENTS["wav2clip"]),
                                     "wav2clip", options)).to(device)
    data = TrainingData(clips, data_settings, settings.seed)
    sounds = torch.stack([wav2clip.embed(load_track(Path(c.audio)).to(device)).cpu()
                          for c in clips])
    # The frame of the window the sample grid draws from (slot 0 of each clip).
    frames = [_picture(data.draw(i, slot_rng(settings.seed, i, 0))["pixels"])
              for i in range(len(clips))]
    return HeldOutScorer(clip, sounds, clip.images(frames).cpu(), split)


def held_out_scorer(settings: TrainSettings, held_out: list, samples: list, data_settings,
                    device: torch.device, main: bool, note) -> HeldOutScorer | None:
    """The scorer for ``--eval-every``, on the clips the sample grid shows; None when off or on
    ranks other than the first (which alone scores, as it alone draws the grids)."""
    if settings.eval_every < 0:
        from audiotoken_cli.errors import UsageError

        raise UsageError(f"eval_every {settings.eval_every}: give 0 (never) or a number of steps")
    if not settings.eval_every or not main:
        return None
    if not held_out:
        note(f"too few clips for a held-out split ({len(samples)}): AIS and IIS are measured on "
             "training clips")
    note("loading the eval models (Wav2CLIP, CLIP ViT-B/32) for --eval-every")
    return load_scorer(settings, held_out or samples[:2], data_settings,
                       "held-out" if held_out else "training", device)


def describe_scores(scores: dict) -> str:
    return (f"step {scores['step']}: AIS {scores['ais']:.4f}, IIS {scores['iis']:.4f} "
            f"({scores['eval_clips']} {scores['eval_split']} clips)")


def _picture(pixels: torch.Tensor):
    """(3, H, W) in [-1, 1] → an RGB PIL picture."""
    from PIL import Image

    values = ((pixels.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return Image.fromarray(values.permute(1, 2, 0).numpy())


def pictures_and_scores(run: Path, step: int, embedder, frozen, clips: list, data_settings,
                        settings: TrainSettings, device, dtype,
                        scorer: HeldOutScorer | None) -> dict | None:
    """What is due at ``step``: the sample grid, and the scores of its images (so a scored step
    always has its grid in samples/). Returns the scores when they were due."""
    from audiotoken_cli.training.pictures import sample_grid

    grid_due = bool(settings.sample_every) and step % settings.sample_every == 0
    scores_due = scorer is not None and step % settings.eval_every == 0
    if not (grid_due or scores_due):
        return None
    images = sample_grid(run, step, embedder, frozen, clips, data_settings, settings, device,
                         dtype)
    return scorer.score(step, images) if scores_due else None


def eval_curve(run: Path, width: int = 640, height: int = 360) -> None:
    """eval.png: AIS and IIS per evaluation, drawn with PIL, when the run logged any."""
    import json

    from PIL import Image, ImageDraw

    from audiotoken_cli.files import write_atomically

    lines = (run / "metrics.jsonl").read_text().splitlines()
    rows = [row for row in map(json.loads, filter(str.strip, lines)) if "ais" in row]
    if not rows:
        return
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = 50, 20, width - 110, height - 40
    values = [row[k] for row in rows for k in ("ais", "iis")]
    margin = 0.05 * ((max(values) - min(values)) or 1.0)  # keep the lines off the frame
    low, high = min(values) - margin, max(values) + margin
    span = high - low
    first, last = rows[0]["step"], rows[-1]["step"]

    def point(step: int, value: float) -> tuple[float, float]:
        x = left + (right - left) * ((step - first) / max(last - first, 1))
        return x, bottom - (bottom - top) * (value - low) / span

    for key, colour, y in (("ais", (200, 60, 20), top), ("iis", (20, 60, 160), top + 16)):
        points = [point(row["step"], row[key]) for row in rows]
        draw.line(points if len(points) > 1 else points * 2, fill=colour, width=3)
        for x, y_value in points:
            draw.ellipse([x - 3, y_value - 3, x + 3, y_value + 3], fill=colour)
        draw.text((right + 10, y), key.upper(), fill=colour)
    draw.rectangle([left, top, right, bottom], outline="black")
    draw.text((left, bottom + 8), f"step {first} … {last}", fill="black")
    draw.text((4, top), f"{high:.4g}", fill="black")
    draw.text((4, bottom - 10), f"{low:.4g}", fill="black")
    draw.text((left, 4), f"AIS and IIS on {rows[-1]['eval_clips']} {rows[-1]['eval_split']} "
              "clips", fill="black")
    write_atomically(run / "eval.png", lambda tmp: image.save(tmp, format="PNG"))
