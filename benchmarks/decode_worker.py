"""Overhead of decoding in a worker process: an in-process ``load_window`` loop against
``decode_windows`` over the same folder of short clips, side by side in one run.

Two worker figures: "cold", the stream starting its own worker inside the timed region (a
first batch with nothing to overlap the start with), and "pre-started", the worker started by
``prestart()`` while the caller loads its models (a one-second stand-in here, outside the timed
region), which is how ``generate`` runs.

    python benchmarks/decode_worker.py [--clips 200] [--seconds 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from factories import tone, write_audio

from audiotoken_cli.audio.decode import load_window
from audiotoken_cli.audio.worker import decode_windows, prestart, stop_prestarted
from audiotoken_cli.config import Window

MODEL_LOAD_STAND_IN_SECONDS = 1.0


def in_process(clips: list[Path], window: Window) -> float:
    began = time.perf_counter()
    for clip in clips:
        load_window(clip, window)
    return time.perf_counter() - began


def through_worker(clips: list[Path], window: Window, prestarted: bool) -> float:
    stop_prestarted()
    if prestarted:
        prestart()
        time.sleep(MODEL_LOAD_STAND_IN_SECONDS)  # the models would load here
    began = time.perf_counter()
    for _source, result in decode_windows(clips, window):
        assert not isinstance(result, Exception), result
    elapsed = time.perf_counter() - began
    stop_prestarted()
    return elapsed


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
        best = {"in": float("inf"), "cold": float("inf"), "warm": float("inf")}
        for _ in range(args.rounds):  # interleaved, best of each: less noise on a shared CPU
            best["in"] = min(best["in"], in_process(clips, window))
            best["cold"] = min(best["cold"], through_worker(clips, window, prestarted=False))
            best["warm"] = min(best["warm"], through_worker(clips, window, prestarted=True))
    per_clip = {key: value / args.clips * 1e3 for key, value in best.items()}
    print(f"{args.clips} clips of {args.seconds:g} s (mp3, 44.1 kHz stereo), 10 s window, "
          f"best of {args.rounds}")
    print(f"in-process load_window loop:        {best['in']:.2f} s ({per_clip['in']:.1f} ms/clip)")
    print(f"decode_windows, cold worker:        {best['cold']:.2f} s "
          f"({per_clip['cold']:.1f} ms/clip, worker start included)")
    print(f"decode_windows, pre-started worker: {best['warm']:.2f} s "
          f"({per_clip['warm']:.1f} ms/clip)")
    print(f"ratio cold worker / in-process:        {best['cold'] / best['in']:.2f}x")
    print(f"ratio pre-started worker / in-process: {best['warm'] / best['in']:.2f}x")


if __name__ == "__main__":
    main()
