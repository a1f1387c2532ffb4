"""Where the app keeps files: one private root per server, one folder per browser session.

The root is gradio's own upload and cache folder too (``GRADIO_TEMP_DIR``), so gradio serves the
PNGs and MP4s we write in place instead of copying them elsewhere, and removing the root at
shutdown removes every upload and output. A session's folder goes when its browser tab closes.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from audiotoken_cli.errors import InputError, UsageError


@dataclass
class Limits:
    """What one upload may be: bytes on disk, and seconds of media (read from the container,
    before anything is decoded)."""

    max_upload_mb: float = 200.0
    max_duration: float = 600.0

    @property
    def max_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


@dataclass
class ServerFolders:
    root: Path
    limits: Limits = field(default_factory=Limits)
    _runs: dict = field(default_factory=dict)
    _ended: set = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def create(cls, limits: Limits) -> ServerFolders:
        return cls(Path(tempfile.mkdtemp(prefix="audiotoken-ui-")).resolve(), limits)

    def session(self, session_hash: str) -> Path:
        """This session's folder. The browser chooses the session id, so it is hashed: it can
        never become a path of its own (``../``, ``/etc``)."""
        name = hashlib.sha256(session_hash.encode()).hexdigest()[:24]
        folder = self.root / "sessions" / name
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def new_run(self, session_hash: str, kind: str) -> Path:
        """A fresh numbered subfolder (``generate-0003``), so a new run never overwrites the
        files that an earlier run's gallery still shows."""
        with self._lock:
            if session_hash in self._ended:
                raise UsageError("this browser session has ended; reload the page")
            number = self._runs.get(session_hash, 0) + 1
            self._runs[session_hash] = number
            folder = self.session(session_hash) / f"{kind}-{number:04d}"
            folder.mkdir()
        return folder

    def keep(self, session_hash: str, write) -> bool:
        """Run ``write()`` (which writes into this session's folder) unless the session has
        ended: a render that finishes after its tab closed must not bring the folder back."""
        with self._lock:
            if session_hash in self._ended:
                return False
            write()
            return True

    def discard_if_ended(self, session_hash: str, folder: Path) -> None:
        """For outputs written outside ``keep`` (a video, a token): gone if the tab closed."""
        with self._lock:
            if session_hash in self._ended:
                shutil.rmtree(folder, ignore_errors=True)

    def end_session(self, session_hash: str) -> None:
        with self._lock:
            self._ended.add(session_hash)
            self._runs.pop(session_hash, None)
            shutil.rmtree(self.session(session_hash), ignore_errors=True)

    def remove_all(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def checked_upload(self, path: str | None, what: str = "a sound") -> Path:
        """An uploaded file, after the checks that need no decoding: it lies under this server's
        root (gradio put it there; a request naming any other path is refused), its size and its
        duration are within the limits."""
        if not path:
            raise InputError(f"no file: upload {what} first")
        upload = Path(path).resolve()
        if not upload.is_relative_to(self.root) or not upload.is_file():
            raise InputError(f"{Path(path).name}: not an upload of this session")
        size = upload.stat().st_size
        if size > self.limits.max_bytes:
            raise InputError(f"{upload.name}: {size / 2**20:.0f} MB is over this server's upload "
                             f"limit of {self.limits.max_upload_mb:g} MB (--max-upload-mb)")
        duration = _probe_duration(upload)
        if duration is not None and duration > self.limits.max_duration:
            raise InputError(f"{upload.name}: {duration:.0f} s is longer than the "
                             f"{self.limits.max_duration:g} s this server accepts (--max-duration)")
        return upload


def _probe_duration(path: Path) -> float | None:
    """The media's duration from its container header (``audiotoken.probe``: no decoding)."""
    import audiotoken_cli as audiotoken

    return audiotoken.probe(path).duration
