"""The run folder's checkpoints and the versions recorded beside them: written atomically, the
last ``keep`` kept, loaded back for ``--resume``."""

from __future__ import annotations

import json
import os
import platform
import shutil
from dataclasses import asdict
from pathlib import Path

import torch

from audiotoken_cli import __version__
from audiotoken_cli.config import EmbedderInfo, TrainSettings
from audiotoken_cli.errors import UsageError
from audiotoken_cli.models.embedder import AudioEmbedder, save_embedder

CHECKPOINTS = "checkpoints"


def library_versions() -> dict[str, str]:
    import diffusers
    import transformers

    return {"audiotoken-cli": __version__, "torch": torch.__version__,
            "diffusers": diffusers.__version__, "transformers": transformers.__version__,
            "python": platform.python_version()}


def settings_record(settings: TrainSettings) -> dict:
    return json.loads(json.dumps(asdict(settings), default=str))


def checkpoint_steps(run: Path) -> list[int]:
    folder = run / CHECKPOINTS
    steps = []
    for path in folder.glob("step-*") if folder.is_dir() else []:
        if path.is_dir() and path.name[5:].isdigit() and (path / "state.json").is_file():
            steps.append(int(path.name[5:]))
    return sorted(steps)


def save_checkpoint(run: Path, step: int, embedder: AudioEmbedder, optimizer, schedule,
                    info: EmbedderInfo, keep: int) -> Path:
    """``checkpoints/step-N/``, written in a temporary folder and renamed whole: a crash or a full
    disk mid-save leaves the previous checkpoints as they were."""
    folder = run / CHECKPOINTS
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"step-{step}"
    temporary = folder / f".step-{step}.partial"
    shutil.rmtree(temporary, ignore_errors=True)
    try:
        save_embedder(embedder, temporary, info)
        torch.save({"optimizer": optimizer.state_dict(), "schedule": schedule.state_dict()},
                   temporary / "optimizer.pt")
        (temporary / "state.json").write_text(json.dumps({"step": step}))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(temporary, final)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    for old in checkpoint_steps(run)[:-keep] if keep > 0 else []:
        shutil.rmtree(folder / f"step-{old}", ignore_errors=True)
    return final


def load_checkpoint(run: Path, embedder: AudioEmbedder, optimizer, schedule) -> int:
    steps = checkpoint_steps(run)
    if not steps:
        raise UsageError(f"{run}: --resume found no checkpoint in {run / CHECKPOINTS}")
    folder = run / CHECKPOINTS / f"step-{steps[-1]}"
    from safetensors.torch import load_file

    embedder.load_state_dict(load_file(folder / "embedder.safetensors"))
    state = torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    return steps[-1]
