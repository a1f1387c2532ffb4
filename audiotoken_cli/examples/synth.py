"""Make the example sounds from numpy: ``python -m audiotoken_cli.examples.synth``.

Synthesized rather than recorded so that they are ours to ship; deterministic (fixed seeds).
Opus at 24 kbit/s keeps each 2 s clip at a few kB.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

RATE = 48_000  # Opus's own rate; decoding resamples to 16 kHz like any other file
SECONDS = 2.0


def bell(rate: int = RATE) -> np.ndarray:
    """Inharmonic partials of a struck bell, each decaying at its own rate."""
    t = np.arange(int(rate * SECONDS)) / rate
    partials = [(1.0, 1.0, 1.2), (2.0, 0.6, 1.8), (2.4, 0.5, 2.5), (3.0, 0.35, 3.0),
                (4.2, 0.25, 4.0), (5.4, 0.15, 5.0)]
    base = 523.25  # C5
    sound = sum(a * np.exp(-d * t) * np.sin(2 * np.pi * base * f * t) for f, a, d in partials)
    return sound * np.minimum(1.0, t / 0.002)  # a 2 ms strike, no click


def rain(rate: int = RATE, seed: int = 1) -> np.ndarray:
    """Low-passed noise with many short random drops on top."""
    rng = np.random.default_rng(seed)
    n = int(rate * SECONDS)
    noise = rng.standard_normal(n)
    bed = np.convolve(noise, np.ones(8) / 8, mode="same") * 0.3
    drops = np.zeros(n)
    for start in rng.integers(0, n - 400, 120):
        length = int(rng.integers(80, 400))
        drops[start:start + length] += (rng.standard_normal(length) * np.exp(
            -np.arange(length) / (length / 4)) * rng.uniform(0.2, 0.8))
    return bed + drops


def bird(rate: int = RATE) -> np.ndarray:
    """Rising and falling chirps around 3-5 kHz, in two short phrases."""
    n = int(rate * SECONDS)
    sound = np.zeros(n)
    for start in (0.1, 0.3, 0.5, 1.1, 1.25, 1.4, 1.55):
        length = int(0.09 * rate)
        t = np.arange(length) / rate
        sweep = 3000 + 2000 * np.sin(np.pi * t / t[-1])  # up then down
        phase = 2 * np.pi * np.cumsum(sweep) / rate
        begin = int(start * rate)
        sound[begin:begin + length] += np.sin(phase) * np.sin(np.pi * t / t[-1]) ** 2
    return sound


def write_ogg(path: Path, samples: np.ndarray, rate: int = RATE) -> None:
    import av

    samples = (0.8 * samples / np.max(np.abs(samples))).astype(np.float32)
    with av.open(str(path), "w", format="ogg") as container:
        stream = container.add_stream("libopus", rate=rate, layout="mono")
        stream.bit_rate = 24_000
        for begin in range(0, len(samples), 960):
            chunk = samples[begin:begin + 960]
            if len(chunk) < 960:
                chunk = np.pad(chunk, (0, 960 - len(chunk)))
            frame = av.AudioFrame.from_ndarray(chunk[None], format="flt", layout="mono")
            frame.sample_rate = rate
            frame.pts = begin
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def main() -> None:
    folder = Path(__file__).parent
    for name, make in (("bell", bell), ("rain", rain), ("bird", bird)):
        write_ogg(folder / f"{name}.ogg", make())
        print(folder / f"{name}.ogg", (folder / f"{name}.ogg").stat().st_size, "bytes")


if __name__ == "__main__":
    main()
