"""Where outputs go: the naming rule for images, so names are deterministic and never collide."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


def image_path(source: Path, seed: int, output_dir: Path | None) -> Path:
    """The naming rule: ``<stem>_seed<seed>.png`` beside the source, or in ``output_dir``."""
    folder = output_dir if output_dir is not None else source.parent
    return folder / f"{source.stem}_seed{seed}.png"


@dataclass(frozen=True)
class PlannedImage:
    source: Path
    seed: int
    path: Path
