"""The per-file skeleton every batch command shares (``generate``, ``embed``, ``video``).

Sources are read lazily, in input order. Every rank claims every file's outputs, so two inputs
that would write the same output collide the same way whichever rank owns them; each output
folder is cleared, once, of the temporary files a killed run left there (before anything is
written beside them); and rank r of a torchrun takes the files whose input index is r modulo the
world size. The command decides, per file, what its outputs are (``plan_of``) and what to do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from audiotoken_cli.errors import InputError
from audiotoken_cli.files import OutputClaims, remove_stale_partials


@dataclass(frozen=True)
class Claimed:
    """One input file: its plan, whether it is this rank's, and the collision that stops it."""

    source: Path
    plan: object
    mine: bool
    collision: InputError | None


def claim_files(sources: Iterable[Path], plan_of: Callable[[Path], object],
                outputs_of: Callable[[object], list[Path]], rank: int = 0, world: int = 1
                ) -> Iterator[Claimed]:
    """Each source with its plan (``plan_of(source)``), in input order; ``outputs_of(plan)``
    names the files the plan writes."""
    claims = OutputClaims()
    cleaned: set[Path] = set()
    for index, source in enumerate(sources):
        plan = plan_of(source)
        outputs = outputs_of(plan)
        for folder in {path.parent for path in outputs} - cleaned:
            cleaned.add(folder)
            remove_stale_partials(folder)
        collision = claims.claim(source, outputs)
        yield Claimed(source, plan, index % world == rank, collision)
