"""What every command shares: component resolution, the per-file batch loop, error reporting."""

from __future__ import annotations

import contextlib
import signal
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
    """Expand inputs, run ``process`` over them with a progress bar, print a summary.

    Returns the exit code: 0 when every file worked (or was skipped), 1 when any failed.
    """
    from audiotoken_cli.cli.report import Reporter
    from audiotoken_cli.files import FileResult, expand_inputs

    sources, input_errors = expand_inputs(arguments)
    reporter = Reporter()
    results: list[FileResult] = []
    for error in input_errors:
        reporter.error(str(error))
    if sources:
        with reporter.progress(verb, total=len(sources)) as progress:
            for result in process(sources, progress):
                if result.failed:
                    reporter.error(result.message)
                results.append(result)
                progress.file_done(result)
    reporter.summary(results)
    failed = len(input_errors) + sum(result.failed for result in results)
    return 1 if failed else 0


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
    """Run a command body; user errors become one red line (a traceback with --debug)."""
    from audiotoken_cli.cli.report import print_error

    debug = ctx.obj.debug if isinstance(ctx.obj, AppState) else False
    try:
        with _sigterm_as_ctrl_c():
            return body()
    except AudioTokenError as error:
        if debug:
            traceback.print_exc()
        print_error(str(error))
        return 1
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
