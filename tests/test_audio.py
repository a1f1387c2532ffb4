"""Audio in: formats, the paper's window rules, memory on long files, and every bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from audiotoken_cli.audio.decode import load_window
from audiotoken_cli.config import Window
from audiotoken_cli.errors import InputError
from factories import tone, write_audio, write_video

RATE = 16000


def pcm16(samples: np.ndarray) -> np.ndarray:
    """What a 16-bit WAV of ``samples`` decodes to."""
    return (np.clip(samples, -1, 1) * 32767).round().astype(np.int16) / 32768.0


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a"])
def test_audio_formats_decode_to_16k_mono_float32(tmp_path, suffix):
    rate = 16000 if suffix in (".ogg", ".opus") else 44100
    path = write_audio(tmp_path / f"a{suffix}", tone(3.0, rate=rate, channels=2), rate=rate)
    waveform = load_window(path)
    assert waveform.dtype == torch.float32 and waveform.shape == (160000,)
    # The 440 Hz tone survives resampling and lossy codecs: check its frequency.
    spectrum = np.abs(np.fft.rfft(waveform[:RATE].numpy()))
    assert abs(np.argmax(spectrum) - 462) < 25  # mean of 440 and 484 Hz (1 Hz per bin)


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".mov", ".webm"])
def test_video_files_give_their_audio_track(tmp_path, suffix):
    samples = tone(2.0, rate=RATE)
    path = write_video(tmp_path / f"v{suffix}", samples, rate=RATE)
    waveform = load_window(path, Window(0.0, 1.0))
    assert waveform.shape == (16000,)
    assert waveform.abs().max() > 0.3


def test_wav_at_16k_is_bit_exact_and_channels_are_averaged(tmp_path):
    stereo = tone(12.0, channels=2)
    path = write_audio(tmp_path / "s.wav", stereo)
    expected = pcm16(stereo).mean(axis=0)[:160000]
    np.testing.assert_array_equal(load_window(path).numpy(), expected.astype(np.float32))


def test_short_clip_is_looped_to_fill_the_window(tmp_path):
    clip = tone(3.0, seed=1)
    path = write_audio(tmp_path / "short.wav", clip)
    waveform = load_window(path).numpy()
    expected = np.tile(pcm16(clip)[0], 4)[:160000]
    np.testing.assert_array_equal(waveform, expected.astype(np.float32))


def test_very_short_clip_is_looped_until_full(tmp_path):
    # The paper's code tiles 10 times, which leaves a 0.3 s clip at 3 s; we fill the window.
    clip = tone(0.3, seed=2)
    waveform = load_window(write_audio(tmp_path / "blip.wav", clip)).numpy()
    assert waveform.shape == (160000,)
    np.testing.assert_array_equal(waveform[32 * 4800:33 * 4800], pcm16(clip)[0].astype(np.float32))


def test_long_clip_is_cut_to_the_first_ten_seconds(tmp_path):
    clip = tone(14.0, seed=3)
    waveform = load_window(write_audio(tmp_path / "long.wav", clip)).numpy()
    np.testing.assert_array_equal(waveform, pcm16(clip)[0, :160000].astype(np.float32))


def test_start_and_duration_select_the_window(tmp_path):
    clip = tone(6.0, seed=4)
    path = write_audio(tmp_path / "c.wav", clip)
    waveform = load_window(path, Window(start=2.5, duration=2.0)).numpy()
    np.testing.assert_array_equal(waveform, pcm16(clip)[0, 40000:72000].astype(np.float32))


def test_window_running_past_the_end_loops_from_start(tmp_path):
    clip = tone(4.0, seed=5)
    path = write_audio(tmp_path / "c.wav", clip)
    waveform = load_window(path, Window(start=3.0, duration=2.5)).numpy()
    tail = pcm16(clip)[0, 48000:]
    np.testing.assert_array_equal(waveform, np.tile(tail, 3)[:40000].astype(np.float32))


def test_late_start_seeks_and_lands_on_the_exact_sample(tmp_path):
    # Past 30 s the decoder seeks instead of decoding everything before the window.
    silence = np.zeros((1, 50 * RATE), dtype=np.float32)
    clip = np.concatenate([silence, tone(5, freq=1000, seed=3)], axis=1)
    path = write_audio(tmp_path / "late.wav", clip)
    waveform = load_window(path, Window(start=50.5, duration=1.0)).numpy()
    expected = pcm16(clip)[0, 808000:824000].astype(np.float32)
    np.testing.assert_array_equal(waveform, expected)


def test_memory_does_not_grow_with_file_length(tmp_path):
    # A 40-minute file (77 MB of PCM) must cost about what a 10 s file costs: we measure the
    # peak resident memory of a fresh process decoding each.
    long_path = tmp_path / "long.wav"
    minute = (tone(60.0, seed=6) * 32767).astype(np.int16)
    _write_long_wav(long_path, minute, minutes=40)
    short_path = write_audio(tmp_path / "short.wav", tone(10.0))

    def peak_mb(path: Path) -> float:
        code = ("import resource, sys; from audiotoken_cli.audio.decode import load_window; "
                "load_window(sys.argv[1]); "
                "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")
        out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                             text=True, check=True)
        return float(out.stdout.strip())

    assert long_path.stat().st_size > 70e6
    assert peak_mb(long_path) < peak_mb(short_path) + 20


def _write_long_wav(path: Path, minute: np.ndarray, minutes: int) -> None:
    """Write a WAV header and repeat one minute of PCM, without holding the whole file."""
    import struct

    data_bytes = minute.nbytes * minutes
    header = b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVEfmt " + struct.pack(
        "<IHHIIHH", 16, 1, 1, RATE, RATE * 2, 2, 16) + b"data" + struct.pack("<I", data_bytes)
    with open(path, "wb") as handle:
        handle.write(header)
        for _ in range(minutes):
            handle.write(minute.tobytes())


# ---------------------------------------------------------------------------------------------
# Bad inputs: one line naming the file and the problem.


def _bad_input(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.wav"
    if kind == "missing":
        return path
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "not_audio":
        path = tmp_path / "notes.mp3"
        path.write_text("these are my notes, not an mp3\n" * 50)
    elif kind == "corrupt":
        good = write_audio(tmp_path / "good.mp3", tone(2.0, rate=44100), rate=44100)
        data = bytearray(good.read_bytes())
        path = tmp_path / "corrupt.mp3"
        path.write_bytes(bytes(data[:200]) + os.urandom(len(data) - 200))
    elif kind == "no_audio_track":
        path = write_video(tmp_path / "mute.mp4", None)
    elif kind == "directory":
        path.mkdir()
    return path


@pytest.mark.parametrize("kind, expected", [
    ("missing", "no such file"),
    ("empty", r"the file is empty \(0 bytes\)"),
    ("not_audio", "not an audio or video file"),
    ("corrupt", "not an audio or video file|corrupt|holds no samples"),
    ("no_audio_track", "has no audio track"),
    ("directory", "is a directory"),
])
def test_bad_inputs_raise_one_line_naming_the_file(tmp_path, kind, expected):
    path = _bad_input(tmp_path, kind)
    with pytest.raises(InputError, match=expected) as caught:
        load_window(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "\n" not in message


def test_start_past_the_end(tmp_path):
    path = write_audio(tmp_path / "c.wav", tone(2.0))
    with pytest.raises(InputError, match="past the end"):
        load_window(path, Window(start=5.0))


def test_unreadable_file(tmp_path):
    path = write_audio(tmp_path / "locked.wav", tone(1.0))
    path.chmod(0)
    if os.geteuid() == 0:
        pytest.skip("root reads any file; covered by the CLI test that drops privileges")
    with pytest.raises(InputError, match="permission denied"):
        load_window(path)
