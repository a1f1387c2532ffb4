"""Terminal output: progress bars, one-line errors and the closing summary (rich).

Progress and errors go to stderr so that stdout carries only the summary, which scripts may read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from audiotoken_cli.files import FileResult

_stderr = Console(stderr=True)
_stdout = Console()


def print_error(message: str) -> None:
    """One line, no wrapping into several: a message names the file and the problem."""
    _stderr.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True, highlight=False)


class Reporter:
    """Shows a batch's progress and summary; knows nothing about what is being done."""

    def error(self, message: str) -> None:
        print_error(message)

    @contextmanager
    def progress(self, verb: str, total: int) -> Iterator[Callable[[FileResult], None]]:
        columns = (TextColumn(f"[bold]{escape(verb)}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("files"), TimeElapsedColumn(), TextColumn("{task.description}"))
        with Progress(*columns, console=_stderr, transient=True) as progress:
            task = progress.add_task("", total=total)

            def advance(result: FileResult) -> None:
                progress.update(task, advance=1, description=escape(result.source.name))

            yield advance

    def summary(self, results: Sequence[FileResult]) -> None:
        if not results:
            return
        table = Table(box=None, pad_edge=False, header_style="bold")
        table.add_column("file", overflow="fold")
        table.add_column("→", overflow="fold")
        table.add_column("status")
        styles = {"written": "green", "skipped": "yellow", "failed": "red"}
        for result in results:
            outputs = ", ".join(_short(path) for path in result.outputs) or "-"
            status = result.status if result.status != "skipped" else f"skipped ({result.message})"
            table.add_row(escape(_short(result.source)), escape(outputs),
                          f"[{styles[result.status]}]{escape(status)}[/]")
        _stdout.print(table)
        counts = {status: sum(r.status == status for r in results) for status in styles}
        line = ", ".join(f"{n} {status}" for status, n in counts.items() if n)
        _stdout.print(line, highlight=False)


def _short(path: Path) -> str:
    """Relative to the working directory when that is shorter, so the table stays readable."""
    try:
        relative = path.resolve().relative_to(Path.cwd().resolve())
        return str(relative)
    except ValueError:
        return str(path)
