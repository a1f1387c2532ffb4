"""What every command shares: component resolution, the per-file batch loop, error reporting."""

from __future__ import annotations

import contextlib
import signal
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import typer

from audiotoken_cli.cli.app import AppState
from audiotoken_cli.errors import AudioTokenError, UsageError

EXIT_FAILED = 1
"""At least one file (or a model, or training) failed."""
EXIT_USAGE = 2
"""The command line was wrong: an unknown option or preset, a bad value, a missing device."""


def components(model: str, given: dict, roles: tuple[str, ...], offline: bool, quiet: bool):
    """Local paths for the components: the options given, else the preset's, fetched when
    missing (with a one-line notice)."""
    from audiotoken_cli.cli.report import print_notice
    from audiotoken_cli.hub import FetchOptions, resolve_components
    from audiotoken_cli.models import safecache

    notice = (lambda message: None) if quiet else print_notice
    safecache.copy_notice = notice  # said once per weight file, when its copy is made
    fetch = FetchOptions(offline=offline, quiet=quiet, notice=notice)
    return resolve_components(model, given, roles, fetch)


def with_image_size(options: dict, sd) -> dict:
    """``options`` with the image size the user left out: the model's own (read from ``sd``)."""
    from audiotoken_cli.render.kind import default_image_size

    if options.get("width") is not None and options.get("height") is not None:
        return options
    side = default_image_size(sd)
    return {**options, "width": options.get("width") or side, "height": options.get("height") or side}


@dataclass(frozen=True)
class Nouns:
    """What a command makes of what: ("image", "sound") reads "4 images of 2 sounds written"."""

    output: str = "file"
    input: str = "sound"
    command: str = ""  # prefixes plain progress lines in logs: "generate: 3/8 images, ..."


def run_batch(arguments: list[str], process, verb: str, nouns: Nouns = Nouns(),
              output_dir: Path | None = None, footer: str | None = None) -> int:
    """Expand inputs (lazily), run ``process(sources, progress, roots, rank=, world=)`` over them
    with progress, print a summary in input order (arguments that found no file are rows too),
    then ``footer`` when anything was written.

    The files stream in as they are found; their number is counted in a background thread for
    the bar. Under torchrun / accelerate each rank processes its share and rank 0 alone reports:
    one progress display, one summary. Returns the exit code, the same on every rank: 0 when
    every file worked (or was skipped), 1 when any failed on any rank.
    """
    import threading
    from contextlib import nullcontext
    from itertools import chain

    from audiotoken_cli.cli.report import Reporter
    from audiotoken_cli.files import (
        FileResult,
        InputFile,
        expand_arguments,
        missing_inputs,
    )
    from audiotoken_cli.pipeline.sharding import Shards, launched_world

    started = time.monotonic()
    missing = missing_inputs(arguments)  # said before any model loads or downloads
    shards = Shards() if launched_world() > 1 else None
    main = shards is None or shards.main
    reporter = Reporter()
    order: dict[Path, int] = {}  # input position of every file and problem, for the summary
    roots: dict[Path, Path] = {}
    problems: list[tuple[int, FileResult]] = []
    if main:
        for error in missing.values():
            reporter.error(str(error))

    def files():
        for index, entry in enumerate(expand_arguments(arguments)):
            if isinstance(entry, InputFile):
                order[entry.path], roots[entry.path] = index, entry.root
                yield entry.path
            else:
                if main and entry.argument not in missing:
                    reporter.error(str(entry.error))
                problems.append((index, FileResult(Path(entry.argument), "failed",
                                                   message=str(entry.error))))

    stream = files()
    first = next(stream, None)
    results: list[FileResult] = []
    if first is not None:
        display = reporter.progress(verb, None, nouns.command) if main else nullcontext(_Silent())
        with display as progress:
            if main:
                threading.Thread(target=lambda: progress.set_total(_count_files(arguments)),
                                 daemon=True, name="audiotoken-count").start()
            rank, world = (0, 1) if shards is None else (shards.rank, shards.world)
            for result in process(chain([first], stream), progress, roots, rank=rank, world=world):
                if result.failed and main:
                    reporter.error(result.message)
                results.append(result)
                if shards is not None:
                    shards.file_done()
                progress.file_done(result)
            if shards is not None:
                shards.wait_for_others(progress.set_done)
    failed = len(problems) + sum(result.failed for result in results)
    if shards is not None:
        own = results
        results = shards.gather(results)
        if main:  # rank 0 printed its own failures as they came; now the others' (file i: rank i % W)
            for index, result in enumerate(results):
                if result.failed and index % shards.world:
                    reporter.error(result.message)
        # Input problems are the same on every rank: count them once.
        failed = shards.total_failures(sum(result.failed for result in own)) + len(problems)
        shards.close()
    if main:
        rows = problems + [(order.get(r.source, len(order)), r) for r in results]
        ordered = [result for _, result in sorted(rows, key=lambda row: row[0])]
        reporter.summary(ordered, nouns, time.monotonic() - started, output_dir)
        if footer and any(r.status == "written" for r in ordered):
            reporter.footer(footer)
    return EXIT_FAILED if failed else 0


class _Silent:
    """The progress display of ranks other than 0: they report through rank 0."""

    def __getattr__(self, _name):
        return lambda *args, **kwargs: None


def _count_files(arguments: list[str]) -> int:
    """How many files the arguments name: a second, cheap walk, for the bar's total."""

    from audiotoken_cli.files import InputFile, expand_arguments

    return sum(isinstance(entry, InputFile) for entry in expand_arguments(arguments))


def check_usage(check, options) -> None:
    """Run a validation.check_* function before any model loads; a bad value is one red line
    and exit code 2 (a usage error, as Typer's own option errors)."""
    from audiotoken_cli.cli.report import print_error
    from audiotoken_cli.errors import UsageError

    try:
        check(options)
    except UsageError as error:
        print_error(str(error))
        raise typer.Exit(2) from None


def guarded(ctx: typer.Context, body) -> int:
    """Run a command body; user errors become one red line (a traceback with --debug).

    Exit codes (docs/usage.md): 2 for a wrong command line (UsageError: an unknown preset, a
    device that is not there, options that do not fit together), 1 for anything that failed.
    """
    from audiotoken_cli.cli.report import print_error

    debug = ctx.obj.debug if isinstance(ctx.obj, AppState) else False
    try:
        with _sigterm_as_ctrl_c():
            return body()
    except AudioTokenError as error:
        if debug:
            traceback.print_exc()
        print_error(str(error))
        return EXIT_USAGE if isinstance(error, UsageError) else EXIT_FAILED
    except KeyboardInterrupt:
        print_error("interrupted; finished files are kept, nothing half-written is left")
        return 130


@contextlib.contextmanager
def _sigterm_as_ctrl_c():
    """SIGTERM (``kill``, a scheduler, a container stopping) is handled like Ctrl-C: the
    KeyboardInterrupt unwinds through write_atomically, which removes its temporary file, and
    train saves a checkpoint. Without this, SIGTERM ends the process where it stands."""

    def interrupt(*_):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
