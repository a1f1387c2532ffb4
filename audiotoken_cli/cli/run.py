"""What every command shares: component resolution, the per-file batch loop, error reporting."""

from __future__ import annotations

import traceback

import typer

from audiotoken_cli.cli.app import AppState
from audiotoken_cli.errors import AudioTokenError


def components(model: str, given: dict, roles: tuple[str, ...], offline: bool, quiet: bool):
    """Local paths for the components: the options given, else the preset's, fetched when
    missing (with a one-line notice)."""
    from audiotoken_cli.cli.report import print_notice
    from audiotoken_cli.hub import FetchOptions, resolve_components

    fetch = FetchOptions(offline=offline, quiet=quiet,
                         notice=(lambda message: None) if quiet else print_notice)
    return resolve_components(model, given, roles, fetch)


def run_batch(arguments: list[str], process, verb: str) -> int:
    """Expand inputs (lazily), run ``process(sources, progress, rank=, world=)`` over them with a
    progress display, print a summary.

    The files stream in as they are found; their number is counted in a background thread for
    the bar. Under torchrun / accelerate each rank processes its share and rank 0 alone reports:
    one progress display, one summary. Returns the exit code, the same on every rank: 0 when
    every file worked (or was skipped), 1 when any failed on any rank.
    """
    import threading

    from audiotoken_cli.cli.report import Reporter
    from audiotoken_cli.files import InputError, expand_inputs, missing_inputs
    from audiotoken_cli.pipeline.sharding import Shards, launched_world

    missing = missing_inputs(arguments)
    present = [argument for argument in arguments if argument not in missing]
    shards = Shards() if launched_world() > 1 else None
    main = shards is None or shards.main
    reporter = Reporter()
    input_errors = list(missing.values())
    if main:
        for error in input_errors:
            reporter.error(str(error))

    def files():
        for item in expand_inputs(present):
            if isinstance(item, InputError):
                input_errors.append(item)
                if main:
                    reporter.error(str(item))
            else:
                yield item

    stream = files()
    first = next(stream, None)
    results = []
    if first is not None:
        from contextlib import nullcontext
        from itertools import chain

        display = reporter.progress(verb, total=None) if main else nullcontext(_Silent())
        with display as progress:
            if main:
                threading.Thread(target=lambda: progress.set_total(_count_files(present)),
                                 daemon=True, name="audiotoken-count").start()
            rank, world = (0, 1) if shards is None else (shards.rank, shards.world)
            for result in process(chain([first], stream), progress, rank=rank, world=world):
                if result.failed and main:
                    reporter.error(result.message)
                results.append(result)
                if shards is not None:
                    shards.file_done()
                progress.file_done(result)
            if shards is not None:
                shards.wait_for_others(progress.set_done)
    failed = len(input_errors) + sum(result.failed for result in results)
    if shards is not None:
        own = results
        results = shards.gather(results)
        if main:  # rank 0 printed its own failures as they came; now the others' (input i: rank i % W)
            for index, result in enumerate(results):
                if result.failed and index % shards.world:
                    reporter.error(result.message)
        # Input errors are the same on every rank: count them once.
        failed = shards.total_failures(sum(result.failed for result in own)) + len(input_errors)
        shards.close()
    if main:
        reporter.summary(results)
    return 1 if failed else 0


class _Silent:
    """The progress display of ranks other than 0: they report through rank 0."""

    def __getattr__(self, _name):
        return lambda *args, **kwargs: None


def _count_files(arguments: list[str]) -> int:
    """How many files the arguments name: a second, cheap walk, for the bar's total."""
    from pathlib import Path

    from audiotoken_cli.files import expand_inputs

    return sum(isinstance(item, Path) for item in expand_inputs(arguments))


def guarded(ctx: typer.Context, body) -> int:
    """Run a command body; user errors become one red line (a traceback with --debug)."""
    from audiotoken_cli.cli.report import print_error

    debug = ctx.obj.debug if isinstance(ctx.obj, AppState) else False
    try:
        return body()
    except AudioTokenError as error:
        if debug:
            traceback.print_exc()
        print_error(str(error))
        return 1
    except KeyboardInterrupt:
        print_error("interrupted; finished files are kept, nothing half-written is left")
        return 130
