"""Overhead of decoding in a worker process: an in-process ``load_window`` loop against
``decode_windows`` over the same folder of short clips, side by side in one run.

Two worker figures: "cold", the stream starting its own worker inside the timed region (a
first batch with nothing to overlap the start with), and "pre-started", the worker started by
``prestart()`` while the caller loads its models (a one-second stand-in here, outside the timed
region), which is how ``generate`` runs.

Besides wall time, each path's CPU time (the parent's plus the worker's, read from /proc on
Linux): on a shared machine the wall times swing with other jobs' load, while the CPU a path
spends does not.

    python benchmarks/decode_worker.py [--clips 200] [--seconds 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from factories import tone, write_audio

from audiotoken_cli.audio.decode import load_window
from audiotoken_cli.audio import worker as worker_module
from audiotoken_cli.audio.worker import decode_windows, prestart, stop_prestarted
from audiotoken_cli.config import Window

MODEL_LOAD_STAND_IN_SECONDS = 1.0


def in_process(clips: list[Path], window: Window) -> tuple[float, float]:
    """(wall, CPU) seconds of a plain loop in this process."""
    began, cpu = time.perf_counter(), time.process_time()
    for clip in clips:
        load_window(clip, window)
    return time.perf_counter() - began, time.process_time() - cpu


def through_worker(clips: list[Path], window: Window, prestarted: bool) -> tuple[float, float]:
    """(wall, CPU) seconds of ``decode_windows``; CPU is this process's plus the worker's,
    from the stream's start (the cold worker's start included) to its end."""
    stop_prestarted()
    if prestarted:
        prestart()
        time.sleep(MODEL_LOAD_STAND_IN_SECONDS)  # the models would load here
    kept = worker_module._prestarted
    before = _worker_cpu(kept) if kept else _children_cpu()
    began, cpu = time.perf_counter(), time.process_time()
    for _source, result in decode_windows(clips, window):
        assert not isinstance(result, Exception), result
    elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
    cpu += (_worker_cpu(kept) if kept else _children_cpu()) - before
    stop_prestarted()
    return elapsed, cpu


def _children_cpu() -> float:
    """CPU seconds of the ended (and waited-for) worker processes of this one."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _worker_cpu(worker) -> float:
    """CPU seconds a running worker has used so far (Linux: /proc/PID/stat utime + stime)."""
    fields = Path(f"/proc/{worker.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        clips = [write_audio(Path(folder) / f"c{i}.mp3", tone(args.seconds, 44100, 200 + i, 2),
                             rate=44100) for i in range(args.clips)]
        window = Window()
        paths = {"in": lambda: in_process(clips, window),
                 "cold": lambda: through_worker(clips, window, prestarted=False),
                 "warm": lambda: through_worker(clips, window, prestarted=True)}
        wall = dict.fromkeys(paths, float("inf"))
        cpu = dict.fromkeys(paths, float("inf"))
        for _ in range(args.rounds):  # interleaved, best of each: less noise on a shared CPU
            for key, run in paths.items():
                seconds, used = run()
                wall[key], cpu[key] = min(wall[key], seconds), min(cpu[key], used)
    names = {"in": "in-process load_window loop", "cold": "decode_windows, cold worker",
             "warm": "decode_windows, pre-started worker"}
    print(f"{args.clips} clips of {args.seconds:g} s (mp3, 44.1 kHz stereo), 10 s window, "
          f"best of {args.rounds}; load average {os.getloadavg()[0]:.1f}")
    print(f"{'path':36} {'wall':>7} {'ms/clip':>8} {'CPU':>7}")
    for key, name in names.items():
        print(f"{name:36} {wall[key]:6.2f}s {wall[key] / args.clips * 1e3:8.1f} {cpu[key]:6.2f}s")
    for key in ("cold", "warm"):
        print(f"ratio {names[key].split(', ')[1]} / in-process: wall {wall[key] / wall['in']:.2f}x, "
              f"CPU {cpu[key] / cpu['in']:.2f}x")


if __name__ == "__main__":
    main()
