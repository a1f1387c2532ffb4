"""10,000 seeded mutations of real wav/mp3/flac/ogg/mp4 files through ``decode_arrays``; prints
counts by outcome. Any NaN/inf waveform, non-InputError or escaped exception is a failure.

    python benchmarks/fuzz_decode.py [--cases 10000] [--seed 0]
"""

from __future__ import annotations

import argparse
import collections
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fuzz_cases import seed_files, write_cases

from audiotoken_cli.audio.worker import decode_arrays
from audiotoken_cli.config import Window
from audiotoken_cli.errors import InputError


def outcome(source: Path, result) -> str:
    if isinstance(result, np.ndarray):
        return "decoded" if np.isfinite(result).all() else "FAIL: NaN/inf waveform"
    if not isinstance(result, InputError) or not str(result).startswith(f"{source}: "):
        return f"FAIL: {type(result).__name__}"
    reason = str(result)[len(str(source)) + 2:]
    return "error: " + re.sub(r"\(.*", "(…)", reason)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    counts: collections.Counter[str] = collections.Counter()
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        seeds = seed_files(Path(folder) / "seeds")
        cases = write_cases(Path(folder) / "cases", seeds, args.cases, args.seed)
        for source, result in decode_arrays(cases, Window(0.0, 2.0), timeout=30):
            counts[outcome(source, result)] += 1
    for name, count in counts.most_common():
        print(f"{count:6d}  {name}")
    failures = sum(c for name, c in counts.items() if name.startswith("FAIL"))
    print(f"{args.cases} cases in {time.perf_counter() - began:.0f} s; {failures} failures")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
