"""Overhead of decoding in a worker process: an in-process ``load_window`` loop against
``decode_windows`` over the same folder of short clips, side by side in one run.

    python benchmarks/decode_worker.py [--clips 200] [--seconds 2]
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
from audiotoken_cli.audio.worker import decode_windows
from audiotoken_cli.config import Window


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
        best_in, best_worker = float("inf"), float("inf")
        for _ in range(args.rounds):  # alternate, keep the best of each: less noise
            began = time.perf_counter()
            for clip in clips:
                load_window(clip, window)
            best_in = min(best_in, time.perf_counter() - began)
            began = time.perf_counter()
            for _source, result in decode_windows(clips, window):
                assert not isinstance(result, Exception), result
            best_worker = min(best_worker, time.perf_counter() - began)
    print(f"{args.clips} clips of {args.seconds:g} s (mp3, 44.1 kHz stereo), 10 s window")
    print(f"in-process load_window loop: {best_in:.2f} s ({best_in / args.clips * 1e3:.1f} ms/clip)")
    print(f"decode_windows (worker):     {best_worker:.2f} s "
          f"({best_worker / args.clips * 1e3:.1f} ms/clip, worker start included)")
    print(f"ratio worker / in-process:   {best_worker / best_in:.2f}x")


if __name__ == "__main__":
    main()
