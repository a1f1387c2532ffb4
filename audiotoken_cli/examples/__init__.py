"""Short sounds of our own making, shipped with the package, so a first run needs no files:
``audiotoken generate --example bell``. ``synth.py`` made them from numpy (run it to remake)."""

from __future__ import annotations

from pathlib import Path

from audiotoken_cli.errors import UsageError

EXAMPLES = ("bell", "rain", "bird")
"""A struck bell, rain-like noise and a bird's chirps; 2 s each, Opus in Ogg, a few kB."""


def example_path(name: str) -> Path:
    """The packaged file for an example name."""
    if name not in EXAMPLES:
        raise UsageError(f"unknown example {name!r}; choose one of {', '.join(EXAMPLES)}")
    return Path(__file__).parent / f"{name}.ogg"
