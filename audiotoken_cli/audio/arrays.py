"""Audio already in memory (a microphone buffer, a numpy array from another library) → the same
16 kHz mono window that ``decode.load_window`` makes from a file.

The rules are the file path's: channels averaged, resampled to 16 kHz by FFmpeg's resampler (the
one the file path uses), the window cut at ``start`` and looped when the audio is shorter.
"""

from __future__ import annotations

import numpy as np
import torch

from audiotoken_cli.audio.decode import _loop_to_length
from audiotoken_cli.config import SAMPLE_RATE, Window
from audiotoken_cli.errors import InputError

RESAMPLE_CHUNK = 1 << 16
"""Samples handed to the resampler at a time: bounded memory for long buffers."""


def window_from_array(samples, sample_rate: int = SAMPLE_RATE, window: Window = Window(),
                      name: str = "audio array") -> torch.Tensor:
    """``samples`` (S,) or (C, S), numpy or torch, any float or int dtype → float32 (window.num_samples,).

    Integer samples are scaled to [-1, 1) by their type's range, as a decoder would. Raises
    ``InputError`` naming ``name`` for empty or non-finite audio; silence is a valid sound.
    """
    mono = _to_mono_float(samples, name)
    if sample_rate <= 0:
        raise InputError(f"{name}: the sample rate must be positive, got {sample_rate}")
    if sample_rate != SAMPLE_RATE:
        mono = _resample(mono, int(sample_rate))
    skip = round(window.start * SAMPLE_RATE)
    mono = mono[skip: skip + window.num_samples]
    if mono.size == 0:
        if skip:
            raise InputError(f"{name}: start {window.start:g} s is past the end of the audio")
        raise InputError(f"{name}: the audio holds no samples")
    return torch.from_numpy(_loop_to_length(mono, window.num_samples))


def _to_mono_float(samples, name: str) -> np.ndarray:
    if isinstance(samples, torch.Tensor):
        samples = samples.detach().cpu().numpy()
    array = np.asarray(samples)
    if array.ndim == 2:
        # (C, S) as audio libraries lay it out; a (S, C) buffer from a sound card is transposed.
        if array.shape[0] > array.shape[1]:
            array = array.T
    elif array.ndim != 1:
        raise InputError(f"{name}: expected shape (samples,) or (channels, samples), got "
                         f"{tuple(array.shape)}")
    if np.issubdtype(array.dtype, np.integer):
        array = array.astype(np.float64) / float(-np.iinfo(array.dtype).min)
    elif not np.issubdtype(array.dtype, np.floating):
        raise InputError(f"{name}: samples must be numbers, got dtype {array.dtype}")
    array = array.astype(np.float32, copy=False)
    if not np.isfinite(array).all():
        raise InputError(f"{name}: the audio holds NaN or infinite samples")
    return array.mean(axis=0, dtype=np.float32) if array.ndim == 2 else array


def _resample(mono: np.ndarray, rate: int) -> np.ndarray:
    """FFmpeg's resampler through PyAV, the same one that decodes files; no torchaudio."""
    import av

    resampler = av.AudioResampler(format="fltp", layout="mono", rate=SAMPLE_RATE)
    out: list[np.ndarray] = []
    pts = 0
    for begin in range(0, mono.size, RESAMPLE_CHUNK):
        chunk = np.ascontiguousarray(mono[begin: begin + RESAMPLE_CHUNK])[None]  # (1, n)
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
        frame.sample_rate, frame.pts = rate, pts
        pts += chunk.shape[1]
        out += [f.to_ndarray()[0] for f in resampler.resample(frame)]
    out += [f.to_ndarray()[0] for f in resampler.resample(None)]
    return np.concatenate(out).astype(np.float32, copy=False) if out else np.zeros(0, np.float32)
