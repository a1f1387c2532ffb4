"""Benchmark: `audiotoken video` frames/s against `generate` images/s, and peak memory against
the recording's length.

    python benchmarks/video.py                    # both parts, tiny random models, CPU
    python benchmarks/video.py --part speed --size 64 --seconds 8 --device cuda
    python benchmarks/video.py --part memory --minutes 2 20

speed: one process, the same loaded-from-disk tiny models and equal settings (size, steps,
scheduler, batch size, seed). `generate -n N` renders N images of one sound; `video` renders a
clip whose frame count is N. Both are timed end to end through the library (model loading
included, so it is done once first as a warm-up for each). In-between frames ride the same
batched renderer as generate's images, so the two rates should be close; the video adds token
work per keyframe, slerps and H.264 encoding.

memory: `audiotoken video --keyframes-only --storyboard` on a short and a long synthetic
recording (a quiet tone, 8 kHz WAV), each in its own subprocess, measured by the parent with
``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`` (one fresh measuring process per input, so one
run's peak cannot hide in the other's). Memory should not grow with the recording's length.

This is not a test: it lives outside tests/ and pytest does not collect it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
TINY_BEATS = ROOT / "tests" / "data" / "tiny_beats.pt"


def tiny_models(folder: Path) -> dict:
    from factories import make_paper_embedder, make_tiny_sd

    return {"sd": make_tiny_sd(folder / "sd", text_width=32),
            "embedder": make_paper_embedder(folder / "emb.bin", input_dim=96, token_dim=32)}


def quiet_tone(path: Path, seconds: float, rate: int = 8000) -> Path:
    """A mostly quiet (but not silent) tone whose pitch steps every 10 s, as 16-bit WAV,
    written block by block so making a long one costs little memory."""
    import av
    import numpy as np

    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=rate, layout="mono")
        block = rate * 10
        for index in range(int(np.ceil(seconds * rate / block))):
            n = min(block, round(seconds * rate) - index * block)
            t = np.arange(n) / rate
            wave = (0.05 * np.sin(2 * np.pi * (200 + 40 * (index % 8)) * t) * 32767).astype(np.int16)
            frame = av.AudioFrame.from_ndarray(wave[None], format="s16", layout="mono")
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def model_args(models: dict, device: str) -> list[str]:
    return ["--sd", str(models["sd"]), "--audio-encoder", str(TINY_BEATS), "--embedder",
            str(models["embedder"]), "--device", device, "--quiet"]


def speed(models: dict, args, folder: Path) -> None:
    from dataclasses import replace

    from factories import tone, write_audio

    from audiotoken_cli.config import GenerateSettings, RuntimeSettings, Window
    from audiotoken_cli.pipeline.generate import generate_files
    from audiotoken_cli.video import VideoSettings, video_files

    source = write_audio(folder / "clip.wav", tone(args.seconds, freq=330))
    frames = round(args.fps * args.seconds)
    base = GenerateSettings(sd=models["sd"], audio_encoder=TINY_BEATS, embedder=models["embedder"],
                            seed=3, steps=args.steps, width=args.size, height=args.size,
                            scheduler="pndm", batch_size=args.batch_size, overwrite=True,
                            window=Window(0.0, args.window),
                            runtime=RuntimeSettings(device=args.device, dtype=args.dtype))
    video = VideoSettings(replace(base, output_dir=folder / "video"), hop=args.hop,
                          window=args.window, fps=args.fps)
    images = replace(base, num_images=frames, output_dir=folder / "generate")

    def timed(run) -> float:
        begin = time.perf_counter()
        results = list(run())
        assert all(not r.failed for r in results), results
        return time.perf_counter() - begin

    timed(lambda: generate_files([source], replace(images, num_images=1)))  # warm-up
    timed(lambda: video_files([source], replace(video, fps=1)))
    generate_s = timed(lambda: generate_files([source], images))
    video_s = timed(lambda: video_files([source], video))
    print(f"speed ({args.size}x{args.size}, {args.steps} steps, batch {args.batch_size}, "
          f"{args.device}): {frames} images / {frames} frames")
    print(f"  generate  {frames / generate_s:8.2f} images/s  ({generate_s:.1f} s)")
    print(f"  video     {frames / video_s:8.2f} frames/s  ({video_s:.1f} s)")
    print(f"  video / generate = {generate_s / video_s:.2f}")


MEASURE = """
import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def peak_rss_kib(command: list[str]) -> int:
    """Peak RSS (KiB on Linux) of ``command``, measured by a fresh parent process."""
    out = subprocess.run([sys.executable, "-c", MEASURE, *command], check=True,
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return int(out.stdout.strip().splitlines()[-1])


def video_command(models: dict, source: Path, device: str, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "audiotoken_cli", "video", str(source), *model_args(models, device),
            "--keyframes-only", "--storyboard", "--scheduler", "pndm", "--steps", "2",
            "-W", "32", "-H", "32", "--seed", "1", "--overwrite", *extra]


def memory(models: dict, args, folder: Path) -> dict:
    peaks = {}
    for minutes in args.minutes:
        source = quiet_tone(folder / f"tone_{minutes:g}min.wav", minutes * 60)
        begin = time.perf_counter()
        peaks[minutes] = peak_rss_kib(video_command(models, source, args.device, args.video_args))
        print(f"memory: {minutes:g}-minute input: peak RSS {peaks[minutes] / 1024:.0f} MiB "
              f"({time.perf_counter() - begin:.0f} s)")
    short, long = min(peaks), max(peaks)
    print(f"  peak RSS {long:g} min / {short:g} min = {peaks[long] / peaks[short]:.3f}")
    return peaks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("speed", "memory", "both"), default="both")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--fps", type=int, default=4)
    parser.add_argument("--hop", type=float, default=2.0)
    parser.add_argument("--window", type=float, default=4.0)
    parser.add_argument("--minutes", type=float, nargs="+", default=[2.0, 20.0])
    parser.add_argument("--video-args", nargs=argparse.REMAINDER, default=[],
                        help="extra `video` options for the memory part (e.g. --hop 30 --fps 2)")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        models = tiny_models(folder)
        if args.part in ("speed", "both"):
            speed(models, args, folder)
        if args.part in ("memory", "both"):
            print(json.dumps(memory(models, args, folder)))
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
