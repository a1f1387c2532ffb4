"""Terminal output: progress bars, one-line errors and the closing summary (rich).

Progress and errors go to stderr so that stdout carries only the summary, which scripts may read.
"""

from __future__ import annotations

import os
import time
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


def progress_interval() -> float:
    """Seconds between plain progress lines (a log, a pipe, Slurm, CI); the first and the last
    always print. AUDIOTOKEN_PROGRESS_SECONDS changes it."""
    try:
        return max(0.0, float(os.environ.get("AUDIOTOKEN_PROGRESS_SECONDS", "10")))
    except ValueError:
        return 10.0


def duration(seconds: float) -> str:
    """3.2 s, 4 min 05 s, 2 h 03 min."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class Throttle:
    """Plain progress lines: the first, then at most one per interval, and the last."""

    def __init__(self, total: int | None, interval: float | None = None):
        self.total, self.interval = total, progress_interval() if interval is None else interval
        self.started = time.monotonic()
        self._last: float | None = None

    def due(self, done: int) -> bool:
        now = time.monotonic()
        finished = self.total is not None and done >= self.total
        if self._last is None or finished or now - self._last >= self.interval:
            self._last = now
            return True
        return False

    def rate_and_left(self, done: int, unit: str, first: int = 0) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = (done - first) / elapsed
        if self.total is None:  # still being counted
            left, finished = None, False
        else:
            left = (self.total - done) / rate if rate > 0 else None
            finished = done >= self.total
        text = f"{rate:.2f} {unit}/s" if rate < 10 else f"{rate:.0f} {unit}/s"
        return text + (f", {duration(left)} left" if left is not None and not finished
                       else f", {duration(elapsed)} in all" if finished else "")


class Reporter:
    """Shows a batch's progress and summary; knows nothing about what is being done."""

    def error(self, message: str) -> None:
        print_error(message)

    @contextmanager
    def progress(self, verb: str, total: int | None,
                 command: str = "") -> Iterator[BatchProgress | PlainProgress]:
        """``total`` may be None (still being counted): ``set_total`` fills it in later."""
        if not _stderr.is_terminal:
            # In a pipe or a log, bars would be noise: plain lines at an interval instead.
            yield PlainProgress(command or verb.lower(), total)
            return
        columns = (TextColumn("[bold]{task.fields[label]}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[unit]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                   TextColumn("{task.description}"))
        with Progress(*columns, console=_stderr, transient=True) as progress:
            yield BatchProgress(progress, verb, total)

    def summary(self, results: Sequence[FileResult], nouns=None, elapsed: float | None = None,
                output_dir: Path | None = None) -> None:
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
        _stdout.print(count_line(results, nouns, elapsed, output_dir), soft_wrap=True,
                      highlight=False)

    def footer(self, text: str) -> None:
        _stderr.print(escape(text), soft_wrap=True, highlight=False)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def count_line(results: Sequence[FileResult], nouns=None, elapsed: float | None = None,
               output_dir: Path | None = None) -> str:
    """"4 images of 2 sounds written, 1 sound skipped, 1 failed in 3.2 s; outputs in renders"."""
    output_noun = nouns.output if nouns else "file"
    input_noun = nouns.input if nouns else "sound"
    written = [r for r in results if r.status == "written"]
    skipped = sum(r.status == "skipped" for r in results)
    failed = sum(r.failed for r in results)
    parts = []
    if written:
        made = sum(len(r.outputs) for r in written)
        parts.append(f"{_plural(made, output_noun)} of {_plural(len(written), input_noun)} "
                     "written")
    if skipped:
        parts.append(f"{_plural(skipped, input_noun)} skipped")
    if failed:
        parts.append(f"{failed} failed")
    line = ", ".join(parts) or "nothing to do"
    if elapsed is not None:
        line += f" in {duration(elapsed)}"
    outputs = [p for r in results if not r.failed for p in r.outputs]
    if outputs:
        folders = {p.parent for p in outputs}
        if len(folders) == 1:
            folder = _short(folders.pop())
            line += f"; outputs in {'the current folder' if folder == '.' else folder}"
        elif output_dir is not None:
            line += f"; outputs under {_short(output_dir)}"
        else:
            line += f"; outputs beside each {input_noun}"
    return line


class BatchProgress:
    """Files done of total; with ``on_total`` (generate) also images and denoising steps; the
    current phase ("loading models", "decoding", "rendering") beside the files."""

    def __init__(self, progress: Progress, verb: str, files: int):
        self._progress = progress
        self._files = progress.add_task("", total=files, label=escape(verb), unit="files")
        self._images = self._steps = None

    def on_phase(self, phase: str) -> None:
        self._progress.update(self._files, description=escape(phase))

    def file_done(self, result: FileResult) -> None:
        self._progress.update(self._files, advance=1, description=escape(result.source.name))

    def set_total(self, files: int) -> None:
        self._progress.update(self._files, total=files)

    def set_done(self, files: int) -> None:
        """Files done over every rank (torchrun), as counted by rank 0."""
        self._progress.update(self._files, completed=files)

    def on_total(self, images: int, steps: int) -> None:
        """Adds to the image and step totals (the plan grows as the files stream in)."""
        if self._images is None:
            self._images = self._progress.add_task("", total=0, label="Images", unit="images")
            self._steps = self._progress.add_task("", total=0, label="Steps", unit="steps")
        for task, more in ((self._images, images), (self._steps, steps)):
            self._progress.update(task, total=self._progress.tasks[task].total + more)

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


class PlainProgress:
    """The same events as ``BatchProgress``, as plain lines for logs: phases when they start,
    then images (or files) done of the total with a rate and the time left."""

    def __init__(self, prefix: str, files: int | None):
        self._verb = prefix
        self._files = Throttle(files)
        self._files_done = 0
        self._images: Throttle | None = None
        self._images_done = 0

    def _line(self, text: str) -> None:
        _stderr.print(escape(f"{self._verb}: {text}"), soft_wrap=True, highlight=False)

    def on_phase(self, phase: str) -> None:
        self._line(phase)

    def counter(self, label: str, total: int, unit: str):
        """A further count (a video's keyframes, its frames) as throttled lines."""
        throttle, done = Throttle(total), [0]

        def advance() -> None:
            done[0] += 1
            if throttle.due(done[0]):
                self._line(f"{label.lower()} {done[0]}/{total}, "
                           + throttle.rate_and_left(done[0], unit))
        return advance

    def file_done(self, result: FileResult) -> None:
        self._files_done += 1
        if self._images is None and self._files.due(self._files_done):
            total = "?" if self._files.total is None else self._files.total
            self._line(f"{self._files_done}/{total} files, "
                       + self._files.rate_and_left(self._files_done, "files"))

    def set_total(self, files: int) -> None:
        self._files.total = files

    def set_done(self, files: int) -> None:
        self._files_done = files

    def on_total(self, images: int, steps: int) -> None:
        """Adds to the image total: the plan grows as the files stream in."""
        if self._images is None:
            self._images = Throttle(0)
        self._images.total += images

    def on_step(self) -> None:
        pass

    def on_image(self, path: Path) -> None:
        if self._images is None:
            return
        self._images_done += 1
        if self._images.due(self._images_done):
            self._line(f"{self._images_done}/{self._images.total} images, "
                       + self._images.rate_and_left(self._images_done, "images"))


def _short(path: Path) -> str:
    """Relative to the working directory when that is shorter, so the table stays readable."""
    try:
        relative = path.resolve().relative_to(Path.cwd().resolve())
        return str(relative)
    except (ValueError, OSError, RuntimeError):  # RuntimeError: a symlink loop, on Python < 3.13
        return str(path)


def human_size(size: int | None) -> str:
    if size is None:
        return "unknown"
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
            # Not cached: the preset's figure, an estimate except for files with a known hash.
            exact = c.cached or c.size is None or c.role in preset.sha256
            size = human_size(c.size) if exact else f"~{human_size(c.size)}"
            _stdout.print(f"  {c.role:<14} {size:>9}  {state:<28} {escape(c.spec)}",
                          soft_wrap=True, highlight=False)
        from audiotoken_cli.hub.specs import OPTIONAL_ROLES

        missing = [c.size for c in components if not c.cached and c.role not in OPTIONAL_ROLES]
        if missing and all(size is not None for size in missing):
            _stdout.print(f"  download fetches about {human_size(sum(missing))} "
                          "(--fast adds the LCM-LoRA and TAESD)", highlight=False)


def print_download_summary(preset: str, paths: dict) -> None:
    from audiotoken_cli.hub import disk_size

    _stdout.print(f"[bold]{escape(preset)}[/]: ready (later runs work offline)", highlight=False)
    for role, path in paths.items():
        if path is not None:
            _stdout.print(f"  {role:<14} {human_size(disk_size(path)):>9}  {escape(str(path))}",
                          soft_wrap=True, highlight=False)


class TrainDisplay:
    """Training progress: step of total, loss, lr, samples/s and the time left, as a bar in a
    terminal and as plain lines at an interval elsewhere; warnings first, a summary last."""

    def __init__(self):
        self._progress = None
        self._task = None
        self._plain: Throttle | None = None
        self._first = 0
        self._last_metrics: dict | None = None
        self._started = time.monotonic()

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
        from audiotoken_cli.training.loop import TrainEvents

        return TrainEvents(on_start=self._start, on_step=self._step, on_note=print_notice)

    def _start(self, first: int, last: int, warnings: list[str]) -> None:
        for warning in warnings:
            _stderr.print(f"[yellow]skipped:[/] {escape(warning)}", soft_wrap=True,
                          highlight=False)
        if first:
            print_notice(f"resuming from step {first} (its checkpoint); training to step {last}")
        self._first = first
        self._started = time.monotonic()
        self._task = self._progress.add_task("", total=last, completed=first)
        if not _stderr.is_terminal:
            self._plain = Throttle(last)

    def _step(self, metrics: dict) -> None:
        self._last_metrics = metrics
        text = (f"loss {metrics['loss']:.4f}  lr {metrics['lr']:.2e}  "
                f"{metrics['samples_per_s']:.1f} samples/s")
        self._progress.update(self._task, completed=metrics["step"], description=text)
        if self._plain is not None and self._plain.due(metrics["step"]):
            left = self._plain.rate_and_left(metrics["step"], "steps", self._first)
            _stderr.print(escape(f"train: step {metrics['step']}/{self._plain.total}  {text}  "
                                 f"({left})"), soft_wrap=True, highlight=False)

    def done(self, run: Path) -> None:
        """Final loss, duration, and where everything is."""
        elapsed = duration(time.monotonic() - self._started)
        metrics = self._last_metrics
        if metrics is not None:
            _stdout.print(f"trained to step {metrics['step']} in {elapsed}, final loss "
                          f"{metrics['loss']:.4f}", highlight=False)
        for label, path in (("loss curve", run / "loss.png"), ("samples", run / "samples"),
                            ("metrics", run / "metrics.jsonl"),
                            ("embedder", run / "embedder.safetensors")):
            if path.exists():
                _stdout.print(f"  {label:<11} {escape(str(path))}", soft_wrap=True,
                              highlight=False)
        _stdout.print(f"trained embedder: {escape(str(run))} (use it with "
                      f"--embedder {escape(str(run))})", soft_wrap=True, highlight=False)
