"""Files in and out: expand the user's arguments to media files, name outputs, write atomically.

Nothing here knows about models. Output files are always written under a temporary name in the
target folder and renamed into place, so an interrupted or failed run never leaves a half-written
file that a later run would mistake for a finished one.
"""

from __future__ import annotations

import errno
import glob
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from audiotoken_cli.audio.decode import check_regular_file, is_media_file
from audiotoken_cli.errors import InputError

GLOB_CHARACTERS = set("*?[")


@dataclass(frozen=True)
class FileResult:
    """What happened to one input file; the CLI turns these into progress and the summary."""

    source: Path
    status: str  # "written" | "skipped" | "failed"
    outputs: tuple[Path, ...] = ()
    message: str = ""

    @property
    def failed(self) -> bool:
        return self.status == "failed"


@dataclass(frozen=True)
class InputFile:
    """A media file found from the user's arguments, with the folder its output path is measured
    from: the folder given, the fixed part of a glob pattern, or the file's own folder."""

    path: Path
    root: Path


@dataclass(frozen=True)
class InputProblem:
    """An argument that yields no file: a missing file, an empty folder, a glob matching nothing."""

    argument: str
    error: InputError


def expand_arguments(arguments: Iterable[str]) -> Iterator[InputFile | InputProblem]:
    """Files, folders and glob patterns to media files, lazily, in the order given, de-duplicated
    (a file keeps the root of the first argument that found it).

    Folders are searched recursively; patterns are expanded here too, for shells (and Windows)
    that pass them through unexpanded. An argument that yields nothing comes back as a problem in
    its place, and so does each path inside a folder that cannot be looked at (an unreadable
    subfolder, a symbolic link loop named like media), so the rest of the batch still runs and
    the summary can list it. Lazy so that 10,000 files, or a glob over a large tree, start
    rendering at once; only the set of paths seen so far is kept.
    """
    seen: set[Path] = set()
    for argument in arguments:
        root = _argument_root(argument)
        try:
            for found in _expand_one(argument):
                if isinstance(found, _Unusable):
                    yield InputProblem(str(found.path), found.error)
                elif found not in seen:
                    seen.add(found)
                    yield InputFile(found, found.parent if root is None else root)
        except InputError as error:
            yield InputProblem(argument, error)


@dataclass(frozen=True)
class _Unusable:
    """A path found inside a folder that cannot be looked at: reported in its place."""

    path: Path
    error: InputError


def _is_dir(path: Path) -> bool:
    """``Path.is_dir`` that never raises: a path we may not look at is not a folder to search."""
    try:
        return path.is_dir()
    except OSError:
        return False


def _exists(path: Path) -> bool:
    """Whether ``path`` names something, even something we may not look at (a file in an
    unreadable folder is there: the decoder then says "permission denied" with its name)."""
    try:
        return path.exists()
    except OSError:
        return True


def _argument_root(argument: str) -> Path | None:
    """The folder outputs mirror from: a folder itself, a pattern's leading fixed part
    (``data`` for ``data/**/*.mp4``); None for a single file (its own folder)."""
    path = Path(argument).expanduser()
    if _is_dir(path):
        return path
    if _exists(path) or not GLOB_CHARACTERS & set(argument):
        return None
    fixed = []
    for part in path.parts:
        if GLOB_CHARACTERS & set(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def missing_inputs(arguments: Iterable[str]) -> dict[str, InputError]:
    """Plain file arguments that do not exist: cheap to check, so said before any model loads
    or downloads for a run that has nothing to do."""
    missing = {}
    for argument in arguments:
        if not GLOB_CHARACTERS & set(argument) and not _exists(Path(argument).expanduser()):
            missing[argument] = _missing(Path(argument).expanduser())
    return missing


def _missing(path: Path) -> InputError:
    """Why a path that does not exist is not there: a broken link or a link loop says so."""
    if os.path.islink(path):
        try:
            check_regular_file(path)
        except InputError as error:
            return error
    return InputError(f"{path}: no such file")


def _expand_one(argument: str) -> Iterator[Path | _Unusable]:
    path = Path(argument).expanduser()
    if _is_dir(path):
        if not _first(_media_in_folder(path)):
            raise InputError(f"{argument}: no audio or video files in this folder")
        yield from _media_in_folder(path)
        return
    if _exists(path):
        yield path
        return
    if not GLOB_CHARACTERS & set(argument):
        raise _missing(path)
    found = False
    # iglob walks the tree as it goes; each match's order is the file system's, so a folder's
    # own files are still sorted (by _media_in_folder).
    for match in map(Path, glob.iglob(os.path.expanduser(argument), recursive=True)):
        media = _media_in_folder(match) if _is_dir(match) else iter([match] * is_media_file(match))
        for file in media:
            found = True
            yield file
    if not found:
        raise InputError(f"{argument}: matches no audio or video files")


def _first(iterator: Iterator[Path | _Unusable]) -> bool:
    return next(iterator, None) is not None


def _media_in_folder(folder: Path) -> Iterator[Path | _Unusable]:
    """Media files under ``folder`` in sorted path order, walked lazily (one folder listed at a
    time), so the first file comes without listing the whole tree. Hidden entries are skipped.

    A subfolder that cannot be listed, and an entry named like media that cannot be looked at
    (a symbolic link loop, a broken link), come back as ``_Unusable``: said, never skipped
    silently, and never the end of the walk."""
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError as error:
        yield _Unusable(folder, InputError(f"{folder}: this folder cannot be read "
                                           f"({os_reason(error)}); its files are skipped"))
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        path = Path(entry.path)
        try:
            is_dir = entry.is_dir()
            is_file = not is_dir and entry.is_file()
        except OSError as error:  # a symbolic link loop: stat fails
            if is_media_file(path):
                yield _Unusable(path, InputError(f"{path}: {_lookup_problem(error)}"))
            continue
        if is_dir:
            yield from _media_in_folder(path)
        elif is_file and is_media_file(path):
            yield path
        elif is_media_file(path) and entry.is_symlink() and not _exists(path):
            yield _Unusable(path, InputError(f"{path}: is a broken symbolic link"))


def _lookup_problem(error: OSError) -> str:
    if error.errno == errno.ELOOP:
        return "is a symbolic link loop"
    return f"cannot be read ({os_reason(error)})"


def os_reason(error: OSError) -> str:
    """An OS error's reason in a few words, for a one-line message."""
    if error.errno == errno.EACCES:
        return "permission denied"
    if error.errno == errno.ENOSPC:
        return "no space left on the disk"
    return error.strerror or str(error) or type(error).__name__


def mirrored_folder(source: Path, output_dir: Path | None, root: Path | None = None) -> Path:
    """The folder for a source's outputs: beside it, or under ``output_dir`` at the source's
    place relative to ``root`` (``data/rain/clip2.mp4`` from ``data/`` → ``OUT/rain/``), so equal
    names in different subfolders never collide. Every command that writes per-input files
    (generate, embed, video) names its folders with this."""
    if output_dir is None:
        return source.parent
    if root is None:
        return output_dir
    try:
        relative = source.parent.resolve().relative_to(Path(root).resolve())
    except ValueError:
        return output_dir
    return output_dir / relative


def output_path(source: Path, suffix: str, output_dir: Path | None,
                root: Path | None = None) -> Path:
    """``<stem><suffix>`` beside the source, or mirrored under ``output_dir``."""
    return mirrored_folder(source, output_dir, root) / f"{source.stem}{suffix}"


def find_collisions(plan: dict[Path, list[Path]]) -> dict[Path, InputError]:
    """Inputs whose outputs another input already claims (``a/x.wav`` and ``b/x.mp3`` into one
    ``-o`` folder, or ``x.wav`` beside ``x.mp3``). The first input keeps its name."""
    claims = OutputClaims()
    errors = {source: claims.claim(source, outputs) for source, outputs in plan.items()}
    return {source: error for source, error in errors.items() if error is not None}


class OutputClaims:
    """``find_collisions`` as the stream goes: each input claims its outputs in input order."""

    def __init__(self):
        self._owner: dict[Path, Path] = {}

    def claim(self, source: Path, outputs: Iterable[Path]) -> InputError | None:
        error = None
        for output in outputs:
            first = self._owner.setdefault(output.resolve(), source)
            if first != source and error is None:
                error = InputError(
                    f"{source}: its output {output.name} would overwrite the one for {first}; "
                    "rename one of them or process them separately"
                )
        return error


def write_atomically(target: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(temporary_path)`` then rename onto ``target``; on any failure, or Ctrl-C,
    the temporary file is removed and ``target`` is untouched."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{_fit(target.name, target.parent)}.",
                                         suffix=".partial", dir=target.parent)
    os.close(handle)
    try:
        write(Path(temporary))
        # mkstemp creates files private (0600); give the result the usual permissions.
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


PARTIAL_EXTRA = len(". .12345678.partial") - 1
"""Bytes a temporary name adds to the target's: the leading dot, a dot, mkstemp's 8 random
characters and ``.partial``."""


def name_max(folder: Path) -> int:
    """The longest file name, in bytes, that ``folder``'s file system takes (255 almost
    everywhere; pathconf answers for the folder, or its nearest existing parent)."""
    for candidate in (folder, *folder.parents):
        try:
            return os.pathconf(candidate, "PC_NAME_MAX")
        except (OSError, ValueError):
            continue
    return 255


def _fit(name: str, folder: Path) -> str:
    """``name`` cut (at a character boundary) so that its temporary name stays within the file
    system's limit: a 240-byte output name would otherwise fail on its 258-byte temporary."""
    room = name_max(folder) - PARTIAL_EXTRA
    encoded = os.fsencode(name)
    if len(encoded) <= room:
        return name
    return encoded[:room].decode("utf-8", errors="ignore") or "x"


def check_output_name(source: Path, target: Path) -> None:
    """``InputError`` naming ``source`` when its output's name is longer than the file system
    takes (a 250-byte input name plus ``_seed1.png``), before any work is spent on it."""
    length, limit = len(os.fsencode(target.name)), name_max(target.parent)
    if length > limit:
        raise InputError(f"{source}: its output name would be {length} bytes, more than the "
                         f"{limit} this file system takes; rename the file (or, for embed, "
                         "give --name)")


def output_error(source: Path, error: OSError) -> InputError:
    """An OS error met while looking at or writing ``source``'s output, as its one line."""
    where = f" {error.filename}" if error.filename else ""
    return InputError(f"{source}: cannot write its output{where} ({os_reason(error)})")


ATOMIC_PARTIAL = re.compile(r"^\..+\.[a-z0-9_]{8}\.partial$")
"""The temporary names ``write_atomically`` uses: ``.<target name>.<8 random chars>.partial``
(tempfile.mkstemp's alphabet). Only files of this pattern, or a caller's own, are ever removed."""

PROCESS_STARTED = time.time()
"""When this process started (its first import of this module): what a killed run left is older."""


def remove_stale_partials(folder: Path, started: float | None = None,
                          patterns: Iterable[re.Pattern] = (ATOMIC_PARTIAL,)) -> list[Path]:
    """Remove the temporary files (or folders) a killed run left in ``folder``: only names that
    match ``patterns`` (our own temporaries), and only last modified before ``started`` (default:
    this process's start), so a run writing beside us right now keeps its files. Returns them."""
    cutoff = PROCESS_STARTED if started is None else started
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed  # no folder yet, or not ours to list: nothing to clean
    for entry in entries:
        if not any(pattern.match(entry.name) for pattern in patterns):
            continue
        try:
            if entry.stat(follow_symlinks=False).st_mtime >= cutoff:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed.append(Path(entry.path))
        except OSError:
            pass  # gone already (another run cleaned it) or not removable: harmless
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ---------------------------------------------------------------------------------------------
# The per-file skeleton every batch command shares (generate, embed, video): sources read
# lazily in input order; every rank claims every file's outputs, so two inputs that would write
# the same output collide the same way whichever rank owns them; each output folder is cleared,
# once, of what a killed run left there; rank r of a torchrun takes the files whose input index
# is r modulo the world size.


@dataclass(frozen=True)
class Claimed:
    """One input file: its plan, whether it is this rank's, and the collision that stops it."""

    source: Path
    plan: object
    mine: bool
    collision: InputError | None


def claim_files(sources: Iterable[Path], plan_of: Callable[[Path], object],
                outputs_of: Callable[[object], list[Path]], rank: int = 0, world: int = 1
                ) -> Iterator[Claimed]:
    """Each source with its plan (``plan_of(source)``), in input order; ``outputs_of(plan)``
    names the files the plan writes."""
    claims = OutputClaims()
    cleaned: set[Path] = set()
    for index, source in enumerate(sources):
        plan = plan_of(source)
        outputs = outputs_of(plan)
        for folder in {path.parent for path in outputs} - cleaned:
            cleaned.add(folder)
            remove_stale_partials(folder)
        collision = claims.claim(source, outputs)
        yield Claimed(source, plan, index % world == rank, collision)
