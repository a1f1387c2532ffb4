"""The ``audiotoken`` command line: parse, validate, call the library, report.

This package is the only one that knows Typer. Each command lives in its own module (generate.py,
embed.py, ...) and registers itself on ``app``. Heavy libraries (torch, PyAV, diffusers) are imported
inside the commands, so ``--help``, ``--version`` and argument errors answer instantly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Annotated, Optional

import typer

from audiotoken_cli import __version__

app = typer.Typer(
    name="audiotoken",
    help="Turn sounds into pictures with AudioToken (Interspeech 2023).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@dataclass
class AppState:
    debug: bool = False


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"audiotoken {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[Optional[bool], typer.Option(
        "--version", callback=_version_callback, is_eager=True,
        help="Show the version and exit.")] = None,
    debug: Annotated[bool, typer.Option(
        "--debug", help="Show full tracebacks for errors.")] = False,
) -> None:
    """Turn sounds into pictures with AudioToken (Interspeech 2023).

    A frozen audio classifier (BEATs) hears the sound, a small learned embedder turns it into one
    token in Stable Diffusion's text space, and that token stands in for <*> in a prompt.
    """
    ctx.obj = AppState(debug=debug)


def main() -> None:
    """Console-script entry point."""
    # Set before huggingface_hub is imported: it would otherwise report usage to the hub.
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    app(prog_name="audiotoken")




# Each command module registers itself on ``app`` when imported.
# In the order `--help` lists them.
from audiotoken_cli.cli import generate, embed, train, download  # noqa: E402,F401,I001
from audiotoken_cli.cli import video  # noqa: E402,F401
from audiotoken_cli.cli import eval as eval_command  # noqa: E402,F401
from audiotoken_cli.cli import ui as ui_command  # noqa: E402,F401
