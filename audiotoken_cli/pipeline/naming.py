"""Where outputs go: the naming rule for images, so names are deterministic and never collide.

The rule (docs/usage.md, "File names"):

- Image i of ``dog.wav`` with base seed S is ``dog_seed<S+i>.png``, beside the sound or under
  ``-o DIR`` (mirroring the input's subfolders, see ``files.mirrored_folder``).
- When that file exists and its JSON chunk records the same pixel-changing settings as this run
  (prompt, negative prompt, steps, guidance, scheduler, size, audio window, dtype and the resolved
  model, audio encoder, embedder and LoRA), the image is already made: it is skipped.
- When it exists with other settings (or is not one of ours), the image goes beside it as
  ``dog_seed<S+i>_<tag>.png``, where ``tag`` is the first 8 hex digits of the sha256 of those
  settings. The tag depends only on the settings, so running the same new settings again finds
  that file and skips it; exploring never overwrites and never skips silently.
- ``--overwrite`` writes ``dog_seed<S+i>.png`` whatever is there.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from audiotoken_cli.config import GenerateSettings
from audiotoken_cli.files import mirrored_folder

PIXEL_SETTINGS = ("prompt", "negative_prompt", "steps", "guidance", "scheduler", "width",
                  "height", "window", "dtype", "sd", "audio_encoder", "embedder", "lora",
                  "lcm_lora", "taesd")
MODEL_SETTINGS = ("sd", "audio_encoder", "embedder", "lora", "lcm_lora", "taesd")
"""The settings that change an image's pixels besides its sound and seed; the JSON chunk of every
PNG holds each of them under the same name."""


@dataclass(frozen=True)
class PlannedImage:
    source: Path
    seed: int
    path: Path
    exists: bool = False  # already made with these settings: skipped


def image_path(source: Path, seed: int, output_dir: Path | None, root: Path | None = None) -> Path:
    """The plain name: ``<stem>_seed<seed>.png`` beside the source, or mirrored under
    ``output_dir``."""
    return mirrored_folder(source, output_dir, root) / f"{source.stem}_seed{seed}.png"


def model_id(path: Path | str | None) -> str | None:
    """How a model is named in settings and metadata: its absolute path."""
    # abspath, not resolve: a hub-cache file stays its snapshot path, not the blob it links to.
    return os.path.abspath(Path(path).expanduser()) if path is not None else None


def pixel_settings(settings: GenerateSettings, dtype: str) -> dict:
    """The run's pixel-changing settings, as the JSON chunk records them; ``dtype`` is the one
    actually used (``auto`` resolved)."""
    return {
        "prompt": settings.prompt, "negative_prompt": settings.negative_prompt,
        "steps": settings.steps, "guidance": float(settings.guidance),
        "scheduler": settings.scheduler, "width": settings.width, "height": settings.height,
        "window": {k: float(v) for k, v in asdict(settings.window).items()}, "dtype": dtype,
        "sd": model_id(settings.sd), "audio_encoder": model_id(settings.audio_encoder),
        "embedder": model_id(settings.embedder), "lora": model_id(settings.lora),
        "lcm_lora": model_id(settings.lcm_lora), "taesd": model_id(settings.taesd),
    }


def settings_tag(settings: dict) -> str:
    """8 hex digits that stand for the settings: the same settings give the same tag."""
    text = json.dumps({k: settings.get(k) for k in PIXEL_SETTINGS}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:8]
