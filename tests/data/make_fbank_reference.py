"""Regenerate ``fbank_reference.safetensors``: torchaudio's Kaldi fbank on a few test signals.

This is the only place torchaudio is used: it is the reference that ``audiotoken_cli.audio.fbank`` must
match, and it stays out of the runtime, as its wheels import only next to their own torch build.
Run it from the repository root in a scratch venv with a matching torch/torchaudio pair, with
espeak-ng and sox on the PATH (Debian: ``apt-get install espeak-ng sox``):

    python3.11 -m venv /tmp/ref
    /tmp/ref/bin/pip install torch==2.11.0 torchaudio==2.11.0 safetensors numpy
    /tmp/ref/bin/python tests/data/make_fbank_reference.py

For every signal NAME the file holds three float32 tensors:
    NAME.wave   (S,)       the exact 16 kHz mono input, in [-1, 1]
    NAME.fbank  (T, 128)   torchaudio.compliance.kaldi.fbank(wave * 2**15, num_mel_bins=128,
                           sample_frequency=16000, frame_length=25, frame_shift=10), other
                           options at their defaults
    NAME.beats  (T, 128)   (NAME.fbank - 15.41663) / (2 * 6.55582), BEATs' normalisation
"""

from __future__ import annotations

import argparse
import math
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np
import torch
import torchaudio
from safetensors.torch import save_file
from torchaudio.compliance import kaldi

SAMPLE_RATE = 16_000
FBANK_MEAN = 15.41663
FBANK_STD = 6.55582


def speak(text: str, voice: str, seconds: float) -> np.ndarray:
    """espeak-ng speech, by sox at 16 kHz mono int16, cut to ``seconds``: (S,) in [-1, 1]."""
    with tempfile.TemporaryDirectory() as tmp:
        raw, out = Path(tmp, "raw.wav"), Path(tmp, "out.wav")
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(raw), text], check=True)
        subprocess.run(
            # -D: no dither, so the file is reproducible byte for byte.
            ["sox", "-D", str(raw), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", str(out)],
            check=True,
        )
        with wave.open(str(out), "rb") as f:
            pcm = np.frombuffer(f.readframes(f.getnframes()), dtype="<i2")
    return pcm[: int(seconds * SAMPLE_RATE)].astype(np.float32) / 32768.0


def seconds_of(seconds: float) -> np.ndarray:
    return np.arange(int(seconds * SAMPLE_RATE), dtype=np.float64) / SAMPLE_RATE


def recorded(x: np.ndarray, noise_floor: float, rng: np.random.Generator) -> np.ndarray:
    """A synthetic signal as a recording holds it: white noise of std ``noise_floor``, int16 steps.

    Without a floor, the mel bands far from a pure tone (and the lowest ones, damped 30 dB by
    pre-emphasis) hold only float32 rounding noise, where two correct implementations with
    different FFT code disagree by whole log units; the floor makes every band well defined.
    """
    return np.round((x + noise_floor * rng.standard_normal(len(x))) * 32768.0) / 32768.0


def signals() -> dict[str, np.ndarray]:
    """Named test waveforms, each (S,) float32 in [-1, 1], 1 to 3 s long."""
    rng = np.random.default_rng(20230513)
    speech = speak("The quick brown fox jumps over the lazy dog.", "en-us", 2.5)
    t = seconds_of(1.0)
    # A linear chirp sweeps every mel band, including the top ones near Nyquist.
    chirp_t = seconds_of(1.5)
    chirp = 0.1 * np.sin(2 * math.pi * (50 * chirp_t + (7900 - 50) / (2 * 1.5) * chirp_t**2))
    # Stereo recordings are averaged to mono by the loader; mimic that with two unlike channels.
    left = speak("Sounds become pictures.", "en-gb", 1.5)
    mix_t = np.arange(len(left)) / SAMPLE_RATE
    right = 0.2 * np.sin(2 * math.pi * 1000 * mix_t) + 0.05 * rng.standard_normal(len(left))
    return {
        "speech": speech,
        "tone440": recorded(0.5 * np.sin(2 * math.pi * 440 * t), 1e-3, rng),
        # The chirp's single sharp peak spans the widest range within a frame; a higher floor keeps
        # its quietest bands well defined (see ``recorded``).
        "chirp": recorded(chirp, 0.03, rng),
        "noise": np.clip(0.3 * rng.standard_normal(len(t)), -1, 1),
        "silence": np.zeros(SAMPLE_RATE),
        # Peak about 0.2 of an int16 step: mel energies near the float32-epsilon floor of the log.
        "quiet": 1e-5 * speech[:SAMPLE_RATE],
        "stereo_mix": 0.5 * (left + right),
        # 19,753 samples: not a whole number of 10 ms hops, so the tail is dropped (snip_edges).
        "odd_length": speech[3000 : 3000 + 19_753],
    }


def reference(wave_: np.ndarray) -> dict[str, torch.Tensor]:
    """torchaudio's fbank and the BEATs-normalised fbank of one waveform."""
    x = torch.from_numpy(np.ascontiguousarray(wave_, dtype=np.float32))
    assert x.abs().max() <= 1.0
    fbank = kaldi.fbank(
        x.unsqueeze(0) * 2**15,
        num_mel_bins=128,
        sample_frequency=SAMPLE_RATE,
        frame_length=25,
        frame_shift=10,
    )
    return {"wave": x, "fbank": fbank, "beats": (fbank - FBANK_MEAN) / (2 * FBANK_STD)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(__file__).with_name("fbank_reference.safetensors")
    parser.add_argument("-o", "--output", type=Path, default=default)
    output = parser.parse_args().output
    tensors = {
        f"{name}.{kind}": tensor.contiguous()
        for name, wave_ in signals().items()
        for kind, tensor in reference(wave_).items()
    }
    # One key: safetensors writes metadata in hash order, and the file should be reproducible.
    metadata = {"made_with": f"torch {torch.__version__}, torchaudio {torchaudio.__version__}"}
    save_file(tensors, str(output), metadata=metadata)
    for key, tensor in tensors.items():
        print(f"{key:20s} {tuple(tensor.shape)}")
    print(f"{output}: {output.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
