"""Benchmark: `audiotoken train` steps per second without and with ``--cache``.

Builds a small synthetic video set (solid-colour videos with tones, from tests/factories.py) and a
tiny random Stable Diffusion, then runs the library's own training loop twice in this process:
once computing BEATs features and VAE latents every step, once reading them from the cache.

    python benchmarks/train_cache.py                      # tiny BEATs (tests/data/tiny_beats.pt)
    python benchmarks/train_cache.py --beats full.pt      # a full-size BEATs checkpoint
    python benchmarks/train_cache.py --steps 20 --device cuda

How it measures:

* per-step time comes from RUN/metrics.jsonl: each line's ``samples_per_s`` is
  batch × accumulation / (seconds of that step), timed by the training loop around the step
  itself (drawing the examples, the frozen encoders or the cache read, forward, backward,
  optimiser). It leaves out writing the metrics line, checkpoints and sample grids, which are the
  same with and without the cache. The first ``--warmup`` steps (default 2) are skipped.
* the one-time cache build is timed separately, by wrapping ``FeatureCache.build``; it is not
  part of any step.
* as a cross-check, the wall-clock time between consecutive step callbacks is reported too
  (steps after the warm-up, excluding the last, whose interval includes the final checkpoint).

On a GPU the step timer does not synchronise the device explicitly; the loss is read back to the
host every micro-batch, which synchronises enough for a comparison of the two modes.

On a small, shared CPU, check that nothing else is running (the load average is printed before
and after): with every core busy elsewhere, PyTorch's OpenMP threads wait on each other and small
operations become hundreds of times slower, which swamps what is being measured. ``--threads 1``
is far less sensitive to that.

This is not a test: it lives outside tests/ and pytest does not collect it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # factories.py: write_video, tone, make_tiny_sd


def build_dataset(folder: Path, clips: int, seconds: float) -> Path:
    """``clips`` videos with sound in two labelled subfolders (the class names)."""
    from factories import tone, write_video

    colours = [(200, 40, 40), (40, 60, 200), (40, 180, 60), (220, 200, 40)]
    for i in range(clips):
        label = ("low", "high")[i % 2]
        (folder / label).mkdir(parents=True, exist_ok=True)
        freq = (330.0 if label == "low" else 880.0) * (1 + 0.05 * i)
        write_video(folder / label / f"clip{i}.mp4", tone(seconds, freq=freq, seed=i),
                    seconds=seconds, color=colours[i % len(colours)])
    return folder


def run_training(label: str, settings, warmup: int) -> dict:
    """Train with ``settings``; return per-step statistics and the cache build time."""
    import audiotoken_cli.training.loop as train_module
    from audiotoken_cli.training.loop import TrainEvents, train

    timings: dict[str, float] = {}
    original_build = train_module.FeatureCache.build.__func__

    def timed_build(cls, *args, **kwargs):
        started = time.perf_counter()
        try:
            return original_build(cls, *args, **kwargs)
        finally:
            timings["cache_build_s"] = time.perf_counter() - started

    stamps: list[float] = []
    events = TrainEvents(on_step=lambda metrics: stamps.append(time.perf_counter()))
    train_module.FeatureCache.build = classmethod(timed_build)
    started = time.perf_counter()
    try:
        run = train(settings, events)
    finally:
        train_module.FeatureCache.build = classmethod(original_build)
    total = time.perf_counter() - started

    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
             if line.strip()]
    per_sample = settings.batch_size * settings.grad_accum
    measured = [per_sample / line["samples_per_s"] for line in lines[warmup:]]
    if not measured:
        raise SystemExit(f"--steps must exceed --warmup ({warmup}) to measure anything")
    gaps = [b - a for a, b in zip(stamps[warmup:], stamps[warmup + 1:-1])]
    # stamps[k] is after step k+1; gaps between steps warmup+1 .. N-1 (the last holds the save)
    mean_step = statistics.mean(measured)
    return {
        "label": label,
        "steps_measured": len(measured),
        "step_s": mean_step,
        "step_s_stdev": statistics.stdev(measured) if len(measured) > 1 else 0.0,
        "steps_per_s": 1.0 / mean_step,
        "wall_steps_per_s": (1.0 / statistics.mean(gaps)) if gaps else float("nan"),
        "cache_build_s": timings.get("cache_build_s"),
        "total_s": total,
        "final_loss": lines[-1]["loss"],
    }


def _load() -> str:
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:  # not available on this platform
        return "n/a"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10, help="training steps per mode")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--beats", type=Path, default=REPO / "tests" / "data" / "tiny_beats.pt",
                        help="BEATs checkpoint in the official format (default: the tiny one)")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--audio-seconds", type=float, default=5.0)
    parser.add_argument("--clips", type=int, default=4, help="synthetic videos in the set")
    parser.add_argument("--clip-seconds", type=float, default=6.0)
    parser.add_argument("--windows-per-clip", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's own choice)")
    parser.add_argument("--warmup", type=int, default=2, help="first steps left out of timing")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where to write the data, model and runs (default: a temporary "
                        "folder, removed afterwards)")
    args = parser.parse_args(argv)
    if args.steps <= args.warmup:
        parser.error(f"--steps must be greater than --warmup ({args.warmup})")
    if not args.beats.is_file():
        parser.error(f"--beats {args.beats}: no such file")

    import torch
    from factories import make_tiny_sd

    from audiotoken_cli.config import RuntimeSettings, TrainSettings
    from audiotoken_cli.render.diffusion import quiet_libraries

    quiet_libraries()
    if args.threads:
        torch.set_num_threads(args.threads)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="train_cache_bench_"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        started = time.perf_counter()
        data = build_dataset(workdir / "data", args.clips, args.clip_seconds)
        sd = make_tiny_sd(workdir / "sd", text_width=32)
        print(f"setup: {args.clips} clips of {args.clip_seconds:g} s, tiny SD "
              f"({time.perf_counter() - started:.1f} s); BEATs {args.beats} "
              f"({args.beats.stat().st_size / 2**20:.1f} MiB); device {args.device}, "
              f"torch threads {torch.get_num_threads()}")
        print(f"each mode: {args.steps} steps of batch {args.batch_size} × accumulation "
              f"{args.grad_accum}, {args.resolution}px frames, {args.audio_seconds:g} s audio; "
              f"first {args.warmup} steps not timed")
        print(f"load average before: {_load()}")

        results = []
        for cache in (False, True):
            settings = TrainSettings(
                data=data, output=workdir / ("run-cache" if cache else "run-nocache"), sd=sd,
                audio_encoder=args.beats, audio_seconds=args.audio_seconds,
                size=(args.resolution, args.resolution), batch_size=args.batch_size,
                grad_accum=args.grad_accum, max_steps=args.steps, cache=cache,
                windows_per_clip=args.windows_per_clip, save_every=10**9, sample_every=0,
                overwrite=True, runtime=RuntimeSettings(device=args.device))
            shutil.rmtree(settings.output, ignore_errors=True)  # a fresh cache every time
            results.append(run_training("cache on " if cache else "cache off", settings,
                                        args.warmup))

        off, on = results
        print()
        print(f"{'mode':<10} {'steps/s':>8} {'s/step':>8} {'± sd':>7} {'wall steps/s':>13} "
              f"{'run total s':>12} {'final loss':>11}")
        for r in results:
            print(f"{r['label']:<10} {r['steps_per_s']:>8.3f} {r['step_s']:>8.3f} "
                  f"{r['step_s_stdev']:>7.3f} {r['wall_steps_per_s']:>13.3f} "
                  f"{r['total_s']:>12.1f} {r['final_loss']:>11.5f}")
        print(f"load average after:  {_load()} ({os.cpu_count()} CPUs)")
        ratio = on["steps_per_s"] / off["steps_per_s"]
        build = on["cache_build_s"] or 0.0
        saved = off["step_s"] - on["step_s"]
        print()
        print(f"steps/s without cache: {off['steps_per_s']:.3f}")
        print(f"steps/s with cache:    {on['steps_per_s']:.3f}")
        print(f"speed-up (with / without): {ratio:.2f}×")
        print(f"cache build (one-time, {args.clips} clips × {args.windows_per_clip} windows): "
              f"{build:.2f} s" + (f", repaid after ~{build / saved:.0f} steps" if saved > 0
                                  else ""))
        return 0
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
