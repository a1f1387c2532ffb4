"""Start-up time: `audiotoken --help` against `python -c "import torch"`, side by side.

The target: help (and --version, and argument errors) answer in at most half the time torch takes
to import, because the CLI imports torch only inside the commands that need it. Runs each command
alternately N times in fresh processes and prints the medians and their ratio.

    python benchmarks/startup.py [--runs 10]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def timed(command: list[str]) -> float:
    """Wall time of one run; the exit code is not checked (an argument error exits 2)."""
    started = time.perf_counter()
    subprocess.run(command, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    runs = parser.parse_args().runs
    installed = shutil.which("audiotoken", path=str(Path(sys.executable).parent))
    cli = [installed] if installed else [sys.executable, "-m", "audiotoken_cli"]
    commands = {
        "audiotoken --help": cli + ["--help"],
        "audiotoken generate --help": cli + ["generate", "--help"],
        "audiotoken embed (argument error)": cli + ["embed"],
        'python -c "import torch"': [sys.executable, "-c", "import torch"],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):  # alternate, so load on the machine hits every command alike
        for name, command in commands.items():
            times[name].append(timed(command))
    torch_median = statistics.median(times['python -c "import torch"'])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<36} median {median * 1000:7.0f} ms   ratio to torch import "
              f"{median / torch_median:5.2f}")


if __name__ == "__main__":
    main()
