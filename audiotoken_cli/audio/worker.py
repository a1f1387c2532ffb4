"""Decoding many files in order, as a stream: the one entry point every command decodes through.

FFmpeg is C: a hostile file can crash it (a segfault kills the whole process) or make it hang. So
files are decoded in a worker process under a watchdog. A file whose decoder dies or overruns the
time limit gets an error of its own, the worker is restarted, and the stream goes on.

The worker is a fresh interpreter (``python -m audiotoken_cli.audio.worker``, fork then exec at
once), never a plain fork: the caller usually holds torch threads, and forking a process with
threads can deadlock the child. multiprocessing's "spawn" and "forkserver" would re-import the
caller's ``__main__`` in every worker, which is slow and can fail. The worker imports PyAV and
numpy only, and sends numpy arrays back over its stdout pipe.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

from audiotoken_cli.config import Window
from audiotoken_cli.errors import AudioTokenError, InputError

DEFAULT_TIMEOUT_SECONDS = 60.0
"""How long one file may take to decode before it is reported and skipped."""

TEST_FAULT_VARIABLE = "AUDIOTOKEN_TEST_DECODER_FAULT"
"""TEST-ONLY hook: "crash:<substring>" or "hang:<substring>" makes the worker kill itself with
SIGSEGV, or sleep for ever, on a file whose path contains <substring>. It lets the tests prove
that the watchdog survives a real crash and a real hang. Users have no reason to set it."""


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
    pending: deque[Path] = deque()
    source_iter = iter(sources)
    worker = _Worker(window)
    try:
        exhausted = False
        while True:
            while not exhausted and len(pending) < max(1, lookahead):
                source = next(source_iter, None)
                if source is None:
                    exhausted = True
                    break
                pending.append(source)
                worker.submit(source)
            if not pending:
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
                for source in pending:  # the new worker has none of them
                    worker.submit(source)
            yield head, result
    finally:
        worker.stop()


class _Worker:
    """One decoder process, its pipe, and what the parent knows of its progress."""

    def __init__(self, window: Window):
        self.window = window
        self.needs_restart = False
        self.crashed = False
        self._start()

    def _start(self) -> None:
        package_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "audiotoken_cli.audio.worker",
             repr(self.window.start), repr(self.window.duration)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        self.requests = Connection(os.dup(self.process.stdin.fileno()), readable=False)
        self.conn = Connection(os.dup(self.process.stdout.fileno()), writable=False)
        self.process.stdin.close()
        self.process.stdout.close()
        self.started_at: float | None = None
        self.last_message = time.monotonic()
        self.needs_restart = False
        self.crashed = False

    def submit(self, source: Path) -> None:
        try:
            self.requests.send(str(source))
        except (BrokenPipeError, ConnectionError, OSError):
            pass  # the worker is dead; result_for notices and reports it

    def result_for(self, source: Path, timeout: float) -> np.ndarray | AudioTokenError:
        """Wait for the worker's answer about ``source`` (the oldest file it holds)."""
        while True:
            deadline = (self.started_at if self.started_at is not None
                        else self.last_message) + timeout
            wait = max(0.0, deadline - time.monotonic())
            try:
                ready = self.conn.poll(min(wait, 0.5))
                message = self.conn.recv() if ready else None
            except (EOFError, ConnectionError, OSError):
                return self._crashed(source)
            if message is None:
                if self.process.poll() is not None:
                    return self._crashed(source)
                if time.monotonic() >= deadline:
                    self.needs_restart = True
                    return InputError(f"{source}: decoding took longer than {timeout:g} s; "
                                      "skipped")
                continue
            self.last_message = time.monotonic()
            kind, payload = message
            if kind == "started":
                self.started_at = payload
                continue
            self.started_at = None
            if kind == "ok":
                return payload
            return InputError(payload)

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


def _serve(requests: Connection, conn: Connection, window: Window) -> None:
    """The worker: decode each path it is sent, in order, and send back the array or the error.

    A sender thread writes answers while the main thread decodes the next file, so the worker
    can run ``lookahead`` files ahead of a slow consumer.
    """
    import queue

    from audiotoken_cli.audio.decode import decode_window

    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    answers: queue.Queue = queue.Queue()
    sender = threading.Thread(target=_send_answers, args=(conn, answers), daemon=True)
    sender.start()
    fault = os.environ.get(TEST_FAULT_VARIABLE, "")
    while True:
        try:
            path = requests.recv()
        except (EOFError, OSError):
            break
        if path is None:
            break
        answers.put(("started", time.monotonic()))
        _test_fault(fault, path)
        answers.put(_decode_one(decode_window, path, window))
    answers.put(None)
    sender.join(timeout=1)


def _decode_one(decode_window, path: str, window: Window) -> tuple[str, object]:
    try:
        return "ok", decode_window(path, window)
    except AudioTokenError as error:
        return "error", str(error)
    except Exception as error:  # noqa: BLE001 - a decoder bug must not end the batch
        # PyAV raises assorted exceptions on broken input; say which, but keep going.
        return "error", f"{path}: cannot decode ({type(error).__name__}: {error})"


def _send_answers(conn, answers) -> None:
    while (answer := answers.get()) is not None:
        try:
            conn.send(answer)
        except (BrokenPipeError, ConnectionError, OSError):
            return


def _test_fault(fault: str, path: str) -> None:
    """The TEST-ONLY hook described at ``TEST_FAULT_VARIABLE``."""
    kind, _, needle = fault.partition(":")
    if not needle or needle not in path:
        return
    if kind == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)
    elif kind == "hang":
        while True:
            time.sleep(3600)


def _die_with_parent() -> None:
    """End this worker soon after its parent dies, even by SIGKILL, even while FFmpeg hangs.

    A closed stdin ends a worker that is waiting; this thread covers one stuck in a decoder.
    (PR_SET_PDEATHSIG would fire when the parent *thread* that started us exits, and the
    streaming pipeline consumes this generator from a thread of its own.)
    """
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _main(argv: list[str]) -> None:
    """Worker entry point: requests on stdin, answers on the original stdout. Anything else
    that writes to stdout (a stray print, a library's log) is sent to stderr instead, so it
    cannot corrupt the answers."""
    answers_fd = os.dup(1)
    os.dup2(2, 1)
    window = Window(float(argv[0]), float(argv[1]))
    _serve(Connection(0, writable=False), Connection(answers_fd, readable=False), window)


if __name__ == "__main__":
    _main(sys.argv[1:])
