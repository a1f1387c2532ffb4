"""Files in and out: expand the user's arguments to media files, name outputs, write atomically.

Nothing here knows about models. Output files are always written under a temporary name in the
target folder and renamed into place, so an interrupted or failed run never leaves a half-written
file that a later run would mistake for a finished one.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from audiotoken_cli.audio.decode import is_media_file
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
    its place, so the rest of the batch still runs and the summary can list it. Lazy so that
    10,000 files, or a glob over a large tree, start rendering at once; only the set of paths seen
    so far is kept.
    """
    seen: set[Path] = set()
    for argument in arguments:
        root = _argument_root(argument)
        try:
            for path in _expand_one(argument):
                if path not in seen:
                    seen.add(path)
                    yield InputFile(path, path.parent if root is None else root)
        except InputError as error:
            yield InputProblem(argument, error)


def _argument_root(argument: str) -> Path | None:
    """The folder outputs mirror from: a folder itself, a pattern's leading fixed part
    (``data`` for ``data/**/*.mp4``); None for a single file (its own folder)."""
    path = Path(argument).expanduser()
    if path.is_dir():
        return path
    if path.exists() or not GLOB_CHARACTERS & set(argument):
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
        if not GLOB_CHARACTERS & set(argument) and not Path(argument).expanduser().exists():
            missing[argument] = InputError(f"{Path(argument).expanduser()}: no such file")
    return missing


def _expand_one(argument: str) -> Iterator[Path]:
    path = Path(argument).expanduser()
    if path.is_dir():
        if not _first(_media_in_folder(path)):
            raise InputError(f"{argument}: no audio or video files in this folder")
        yield from _media_in_folder(path)
        return
    if path.exists():
        yield path
        return
    if not GLOB_CHARACTERS & set(argument):
        raise InputError(f"{path}: no such file")
    found = False
    # iglob walks the tree as it goes; each match's order is the file system's, so a folder's
    # own files are still sorted (by _media_in_folder).
    for match in map(Path, glob.iglob(os.path.expanduser(argument), recursive=True)):
        media = _media_in_folder(match) if match.is_dir() else iter([match] * is_media_file(match))
        for file in media:
            found = True
            yield file
    if not found:
        raise InputError(f"{argument}: matches no audio or video files")


def _first(iterator: Iterator[Path]) -> bool:
    return next(iterator, None) is not None


def _media_in_folder(folder: Path) -> Iterator[Path]:
    """Media files under ``folder`` in sorted path order, walked lazily (one folder listed at a
    time), so the first file comes without listing the whole tree. Hidden entries are skipped."""
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            yield from _media_in_folder(Path(entry.path))
        elif entry.is_file() and is_media_file(Path(entry.path)):
            yield Path(entry.path)


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
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial",
                                         dir=target.parent)
    os.close(handle)
    try:
        write(Path(temporary))
        # mkstemp creates files private (0600); give the result the usual permissions.
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


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


def file_sha256(path: Path, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks so memory stays flat for large files."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cached_sha256(path: Path) -> str:
    """``file_sha256`` remembered per (path, size, mtime, inode, ctime) in the user cache, because
    model weights are gigabytes and their hashes go into every image's metadata. The inode and
    ctime are in the key because a user (or a tool) can set size and mtime back after replacing
    a file, but not those: a file replaced in place is always hashed again."""
    import json

    from platformdirs import user_cache_dir

    path = Path(path).resolve()
    stat = path.stat()
    key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ino}|{stat.st_ctime_ns}"
    cache_file = Path(user_cache_dir("audiotoken")) / "sha256.json"
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    if key not in cache:
        cache[key] = file_sha256(path)
        try:
            write_atomically(cache_file, lambda tmp: tmp.write_text(json.dumps(cache)))
        except OSError:
            pass  # a read-only cache only costs time
    return cache[key]


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
