"""The decoder against files that are not what they claim: many channels, odd tags, streams that
change part way, things that are not regular files, NaN samples, nothing at all."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from factories import write_audio
from hostile_factories import FLOAT, noise, with_latin1_tag, write_wav

from audiotoken_cli.audio.decode import load_window
from audiotoken_cli.config import Window
from audiotoken_cli.errors import InputError

ONE_SECOND = Window(0.0, 1.0)


def expected_mono(samples: np.ndarray) -> np.ndarray:
    """What a 16 kHz 16-bit WAV of ``samples`` must decode to: the plain mean of its channels."""
    pcm = (np.clip(samples, -1, 1) * 32767).round().astype(np.int16) / 32768.0
    return pcm.astype(np.float32).mean(axis=0, dtype=np.float32)


@pytest.mark.parametrize("channels", [8, 16])
def test_many_channels_decode_in_a_child_process_to_the_plain_channel_mean(tmp_path, channels):
    """PyAV 18.1 segfaults on planar float with 8+ channels; run in a child so a regression shows
    as a signal exit instead of killing the test run."""
    samples = noise(channels, 1.0)
    path = write_wav(tmp_path / f"c{channels}.wav", samples)
    out = tmp_path / "out.npy"
    code = ("import sys, numpy as np; from audiotoken_cli.audio.decode import load_window; "
            "from audiotoken_cli.config import Window; "
            "np.save(sys.argv[2], load_window(sys.argv[1], Window(0.0, 1.0)).numpy())")
    result = subprocess.run([sys.executable, "-c", code, str(path), str(out)], timeout=120,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    np.testing.assert_allclose(np.load(out), expected_mono(samples), atol=1e-6)


def test_float_wav_with_eight_channels_decodes(tmp_path):
    samples = noise(8, 1.0)
    path = write_wav(tmp_path / "f8.wav", samples, fmt=FLOAT)
    np.testing.assert_allclose(load_window(path, ONE_SECOND).numpy(),
                               samples.mean(axis=0), atol=1e-6)


def test_tags_that_are_not_utf8_decode(tmp_path):
    samples = noise(1, 1.0)
    path = with_latin1_tag(write_wav(tmp_path / "latin1.wav", samples))
    np.testing.assert_allclose(load_window(path, ONE_SECOND).numpy(), expected_mono(samples),
                               atol=1e-6)


def test_a_stream_whose_rate_and_layout_change_part_way_decodes_both_parts(tmp_path):
    first = write_audio(tmp_path / "a.aac", noise(1, 1.0, 48000), rate=48000, codec="aac")
    second = write_audio(tmp_path / "b.aac", noise(2, 1.0, 22050, seed=1) * 0.1, rate=22050,
                         codec="aac")
    both = tmp_path / "both.aac"
    both.write_bytes(first.read_bytes() + second.read_bytes())
    waveform = load_window(both, Window(0.0, 2.5)).numpy()
    # Loud mono second, then a quiet stereo second, then the loop starts again (loud).
    assert waveform[2000:14000].std() > 0.1
    assert 0.002 < waveform[18000:30000].std() < 0.03
    assert waveform[36000:].std() > 0.1


@pytest.mark.parametrize("kind", ["fifo", "directory", "loop", "device", "broken link"])
def test_what_is_not_a_regular_file_is_refused_before_opening(tmp_path, kind):
    path = tmp_path / "x.wav"
    if kind == "fifo":
        os.mkfifo(path)  # av.open would block on it for ever
    elif kind == "directory":
        path.mkdir()
    elif kind == "loop":
        os.symlink(tmp_path / "y.wav", path)
        os.symlink(path, tmp_path / "y.wav")
    elif kind == "device":
        os.symlink("/dev/null", path)
    else:
        os.symlink(tmp_path / "gone.wav", path)
    with pytest.raises(InputError) as caught:
        load_window(path)
    message = str(caught.value)
    assert message.startswith(str(path)) and "\n" not in message
    expected = {"fifo": "named pipe", "directory": "directory", "loop": "symbolic link loop",
                "device": "character device", "broken link": "broken symbolic link"}[kind]
    assert expected in message


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_infinite_samples_are_an_error_naming_the_file(tmp_path, bad):
    samples = noise(1, 1.0)
    samples[0, 1234] = bad
    path = write_wav(tmp_path / "bad.wav", samples, fmt=FLOAT)
    with pytest.raises(InputError, match=f"^{path}: the audio holds NaN or infinite samples$"):
        load_window(path)


def test_a_wav_with_no_samples_is_an_error(tmp_path):
    path = write_wav(tmp_path / "none.wav", np.zeros((1, 0), np.float32))
    with pytest.raises(InputError, match="holds no samples"):
        load_window(path)


def test_one_sample_is_looped_and_silence_is_a_sound(tmp_path):
    one = write_wav(tmp_path / "one.wav", np.full((1, 1), 0.5, np.float32))
    waveform = load_window(one, ONE_SECOND).numpy()
    np.testing.assert_allclose(waveform, 16384 / 32768, atol=1e-6)  # 0.5 × 32767 rounds to even
    silent = write_wav(tmp_path / "silent.wav", np.zeros((1, 16000), np.float32))
    assert not load_window(silent, ONE_SECOND).any()  # zeros in, zeros out: no error
