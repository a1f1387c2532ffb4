"""Terminal output: progress bars, one-line errors and the closing summary (rich).

Progress and errors go to stderr so that stdout carries only the summary, which scripts may read.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from audiotoken_cli.files import FileResult

_stderr = Console(stderr=True)
_stdout = Console()


def print_error(message: str) -> None:
    """One line, no wrapping into several: a message names the file and the problem."""
    _stderr.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True, highlight=False)


def print_notice(message: str) -> None:
    _stderr.print(f"[cyan]note:[/] {escape(message)}", soft_wrap=True, highlight=False)


class Reporter:
    """Shows a batch's progress and summary; knows nothing about what is being done."""

    def error(self, message: str) -> None:
        print_error(message)

    @contextmanager
    def progress(self, verb: str, total: int) -> Iterator[BatchProgress]:
        columns = (TextColumn("[bold]{task.fields[label]}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[unit]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                   TextColumn("{task.description}"))
        # Bars only on a terminal: in a pipe or a log they would be noise.
        with Progress(*columns, console=_stderr, transient=True,
                      disable=not _stderr.is_terminal) as progress:
            yield BatchProgress(progress, verb, total)

    def summary(self, results: Sequence[FileResult]) -> None:
        """An aligned table, file → outputs → status, in input order, then the counts.

        Written by hand rather than as a rich Table so that no path is ever folded over two lines
        (people copy file names from it, and scripts read it); long rows run wide instead.
        """
        if not results:
            return
        styles = {"written": "green", "skipped": "yellow", "failed": "red"}
        rows = [(_short(r.source), ", ".join(_short(p) for p in r.outputs),
                 f"{r.status} ({r.message})" if r.message and not r.failed else r.status, r.status)
                for r in results]
        width_file = max(len("file"), *(len(row[0]) for row in rows))
        width_out = max(len("output"), *(len(row[1]) for row in rows))
        header = f"{'file':<{width_file}}  {'output':<{width_out}}  status"
        _stdout.print(f"[bold]{escape(header)}[/]", soft_wrap=True, highlight=False)
        for source, outputs, status, kind in rows:
            line = escape(f"{source:<{width_file}}  {outputs:<{width_out}}  ")
            _stdout.print(f"{line}[{styles[kind]}]{escape(status)}[/]", soft_wrap=True,
                          highlight=False)
        counts = {status: sum(r.status == status for r in results) for status in styles}
        line = ", ".join(f"{n} {status}" for status, n in counts.items() if n)
        _stdout.print(line, highlight=False)


class BatchProgress:
    """Files done of total; with ``on_total`` (generate) also images and denoising steps."""

    def __init__(self, progress: Progress, verb: str, files: int):
        self._progress = progress
        self._files = progress.add_task("", total=files, label=escape(verb), unit="files")
        self._images = self._steps = None

    def file_done(self, result: FileResult) -> None:
        self._progress.update(self._files, advance=1, description=escape(result.source.name))

    def on_total(self, images: int, steps: int) -> None:
        self._images = self._progress.add_task("", total=images, label="Images", unit="images")
        self._steps = self._progress.add_task("", total=steps, label="Steps", unit="steps")

    def on_step(self) -> None:
        if self._steps is not None:
            self._progress.update(self._steps, advance=1)

    def on_image(self, path: Path) -> None:
        if self._images is not None:
            self._progress.update(self._images, advance=1, description=escape(path.name))

    def counter(self, label: str, total: int, unit: str):
        """A further bar (e.g. a video's keyframes and frames); returns its advance-by-one."""
        task = self._progress.add_task("", total=total, label=escape(label), unit=unit)
        return lambda: self._progress.update(task, advance=1)


def _short(path: Path) -> str:
    """Relative to the working directory when that is shorter, so the table stays readable."""
    try:
        relative = path.resolve().relative_to(Path.cwd().resolve())
        return str(relative)
    except ValueError:
        return str(path)


def human_size(size: int | None) -> str:
    if size is None:
        return "?"
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def print_presets(rows) -> None:
    """`download --list`: each preset, its components, sizes, and whether they are cached."""
    for preset, components in rows:
        title = f"[bold]{escape(preset.name)}[/]"
        if preset.description:
            title += f"  {escape(preset.description)}"
        if preset.source != "built in":
            title += f"  [dim]({escape(preset.source)})[/]"
        _stdout.print(title, soft_wrap=True, highlight=False)
        for c in components:
            state = "[green]cached[/]" if c.cached else "[yellow]not cached[/]"
            _stdout.print(f"  {c.role:<14} {human_size(c.size):>9}  {state:<28} {escape(c.spec)}",
                          soft_wrap=True, highlight=False)


def print_download_summary(preset: str, paths: dict) -> None:
    from audiotoken_cli.hub import disk_size

    _stdout.print(f"[bold]{escape(preset)}[/]: ready (later runs work offline)", highlight=False)
    for role, path in paths.items():
        if path is not None:
            _stdout.print(f"  {role:<14} {human_size(disk_size(path)):>9}  {escape(str(path))}",
                          soft_wrap=True, highlight=False)


class TrainDisplay:
    """Training progress: step of total, loss, lr, samples/s and ETA; warnings first."""

    def __init__(self):
        self._progress = None
        self._task = None

    def __enter__(self):
        from rich.progress import TimeRemainingColumn

        self._progress = Progress(TextColumn("[bold]Training"), BarColumn(bar_width=20),
                                  MofNCompleteColumn(), TextColumn("{task.description}"),
                                  TimeRemainingColumn(), console=_stderr,
                                  disable=not _stderr.is_terminal)
        self._progress.start()
        return self

    def __exit__(self, *exc):
        self._progress.stop()
        return False

    def events(self):
        from audiotoken_cli.train.loop import TrainEvents

        return TrainEvents(on_start=self._start, on_step=self._step, on_note=print_notice)

    def _start(self, first: int, last: int, warnings: list[str]) -> None:
        for warning in warnings:
            _stderr.print(f"[yellow]skipped:[/] {escape(warning)}", soft_wrap=True,
                          highlight=False)
        self._task = self._progress.add_task("", total=last, completed=first)

    def _step(self, metrics: dict) -> None:
        text = (f"loss {metrics['loss']:.4f}  lr {metrics['lr']:.2e}  "
                f"{metrics['samples_per_s']:.1f} samples/s")
        self._progress.update(self._task, completed=metrics["step"], description=text)

    def done(self, run: Path) -> None:
        _stdout.print(f"trained embedder: {escape(str(run))} (use it with "
                      f"--embedder {escape(str(run))})", soft_wrap=True, highlight=False)
