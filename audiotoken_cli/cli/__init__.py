"""The command line: the only package that knows Typer. ``main`` is the console-script entry."""

from audiotoken_cli.cli.app import app, main

__all__ = ["app", "main"]
