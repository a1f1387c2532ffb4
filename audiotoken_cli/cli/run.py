"""What every command shares: component resolution, the per-file batch loop, error reporting."""

from __future__ import annotations

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


@dataclass(frozen=True)
class Nouns:
    """What a command makes of what: ("image", "sound") reads "4 images of 2 sounds written"."""

    output: str = "file"
    input: str = "sound"
    command: str = ""  # prefixes plain progress lines in logs: "generate: 3/8 images, ..."


def run_batch(arguments: list[str], process, verb: str, nouns: Nouns = Nouns(),
              output_dir: Path | None = None, footer: str | None = None) -> int:
    """Expand inputs, run ``process(sources, progress, roots)`` over them with progress, print a
    summary in input order (arguments that found no file are rows too), then ``footer`` when
    anything was written.

    Returns the exit code: 0 when every file worked (or was skipped), 1 when any failed.
    """
    from audiotoken_cli.cli.report import Reporter
    from audiotoken_cli.files import FileResult, InputFile, expand_arguments

    started = time.monotonic()
    entries = expand_arguments(arguments)
    reporter = Reporter()
    order: dict[Path, int] = {}
    rows: list[tuple[int, FileResult]] = []
    for index, entry in enumerate(entries):
        if isinstance(entry, InputFile):
            order[entry.path] = index
        else:
            reporter.error(str(entry.error))
            rows.append((index, FileResult(Path(entry.argument), "failed",
                                           message=str(entry.error))))
    sources = [e.path for e in entries if isinstance(e, InputFile)]
    roots = {e.path: e.root for e in entries if isinstance(e, InputFile)}
    if sources:
        with reporter.progress(verb, len(sources), nouns.command) as progress:
            for result in process(sources, progress, roots):
                if result.failed:
                    reporter.error(result.message)
                rows.append((order[result.source], result))
                progress.file_done(result)
    results = [result for _, result in sorted(rows, key=lambda row: row[0])]
    reporter.summary(results, nouns, time.monotonic() - started, output_dir)
    if footer and any(r.status == "written" for r in results):
        reporter.footer(footer)
    return EXIT_FAILED if any(r.failed for r in results) else 0


def guarded(ctx: typer.Context, body) -> int:
    """Run a command body; user errors become one red line (a traceback with --debug).

    Exit codes (docs/usage.md): 2 for a wrong command line (UsageError: an unknown preset, a
    device that is not there, options that do not fit together), 1 for anything that failed.
    """
    from audiotoken_cli.cli.report import print_error

    debug = ctx.obj.debug if isinstance(ctx.obj, AppState) else False
    try:
        return body()
    except AudioTokenError as error:
        if debug:
            traceback.print_exc()
        print_error(str(error))
        return EXIT_USAGE if isinstance(error, UsageError) else EXIT_FAILED
    except KeyboardInterrupt:
        print_error("interrupted; finished files are kept, nothing half-written is left")
        return 130
