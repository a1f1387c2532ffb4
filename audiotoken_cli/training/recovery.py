"""What a killed training run leaves behind, put right when the next run starts in its folder.

A SIGKILL can land anywhere: mid-write of a metrics line, mid-save of a checkpoint (its
temporary folder stays), or after the last checkpoint but before the final export. Checkpoints
are renamed into place whole, so the newest one is always complete: everything here repairs the
run folder from it.
"""

from __future__ import annotations

import filecmp
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from audiotoken_cli.files import ATOMIC_PARTIAL, remove_stale_partials, write_atomically

EXPORTED = ("embedder.safetensors", "config.json")
"""The final export: the same two files ``save_embedder`` writes into every checkpoint."""

TRAIN_PARTIALS = (ATOMIC_PARTIAL, re.compile(r"^\.step-\d+\.partial$"),
                  re.compile(r"^(features|latents)\.npy\.partial$"))
"""Our own temporary names in a run folder: atomic writes, a checkpoint being saved, the cache."""


def remove_stray_partials(run: Path) -> list[Path]:
    """Temporary files and folders of a killed run, in the run folder and the folders under it
    that the loop writes to."""
    removed = []
    for folder in (run, run / "checkpoints", run / "cache", run / "samples"):
        removed += remove_stale_partials(folder, patterns=TRAIN_PARTIALS)
    return removed


def export_is_current(run: Path, checkpoint: Path) -> bool:
    """Whether the run folder's embedder is the one of ``checkpoint`` (byte for byte: both are
    written by ``save_embedder`` from the same weights and the same description)."""
    return all((run / name).is_file() and filecmp.cmp(run / name, checkpoint / name, shallow=False)
               for name in EXPORTED)


def finish_export(run: Path, checkpoint: Path) -> None:
    """Do the export a killed run did not: copy the checkpoint's embedder into the run folder,
    weights first, so ``generate --embedder RUN`` never sees new weights with an old config."""
    for name in EXPORTED:
        write_atomically(run / name, lambda tmp, name=name: shutil.copyfile(checkpoint / name, tmp))


def read_metrics(path: Path) -> tuple[list[str], list[int]]:
    """The complete lines of metrics.jsonl, and the numbers of lines that are not valid JSON
    (normally only a last line torn by a kill in mid-write)."""
    if not path.is_file():
        return [], []
    kept, torn = [], []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            torn.append(number)
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            kept.append(line)
        else:
            torn.append(number)
    return kept, torn


def trim_metrics(path: Path, last_step: int, note: Callable[[str], None]) -> None:
    """Keep the metric lines of steps up to ``last_step`` (the checkpoint resumed from); a torn
    line is dropped with a note instead of stopping the resume."""
    lines, torn = read_metrics(path)
    for number in torn:
        note(f"{path}: dropped line {number}, torn by a run killed mid-write")
    if not lines and not torn:
        return
    kept = [line for line in lines if json.loads(line)["step"] <= last_step]
    write_atomically(path, lambda tmp: tmp.write_text("".join(f"{line}\n" for line in kept)))


def finish_killed_export(run: Path, steps: list[int], max_steps: int,
                         note: Callable[[str], None]) -> bool:
    """A run killed after its last checkpoint but before its export: export that checkpoint
    (for --resume) and say so. False when there is nothing to finish."""
    if not steps or steps[-1] < max_steps:
        return False
    checkpoint = run / "checkpoints" / f"step-{steps[-1]}"
    if export_is_current(run, checkpoint):
        return False
    from audiotoken_cli.training.pictures import loss_curve

    note(f"step {steps[-1]} was trained but not exported (the run was stopped); exporting it")
    trim_metrics(run / "metrics.jsonl", steps[-1], note)
    finish_export(run, checkpoint)
    loss_curve(run)
    return True
