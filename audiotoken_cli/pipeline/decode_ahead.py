"""Decoding in the background while the models work: a thread, a bounded queue.

The thread runs ``audio.worker.decode_windows`` (the one streaming entry point for decoding)
over the file requests, and hashes each sound for its images' metadata, so neither waits on the
UNet nor the UNet on them. The queue holds at most ``limit`` decoded windows: the look-ahead, and
so the memory, stays bounded however many files come.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import torch

from audiotoken_cli.audio.worker import decode_windows
from audiotoken_cli.config import Window


@dataclass
class Decoded:
    """A request with its window (files only), or the reason it failed, and the sound's hash."""

    request: object  # renderer.Request
    waveform: torch.Tensor | None = None
    error: str | None = None
    audio_sha256: str = ""


_END = object()


@dataclass
class _Raised:
    error: BaseException


def decode_ahead(requests: Iterable, window: Window, limit: int,
                 path_of: Callable[[object], Path | None],
                 hash_of: Callable[[object], str]) -> Iterator[Decoded]:
    """``Decoded`` per request, in order, produced up to ``limit`` ahead by a background thread.

    ``path_of(request)`` is the file to decode (None: nothing to decode, e.g. a waveform given
    in memory); ``hash_of(request)`` the sound's sha256 for the metadata ("" to skip).
    """
    ready: queue.Queue = queue.Queue(maxsize=max(1, limit))
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            with closing(_decoded(requests, window, limit, path_of, hash_of)) as stream:
                for item in stream:
                    if not put(item):
                        return
            put(_END)
        except BaseException as error:  # handed to the consumer, raised there
            put(_Raised(error))

    thread = threading.Thread(target=work, name="audiotoken-decode", daemon=True)
    thread.start()
    try:
        while True:
            item = ready.get()
            if item is _END:
                return
            if isinstance(item, _Raised):
                raise item.error
            yield item
    finally:
        stop.set()
        # A file mid-decode finishes (or times out) on its own; nothing is written there, so
        # the daemon thread may be left behind at exit.
        thread.join(timeout=1.0)


def _decoded(requests: Iterable, window: Window, limit: int, path_of: Callable,
             hash_of: Callable) -> Iterator[Decoded]:
    """Requests in order; files go through ``decode_windows`` (which may read ahead of us, so
    requests wait in ``pending`` until their file's window comes back)."""
    pending: deque = deque()

    def paths() -> Iterator:
        for request in requests:
            pending.append(request)
            if path_of(request) is not None:
                yield path_of(request)

    with closing(decode_windows(paths(), window, lookahead=limit)) as stream:
        for _source, result in stream:
            while True:
                request = pending.popleft()
                if path_of(request) is None:
                    yield Decoded(request, audio_sha256=hash_of(request))
                    continue
                if isinstance(result, torch.Tensor):
                    yield Decoded(request, result, audio_sha256=hash_of(request))
                else:
                    yield Decoded(request, error=str(result))
                break
    while pending:
        request = pending.popleft()
        yield Decoded(request, audio_sha256=hash_of(request))
