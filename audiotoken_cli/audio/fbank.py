"""Kaldi-compatible log-mel filterbank features in plain torch, as BEATs expects them.

BEATs was trained on ``torchaudio.compliance.kaldi.fbank`` with its default options. torchaudio
cannot live in the runtime (its wheels pin one exact torch build), so this module reimplements that
one configuration and is tested against values torchaudio produced (tests/data/fbank_reference.*).

The configuration, all Kaldi / torchaudio defaults: frames of 25 ms every 10 ms, only frames that
fit entirely in the signal (``snip_edges``), per-frame DC removal, pre-emphasis 0.97, Povey window,
zero padding to a power-of-two FFT, power spectrum, triangular mel filters from 20 Hz to Nyquist,
natural log floored at float32 epsilon, no dither (so the output is deterministic).

Shapes: S samples, B waveforms, T = 1 + (S - frame_length) // frame_shift frames, M mel bins.
"""

from __future__ import annotations

import functools
import math

import torch

BEATS_SAMPLE_RATE = 16_000
BEATS_NUM_MEL_BINS = 128
# Dataset statistics of BEATs' AudioSet fbank features; the model divides by twice the std.
BEATS_FBANK_MEAN = 15.41663
BEATS_FBANK_STD = 6.55582

PREEMPHASIS = 0.97
LOW_FREQ_HZ = 20.0
# Kaldi floors with std::numeric_limits<float>::epsilon(), so digital silence maps to log(eps).
LOG_FLOOR = torch.finfo(torch.float32).eps


def kaldi_fbank(
    waveform: torch.Tensor,
    num_mel_bins: int = 128,
    sample_rate: int = 16000,
    frame_length_ms: float = 25.0,
    frame_shift_ms: float = 10.0,
) -> torch.Tensor:
    """Log-mel filterbank of (S,) or (B, S) waveforms on the int16 scale -> (T, M) or (B, T, M).

    Matches ``torchaudio.compliance.kaldi.fbank(waveform[None], num_mel_bins=...,
    sample_frequency=..., frame_length=..., frame_shift=...)`` with its other options at their
    defaults. (Its energy floor only touches the optional log-energy column, which that call does
    not return.) Computes and returns float32 on the waveform's device, whatever its dtype.
    """
    if waveform.dim() not in (1, 2):
        raise ValueError(f"waveform must have shape (S,) or (B, S), got {tuple(waveform.shape)}")
    frame_length, frame_shift, n_fft = _frame_sizes(sample_rate, frame_length_ms, frame_shift_ms)
    num_samples = waveform.shape[-1]
    if num_samples < frame_length:
        raise ValueError(
            f"waveform has {num_samples} samples, fewer than one {frame_length_ms:g} ms frame "
            f"({frame_length} samples at {sample_rate} Hz)"
        )
    # Half precision would lose the small mel energies the log is most sensitive to.
    frames = waveform.to(torch.float32).unfold(-1, frame_length, frame_shift)  # (..., T, L)
    power = _power_spectrum(_condition_frames(frames), n_fft)  # (..., T, n_fft // 2 + 1)
    mel = power @ _mel_matrix(num_mel_bins, n_fft, float(sample_rate), power.device)  # (..., T, M)
    return mel.clamp_min_(LOG_FLOOR).log_()


def beats_fbank(waveforms: torch.Tensor) -> torch.Tensor:
    """BEATs' input features: (B, S) 16 kHz waveforms in [-1, 1] -> (B, T, 128) float32.

    A single (S,) waveform gives (T, 128). T = 1 + (S - 400) // 160, e.g. 998 for 10 s.
    """
    # Kaldi works on int16 sample values; BEATs scales float audio back up to that range.
    fbank = kaldi_fbank(
        waveforms.to(torch.float32) * 2**15,
        num_mel_bins=BEATS_NUM_MEL_BINS,
        sample_rate=BEATS_SAMPLE_RATE,
        frame_length_ms=25.0,
        frame_shift_ms=10.0,
    )
    return (fbank - BEATS_FBANK_MEAN) / (2 * BEATS_FBANK_STD)


def _frame_sizes(
    sample_rate: int, frame_length_ms: float, frame_shift_ms: float
) -> tuple[int, int, int]:
    """(frame_length, frame_shift, n_fft) in samples, truncated the way Kaldi truncates them."""
    frame_length = int(sample_rate * frame_length_ms * 0.001)
    frame_shift = int(sample_rate * frame_shift_ms * 0.001)
    if frame_length < 2 or frame_shift < 1:
        raise ValueError(
            f"frames of {frame_length_ms:g} ms every {frame_shift_ms:g} ms at {sample_rate} Hz are "
            f"{frame_length} and {frame_shift} samples; need at least 2 and 1"
        )
    n_fft = 1 << (frame_length - 1).bit_length()
    return frame_length, frame_shift, n_fft


def _condition_frames(frames: torch.Tensor) -> torch.Tensor:
    """DC removal, pre-emphasis and Povey window on (..., T, L) frames -> (..., T, L)."""
    frames = frames - frames.mean(dim=-1, keepdim=True)
    # Kaldi pre-emphasises the first sample of each frame against itself, not the previous frame.
    previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)
    # In place, to spare a batch of 10 s clips several 13 MB temporaries; x + (-0.97 p) rounds
    # exactly like x - 0.97 p, so the result still matches torchaudio bit for bit.
    emphasized = previous.mul_(-PREEMPHASIS).add_(frames)
    return emphasized.mul_(_povey_window(frames.shape[-1], frames.device))


def _power_spectrum(frames: torch.Tensor, n_fft: int) -> torch.Tensor:
    """|rFFT|^2 of (..., T, L) frames zero-padded to n_fft -> (..., T, n_fft // 2 + 1)."""
    return torch.fft.rfft(frames, n=n_fft).abs().square_()


@functools.lru_cache(maxsize=8)
def _povey_window(length: int, device: torch.device) -> torch.Tensor:
    """Kaldi's Povey window, a Hann window raised to 0.85 so it reaches zero at both ends: (L,)."""
    # Built in float32 like torchaudio's: quiet mel bins are sensitive to the window's last bit.
    hann = torch.hann_window(length, periodic=False, dtype=torch.float32)
    return hann.pow(0.85).to(device)


@functools.lru_cache(maxsize=8)
def _mel_matrix(
    num_mel_bins: int, n_fft: int, sample_rate: float, device: torch.device
) -> torch.Tensor:
    """Triangular mel filters, (n_fft // 2 + 1, M), equally spaced on Kaldi's mel scale.

    Kaldi's filters cover FFT bins 0 .. n_fft/2 - 1; the Nyquist bin gets weight zero.
    """
    if num_mel_bins < 4:
        raise ValueError(f"num_mel_bins must be at least 4, got {num_mel_bins}")
    mel_low, mel_high = _hz_to_mel_scalar(LOW_FREQ_HZ), _hz_to_mel_scalar(0.5 * sample_rate)
    # float32 throughout, as torchaudio builds it: the lowest filters hold one or two FFT bins at
    # small weights, and float64 weights would move their log energies by up to 2e-4.
    step = (mel_high - mel_low) / (num_mel_bins + 1)
    # M filters need M + 2 edges; filter i rises from edge i, peaks at i + 1, falls to i + 2.
    edges = mel_low + torch.arange(num_mel_bins + 2, dtype=torch.float32) * step
    left, center, right = edges[:-2], edges[1:-1], edges[2:]
    bin_hz = (sample_rate / n_fft) * torch.arange(n_fft // 2, dtype=torch.float32)
    mel = (1.0 + bin_hz / 700.0).log().mul(1127.0).unsqueeze(1)  # (n_fft // 2, 1)
    rising = (mel - left) / (center - left)
    falling = (right - mel) / (right - center)
    weights = torch.minimum(rising, falling).clamp_min(0.0)  # (n_fft // 2, M)
    return torch.cat([weights, weights.new_zeros(1, num_mel_bins)]).to(device)


def _hz_to_mel_scalar(hz: float) -> float:
    """Kaldi's (HTK's) mel scale with the natural log."""
    return 1127.0 * math.log(1.0 + hz / 700.0)
