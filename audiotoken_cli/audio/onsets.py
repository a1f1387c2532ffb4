"""Onset strength, for ``video --audio-reactive``: changes in the picture land on the beats.

Onset strength is the spectral flux of log-mel frames (our own Kaldi fbank, in torch): the frame-
to-frame rise of each mel band, half-wave rectified (only rises count), summed over bands and
lightly smoothed. Within each keyframe interval its running sum, normalised to end at 1, maps a
frame's time to its interpolation weight: the picture moves fast where the sound has onsets and
holds where it does not. (librosa's onset_strength is the usual tool; it is not a dependency
here, and the fbank we already have in torch does the same job in a few lines.)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from audiotoken_cli.audio.fbank import kaldi_fbank
from audiotoken_cli.config import SAMPLE_RATE, Window

FRAMES_PER_SECOND = 100  # the fbank's 10 ms hop
MEL_BINS = 64
SMOOTHING_FRAMES = 5
DYNAMIC_RANGE = 4.0 * float(np.log(10.0))
"""40 dB (of power, in the fbank's natural-log units): bands quieter than this below the loudest
moment count as silence, so the flicker of a noise floor does not read as a stream of onsets
(librosa clips at its ``top_db`` for the same reason)."""
FLOOR = 0.05
"""A small share of the interval's mean strength added everywhere, so that a silent stretch still
moves a little and the weights rise strictly."""


def onset_strength(waveform: torch.Tensor) -> torch.Tensor:
    """(S,) 16 kHz waveform in [-1, 1] → (T,) onset strength, one value per 10 ms frame."""
    mel = kaldi_fbank(waveform.float() * 2**15, num_mel_bins=MEL_BINS, sample_rate=SAMPLE_RATE)
    mel = mel.clamp_min(mel.max() - DYNAMIC_RANGE)  # (T, M)
    flux = torch.relu(mel[1:] - mel[:-1]).sum(dim=-1)  # (T - 1,)
    flux = torch.cat([flux[:1] * 0, flux])  # (T,): frame t's rise over frame t - 1
    kernel = torch.hann_window(SMOOTHING_FRAMES + 2, periodic=False)[1:-1]
    kernel = (kernel / kernel.sum())[None, None]  # (1, 1, K)
    padded = torch.nn.functional.pad(flux[None, None], (SMOOTHING_FRAMES // 2,) * 2, mode="replicate")
    return torch.nn.functional.conv1d(padded, kernel)[0, 0]


def interval_weights(waveform: torch.Tensor, length: float, offsets: Sequence[float]) -> np.ndarray:
    """Weights in [0, 1] for moments ``offsets`` (seconds, 0 ≤ offset ≤ length) of an interval
    whose audio is ``waveform``: the share of the interval's onset strength heard by then."""
    strength = onset_strength(waveform).double()
    strength = strength + FLOOR * strength.mean().clamp_min(1e-12)
    cumulative = torch.cat([torch.zeros(1, dtype=strength.dtype), strength.cumsum(0)])  # (T + 1,)
    cumulative = (cumulative / cumulative[-1]).numpy()
    grid = np.linspace(0.0, length, cumulative.size)  # the running sum over the interval's time
    weights = np.interp(np.asarray(offsets, dtype=np.float64), grid, cumulative)
    return np.clip(weights, 0.0, 1.0)


def reactive_weights(source: Path, duration: float, times: Sequence[float], fps: int) -> np.ndarray:
    """Every frame's weight (frame i shows time i/fps), interval by interval. Each interval's
    audio is decoded on its own, in the decoder worker (the decoder seeks, so memory does not
    grow with the file); a silent or undecodable interval falls back to even spacing."""
    from audiotoken_cli.audio.worker import decode_each
    from audiotoken_cli.video.keyframes import frame_count

    count = frame_count(duration, fps)
    moments = np.arange(count) / fps
    weights = np.zeros(count)
    intervals = {}  # window → (frames inside it, their offsets from its start)
    for k in range(len(times) - 1):
        begin, end = times[k], times[k + 1]
        inside = np.nonzero((moments >= begin - 1e-9) & (moments < end - 1e-9))[0]
        if inside.size:
            intervals[Window(start=begin, duration=end - begin)] = (inside, moments[inside] - begin)
    for (_source, window), result in decode_each((source, window) for window in intervals):
        inside, offsets = intervals[window]
        weights[inside] = offsets / window.duration  # silence, or too short for one fbank frame
        if isinstance(result, np.ndarray):
            try:
                weights[inside] = interval_weights(torch.from_numpy(result), window.duration,
                                                   offsets)
            except ValueError:
                pass
    return weights
