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


def expand_inputs(arguments: Iterable[str]) -> tuple[list[Path], list[InputError]]:
    """Turn files, folders and glob patterns into a de-duplicated, ordered list of files.

    Folders are searched recursively for audio and video files. Patterns are expanded here too,
    for shells (and Windows) that pass them through unexpanded. Problems come back as errors, one
    per argument, so the rest of the batch still runs.
    """
    found: list[Path] = []
    errors: list[InputError] = []
    for argument in arguments:
        try:
            found.extend(_expand_one(argument))
        except InputError as error:
            errors.append(error)
    unique = list(dict.fromkeys(found))
    return unique, errors


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


def output_path(source: Path, suffix: str, output_dir: Path | None) -> Path:
    """``<stem><suffix>`` beside the source, or inside ``output_dir``."""
    folder = output_dir if output_dir is not None else source.parent
    return folder / f"{source.stem}{suffix}"


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
