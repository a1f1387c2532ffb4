"""Files in and out: expand the user's arguments to media files, name outputs, write atomically.

Nothing here knows about models. Output files are always written under a temporary name in the
target folder and renamed into place, so an interrupted or failed run never leaves a half-written
file that a later run would mistake for a finished one.
"""

from __future__ import annotations

import glob
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterable
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


def expand_arguments(arguments: Iterable[str]) -> list[InputFile | InputProblem]:
    """Files, folders and glob patterns to media files, in the order given, de-duplicated (a file
    keeps the root of the first argument that found it). An argument that yields nothing (a
    missing file, an empty folder, a pattern matching nothing) comes back as an error in its
    place, so the rest of the batch still runs and the summary can list it."""
    entries: list[InputFile | InputProblem] = []
    seen: set[Path] = set()
    for argument in arguments:
        try:
            found = _expand_one(argument)
        except InputError as error:
            entries.append(InputProblem(argument, error))
            continue
        root = _argument_root(argument)
        for path in found:
            if path not in seen:
                seen.add(path)
                entries.append(InputFile(path, path.parent if root is None else root))
    return entries


def expand_inputs(arguments: Iterable[str]) -> tuple[list[Path], list[InputError]]:
    """``expand_arguments`` as (files, errors)."""
    entries = expand_arguments(arguments)
    return ([e.path for e in entries if isinstance(e, InputFile)],
            [e.error for e in entries if isinstance(e, InputProblem)])


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


def _expand_one(argument: str) -> list[Path]:
    path = Path(argument).expanduser()
    if path.is_dir():
        media = _media_in_folder(path)
        if not media:
            raise InputError(f"{argument}: no audio or video files in this folder")
        return media
    if path.exists():
        return [path]
    if not GLOB_CHARACTERS & set(argument):
        # Said now, before any model loads or downloads for a run that has nothing to do.
        raise InputError(f"{path}: no such file")
    matches = sorted(glob.glob(os.path.expanduser(argument), recursive=True))
    media: list[Path] = []
    for match in map(Path, matches):
        if match.is_dir():
            media.extend(_media_in_folder(match))
        elif is_media_file(match):
            media.append(match)
    if not media:
        raise InputError(f"{argument}: matches no audio or video files")
    return media


def _media_in_folder(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and is_media_file(p)
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


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
    owner: dict[Path, Path] = {}
    errors: dict[Path, InputError] = {}
    for source, outputs in plan.items():
        for output in outputs:
            first = owner.setdefault(output.resolve(), source)
            if first != source:
                errors[source] = InputError(
                    f"{source}: its output {output.name} would overwrite the one for {first}; "
                    "rename one of them or process them separately"
                )
    return errors


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
    """``file_sha256`` remembered per (path, size, mtime) in the user cache, because model
    weights are gigabytes and their hashes go into every image's metadata."""
    import json

    from platformdirs import user_cache_dir

    path = Path(path).resolve()
    stat = path.stat()
    key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
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
