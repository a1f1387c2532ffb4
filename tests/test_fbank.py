"""audiotoken_cli.audio.fbank against torchaudio's Kaldi fbank, which BEATs was trained on.

tests/data/fbank_reference.safetensors was made by tests/data/make_fbank_reference.py in a scratch
venv with torch 2.11 + torchaudio 2.11 (torchaudio stays out of our runtime). For each signal NAME
(espeak-ng speech, a 440 Hz tone, a chirp, white noise, digital silence, near-silent speech, a
stereo-to-mono mix, an odd length) it holds the float32 input ``NAME.wave`` (S,) in [-1, 1],
torchaudio's ``NAME.fbank`` (T, 128) of ``wave * 2**15``, and the BEATs-normalised ``NAME.beats``.

On an x86 CPU (torch 2.11 and 2.13) the two agree bit for bit: same float32 operations, same order.
FFT code that rounds differently (CUDA, MPS, other CPU libraries) moves the lowest mel bands, which
hold a single FFT bin each, by up to about 1e-3.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from audiotoken_cli.audio.fbank import BEATS_FBANK_MEAN, BEATS_FBANK_STD, beats_fbank, kaldi_fbank

REFERENCE = load_file(Path(__file__).parent / "data" / "fbank_reference.safetensors")
SIGNALS = sorted({key.rsplit(".", 1)[0] for key in REFERENCE})
ATOL = 1e-3


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


def test_reference_file_has_every_signal() -> None:
    assert set(SIGNALS) >= {"speech", "tone440", "chirp", "noise", "silence", "quiet", "odd_length"}
    kinds = ("wave", "fbank", "beats")
    assert all(f"{name}.{kind}" in REFERENCE for name in SIGNALS for kind in kinds)


@pytest.mark.parametrize("name", SIGNALS)
def test_kaldi_fbank_matches_torchaudio(name: str) -> None:
    wave = REFERENCE[f"{name}.wave"]
    assert max_abs_diff(kaldi_fbank(wave * 2**15), REFERENCE[f"{name}.fbank"]) <= ATOL


@pytest.mark.parametrize("name", SIGNALS)
def test_beats_fbank_matches_torchaudio(name: str) -> None:
    wave = REFERENCE[f"{name}.wave"]
    assert max_abs_diff(beats_fbank(wave[None])[0], REFERENCE[f"{name}.beats"]) <= ATOL


def test_reference_normalisation_uses_the_beats_constants() -> None:
    fbank, beats = REFERENCE["speech.fbank"], REFERENCE["speech.beats"]
    assert max_abs_diff((fbank - BEATS_FBANK_MEAN) / (2 * BEATS_FBANK_STD), beats) <= 1e-6


def test_batched_equals_per_item() -> None:
    length = 16_000
    batch = torch.stack([REFERENCE[f"{name}.wave"][:length] for name in SIGNALS])  # (B, S)
    batched = beats_fbank(batch)
    for i, wave in enumerate(batch):
        assert max_abs_diff(batched[i], beats_fbank(wave[None])[0]) <= 1e-5


@pytest.mark.parametrize(
    ("num_samples", "num_frames"),
    [(400, 1), (559, 1), (560, 2), (19_753, 121), (160_000, 998)],
)
def test_frame_count_snips_edges(num_samples: int, num_frames: int) -> None:
    assert beats_fbank(torch.zeros(2, num_samples)).shape == (2, num_frames, 128)
    assert kaldi_fbank(torch.zeros(num_samples)).shape == (num_frames, 128)


def test_mel_bins_and_frame_options() -> None:
    waves = torch.randn(3, 8000)
    out = kaldi_fbank(waves, 80, sample_rate=8000, frame_length_ms=32, frame_shift_ms=16)
    assert out.shape == (3, 1 + (8000 - 256) // 128, 80)
    assert out.dtype == torch.float32


def test_shorter_than_one_frame_is_an_error() -> None:
    with pytest.raises(ValueError, match="399 samples, fewer than one 25 ms frame"):
        beats_fbank(torch.zeros(1, 399))


def test_wrong_rank_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"\(S,\) or \(B, S\)"):
        kaldi_fbank(torch.zeros(1, 2, 16_000))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_other_dtypes_compute_in_float32(dtype: torch.dtype) -> None:
    wave = REFERENCE["speech.wave"][None].to(dtype)
    out = beats_fbank(wave)
    assert out.dtype == torch.float32
    # Computing in float32 leaves the input's own rounding as the only loss.
    assert torch.equal(out, beats_fbank(wave.float()))
    # That rounding (about -66 dB for float16, -48 dB for bfloat16) moves only the quietest bands.
    assert (out[0] - REFERENCE["speech.beats"]).abs().mean().item() < 0.01


def test_torchaudio_is_not_imported() -> None:
    assert "torchaudio" not in sys.modules
