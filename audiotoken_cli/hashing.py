"""File hashes for provenance: each image's and token file's metadata names the sound and the
models by sha256."""

from __future__ import annotations

import hashlib
from pathlib import Path

from audiotoken_cli.files import write_atomically


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
