"""PNG encoding and writing off the critical path: one thread, a bounded queue.

zlib-compressing a 512×512 PNG takes tens of milliseconds of CPU; done inline it would leave
the GPU idle between batches. The queue's bound gives back-pressure (at most ``limit`` finished
images wait in memory), and every file is still written atomically (temporary name, rename).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from pathlib import Path

from audiotoken_cli.files import write_atomically
from audiotoken_cli.pipeline.metadata import save_png

_STOP = object()


class PngWriter:
    """``submit`` returns at once (or waits while ``limit`` images are queued); ``close`` waits
    until every submitted image is on disk. ``done(path, error)`` runs in the writer thread."""

    def __init__(self, limit: int = 8):
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, limit))
        self._thread = threading.Thread(target=self._work, name="audiotoken-png", daemon=True)
        self._closed = False
        self._thread.start()

    def submit(self, path: Path, image, info: dict,
               done: Callable[[Path, BaseException | None], None]) -> None:
        self._queue.put((path, image, info, done))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            path, image, info, done = item
            try:
                write_atomically(path, lambda tmp, im=image, i=info: save_png(tmp, im, i))
            except Exception as error:  # reported as that file's failure; the run goes on
                done(path, error)
            else:
                done(path, None)
