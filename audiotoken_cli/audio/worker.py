"""Decoding many files in order, as a stream: the one entry point every command decodes through.

FFmpeg is C: a hostile file can crash it (a segfault kills the whole process) or make it hang. So
files are decoded in a worker process under a watchdog. A file whose decoder dies or overruns the
time limit gets an error of its own, the worker is restarted, and the stream goes on.

The worker is a fresh interpreter (``python -m audiotoken_cli.audio.worker_process``, fork then
exec at once), never a plain fork: the caller usually holds torch threads, and forking a process
with threads can deadlock the child. multiprocessing's "spawn" and "forkserver" would re-import
the caller's ``__main__`` in every worker, which is slow and can fail. Requests and answers are
small messages over its stdin and stdout; decoded windows come back through a shared file in
memory (a memfd), one copy each way, instead of a 640 KB pickle through the pipe.

Starting the interpreter and importing PyAV and numpy takes a fifth to half a second. A caller
that is about to load models calls ``prestart()`` first: the worker then starts while the models
load, and the stream that follows (and every later one in the process) uses it.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import NamedTuple

import numpy as np

from audiotoken_cli.audio.worker_process import TEST_FAULT_VARIABLE
from audiotoken_cli.config import Window
from audiotoken_cli.errors import AudioTokenError, InputError

__all__ = ["DEFAULT_TIMEOUT_SECONDS", "TEST_FAULT_VARIABLE", "decode_arrays", "decode_each",
           "decode_windows", "prestart", "probe_each", "stop_prestarted"]

DEFAULT_TIMEOUT_SECONDS = 60.0
"""How long one file may take to decode before it is reported and skipped."""


class _Job(NamedTuple):
    """One request: a window of ``path`` to decode, or (window None) its ``MediaInfo``."""

    path: Path
    window: Window | None


def decode_windows(sources: Iterable[Path], window: Window, *, lookahead: int = 4,
                   timeout: float = DEFAULT_TIMEOUT_SECONDS):
    """Yield ``(source, waveform (S,) float32 16 kHz)`` or ``(source, error)`` per source, in order.

    ``sources`` is consumed lazily. ``lookahead`` bounds how many files are handed to the worker
    ahead of the consumer; ``timeout`` bounds one file's decoding. A failure, a decoder crash or a
    hang included, is yielded as an ``AudioTokenError``, never raised, so one bad file cannot stop
    the stream. Closing the generator (or an exception in the consumer) stops the worker.
    """
    import torch

    for source, result in decode_arrays(sources, window, lookahead=lookahead, timeout=timeout):
        yield source, result if isinstance(result, AudioTokenError) else torch.from_numpy(result)


def decode_arrays(sources: Iterable[Path], window: Window, *, lookahead: int = 4,
                  timeout: float = DEFAULT_TIMEOUT_SECONDS
                  ) -> Iterator[tuple[Path, np.ndarray | AudioTokenError]]:
    """``decode_windows`` with numpy arrays: what the worker sends, without importing torch."""
    jobs = (_Job(Path(source), window) for source in sources)
    for job, result in _stream(jobs, lookahead, timeout):
        yield job.path, result


def decode_each(windows: Iterable[tuple[Path, Window]], *, lookahead: int = 4,
                timeout: float = DEFAULT_TIMEOUT_SECONDS
                ) -> Iterator[tuple[tuple[Path, Window], np.ndarray | AudioTokenError]]:
    """``decode_arrays`` with a window of its own per request (a video's keyframes, the onset
    intervals): ``((path, window), array (S,) or error)`` in order."""
    jobs = (_Job(Path(path), window) for path, window in windows)
    for job, result in _stream(jobs, lookahead, timeout):
        yield (job.path, job.window), result


def probe_each(sources: Iterable[Path], *, lookahead: int = 4,
               timeout: float = DEFAULT_TIMEOUT_SECONDS):
    """``(source, MediaInfo or error)`` per source, in order, read in the worker
    (see ``audio.media.probe``)."""
    jobs = (_Job(Path(source), None) for source in sources)
    for job, result in _stream(jobs, lookahead, timeout):
        yield job.path, result


def _stream(jobs: Iterable[_Job], lookahead: int, timeout: float):
    pending: deque[_Job] = deque()
    job_iter = iter(jobs)
    worker = _take_worker()
    finished = False
    try:
        exhausted = False
        while True:
            while not exhausted and len(pending) < max(1, lookahead):
                job = next(job_iter, None)
                if job is None:
                    exhausted = True
                    break
                pending.append(job)
                worker.submit(job)
            if not pending:
                finished = True
                return
            head = pending.popleft()
            result = worker.result_for(head, timeout)
            replaced = worker.needs_restart
            if worker.crashed and pending:
                # The worker answers in order, but may die on a later file before its answer
                # about ``head`` left: decode ``head`` alone in a fresh worker to be sure.
                worker.restart()
                worker.submit(head)
                result = worker.result_for(head, timeout)
            if worker.needs_restart:
                worker.restart()
            if replaced:
                for job in pending:  # the new worker has none of them
                    worker.submit(job)
            yield head, result
    finally:
        _give_back(worker, finished)


class _Worker:
    """One decoder process, its pipes, its results file, and what the parent knows of it."""

    def __init__(self):
        self.needs_restart = False
        self.crashed = False
        self._start()

    def _start(self) -> None:
        self.results_fd = _results_file()
        package_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "audiotoken_cli.audio.worker_process", str(self.results_fd)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, pass_fds=(self.results_fd,))
        self.requests = Connection(os.dup(self.process.stdin.fileno()), readable=False)
        self.conn = Connection(os.dup(self.process.stdout.fileno()), writable=False)
        self.process.stdin.close()
        self.process.stdout.close()
        self.owner = os.getpid()  # a forked child must not talk to its parent's worker
        self.fault = os.environ.get(TEST_FAULT_VARIABLE, "")
        self.in_flight: deque[tuple[int, int] | None] = deque()  # (offset, samples) per job
        self.started_at: float | None = None
        self.last_message = time.monotonic()
        self.needs_restart = False
        self.crashed = False

    def usable(self) -> bool:
        """Alive, idle, this process's, and started under the current test-fault setting."""
        return (self.owner == os.getpid() and self.process.poll() is None
                and not self.needs_restart and not self.in_flight
                and self.fault == os.environ.get(TEST_FAULT_VARIABLE, ""))

    def submit(self, job: _Job) -> None:
        if not self.in_flight:  # the watchdog times from here, not from an idle spell
            self.last_message = time.monotonic()
        if job.window is None:
            self.in_flight.append(None)
            request: tuple = ("probe", str(job.path))
        else:
            samples = job.window.num_samples
            offset = self._free_offset(samples * 4)
            self.in_flight.append((offset, samples))
            request = ("window", str(job.path), job.window.start, job.window.duration, offset)
        try:
            self.requests.send(request)
        except (BrokenPipeError, ConnectionError, OSError):
            pass  # the worker is dead; result_for notices and reports it

    def _free_offset(self, size: int) -> int:
        """First place in the results file clear of every window still in flight (at most
        ``lookahead`` of them), so the file stays about that many windows long."""
        taken = sorted((offset, offset + count * 4) for offset, count in
                       filter(None, self.in_flight))
        for candidate in [0] + [end for _, end in taken]:
            if all(candidate + size <= begin or candidate >= end for begin, end in taken):
                return candidate
        raise AssertionError("the end of the last window is always free")

    def result_for(self, job: _Job, timeout: float):
        """Wait for the worker's answer about ``job`` (the oldest one it holds)."""
        while True:
            deadline = (self.started_at if self.started_at is not None
                        else self.last_message) + timeout
            wait = max(0.0, deadline - time.monotonic())
            try:
                ready = self.conn.poll(min(wait, 0.5))
                message = self.conn.recv() if ready else None
            except (EOFError, ConnectionError, OSError):
                return self._crashed(job.path)
            if message is None:
                if self.process.poll() is not None:
                    return self._crashed(job.path)
                if time.monotonic() >= deadline:
                    self.needs_restart = True
                    return InputError(f"{job.path}: decoding took longer than {timeout:g} s; "
                                      "skipped")
                continue
            self.last_message = time.monotonic()
            kind, payload = message
            if kind == "started":
                self.started_at = payload
                continue
            self.started_at = None
            slot = self.in_flight.popleft()
            if kind == "ok":
                return self._read_window(job, slot, payload)
            if kind == "info":
                return payload
            return InputError(payload)

    def _read_window(self, job: _Job, slot: tuple[int, int], samples: int):
        offset, expected = slot
        if samples != expected:
            return InputError(f"{job.path}: the decoder returned {samples} samples, not "
                              f"{expected}; skipped")
        window = np.empty(expected, dtype=np.float32)
        _read_at(self.results_fd, memoryview(window).cast("B"), offset)
        return window

    def _crashed(self, source: Path) -> InputError:
        try:
            code = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self.needs_restart = self.crashed = True
        if code is not None and code < 0:
            return InputError(f"{source}: the decoder crashed (signal {-code}); skipped")
        return InputError(f"{source}: the decoder stopped unexpectedly (exit code {code}); "
                          "skipped")

    def restart(self) -> None:
        self.stop()
        self._start()

    def stop(self) -> None:
        """End the worker now: ask, then kill. Never leaves a process behind."""
        try:
            self.requests.send(None)
        except (BrokenPipeError, ConnectionError, OSError):
            pass
        self.requests.close()
        self.conn.close()
        try:
            self.process.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.results_fd >= 0:
            os.close(self.results_fd)
            self.results_fd = -1


def _results_file() -> int:
    """A file in memory for decoded windows: a memfd on Linux, an unlinked temporary file
    elsewhere (both are shared by fd and freed when the last holder closes them)."""
    if hasattr(os, "memfd_create"):
        return os.memfd_create("audiotoken-windows", os.MFD_CLOEXEC)
    with tempfile.TemporaryFile() as handle:
        return os.dup(handle.fileno())


def _read_at(fd: int, buffer: memoryview, offset: int) -> None:
    while buffer:
        count = os.preadv(fd, [buffer], offset)
        if count <= 0:
            raise InputError("the decoder's results file ended early")  # cannot happen
        buffer, offset = buffer[count:], offset + count


# A worker started ahead of need (``prestart``): the next stream takes it, and gives it back
# when it ends cleanly, so every later stream and probe in this process finds it running.
_prestarted: _Worker | None = None
_prestarted_lock = threading.Lock()


def prestart() -> None:
    """Start the decoder worker now, in the background, for the next stream in this process.

    Call it before loading models: the interpreter start and PyAV import (a fifth to half a
    second) then overlap the load instead of delaying the first file. The worker stays for
    later streams and probes until ``stop_prestarted()`` or the end of the process. Each file
    is still decoded in that separate process under the same watchdog; a crash or a hang
    replaces it exactly as in a stream that started its own.
    """
    global _prestarted
    with _prestarted_lock:
        if _prestarted is not None and _prestarted.usable():
            return
        stale, _prestarted = _prestarted, _Worker()
    if stale is not None and stale.owner == os.getpid():
        stale.stop()


def stop_prestarted() -> None:
    """End the worker ``prestart`` started, if any (it also ends with this process)."""
    global _prestarted
    with _prestarted_lock:
        worker, _prestarted = _prestarted, None
    if worker is not None and worker.owner == os.getpid():
        worker.stop()


def _take_worker() -> _Worker:
    global _prestarted
    with _prestarted_lock:
        worker, _prestarted = _prestarted, None
    if worker is not None and worker.usable():
        worker.kept = True
        return worker
    if worker is not None and worker.owner == os.getpid():
        worker.stop()
    return _Worker()


def _give_back(worker: _Worker, finished: bool) -> None:
    """A kept worker that finished its stream cleanly waits for the next; any other stops."""
    global _prestarted
    if finished and getattr(worker, "kept", False) and worker.usable():
        with _prestarted_lock:
            if _prestarted is None:
                _prestarted = worker
                return
    worker.stop()


atexit.register(stop_prestarted)
