"""The decoder process itself: ``python -m audiotoken_cli.audio.worker_process RESULTS_FD``.

``audio.worker`` starts this and watches it. It reads requests from stdin, answers on its
original stdout, and writes each decoded window into the shared results file (a memfd) at the
offset the parent chose, so a 640 KB window costs one copy each way instead of a pickle through
a pipe. Its imports are kept to what decoding needs (PyAV, numpy, ``audio.decode``): their load
time is what every short batch pays before its first file.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from multiprocessing.connection import Connection

TEST_FAULT_VARIABLE = "AUDIOTOKEN_TEST_DECODER_FAULT"
"""TEST-ONLY hook: "crash:<substring>" or "hang:<substring>" makes the worker kill itself with
SIGSEGV, or sleep for ever, on a file whose path contains <substring>. It lets the tests prove
that the watchdog survives a real crash and a real hang. Users have no reason to set it."""


def serve(requests: Connection, answers: Connection, results_fd: int) -> None:
    """Answer each request in order until told to stop or the parent goes away.

    Requests: ``("window", path, start, duration, offset)`` → ``("ok", samples)`` once the
    window is in the results file at ``offset``; ``("probe", path)`` → ``("info", MediaInfo)``.
    Either may answer ``("error", message)``. Each is preceded by ``("started", monotonic)``,
    so the parent's watchdog times one file, not the queue in front of it. Answers are a few
    bytes, so the pipe never fills and the worker can run ahead of a slow parent.
    """
    from audiotoken_cli.audio.decode import decode_window
    from audiotoken_cli.audio.media import read_info

    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    fault = os.environ.get(TEST_FAULT_VARIABLE, "")
    while True:
        try:
            request = requests.recv()
        except (EOFError, OSError):
            break
        if request is None:
            break
        try:
            answers.send(("started", time.monotonic()))
            _test_fault(fault, request[1])
            answers.send(_answer(request, results_fd, decode_window, read_info))
        except (BrokenPipeError, ConnectionError, OSError):
            break


def _answer(request: tuple, results_fd: int, decode_window, read_info) -> tuple[str, object]:
    from audiotoken_cli.config import Window
    from audiotoken_cli.errors import AudioTokenError

    kind, path = request[0], request[1]
    try:
        if kind == "probe":
            return "info", read_info(path)
        start, duration, offset = request[2:]
        samples = decode_window(path, Window(start, duration))
        _write_at(results_fd, memoryview(samples).cast("B"), offset)
        return "ok", samples.size
    except AudioTokenError as error:
        return "error", str(error)
    except Exception as error:  # noqa: BLE001 - a decoder bug must not end the batch
        # PyAV raises assorted exceptions on broken input; say which, but keep going.
        return "error", f"{path}: cannot decode ({type(error).__name__}: {error})"


def _write_at(fd: int, data: memoryview, offset: int) -> None:
    while data:
        written = os.pwrite(fd, data, offset)
        data, offset = data[written:], offset + written


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
    streaming pipeline consumes the stream from a thread of its own.)
    """
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _main(argv: list[str]) -> None:
    """Requests on stdin, answers on the original stdout. Anything else that writes to stdout
    (a stray print, a library's log) is sent to stderr instead, so it cannot corrupt them."""
    answers_fd = os.dup(1)
    os.dup2(2, 1)
    serve(Connection(0, writable=False), Connection(answers_fd, readable=False), int(argv[0]))


if __name__ == "__main__":
    _main(sys.argv[1:])
