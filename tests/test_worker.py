"""decode_windows: in order, lazy, and a decoder that crashes or hangs costs one file, not the
batch. The crash and the hang are real (a SIGSEGV, a sleep) in the real worker process, set off
by the worker's test-only hook ``AUDIOTOKEN_TEST_DECODER_FAULT``."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hostile_factories import noise, write_wav

from audiotoken_cli.audio.decode import load_window
from audiotoken_cli.audio.worker import TEST_FAULT_VARIABLE, _Worker, decode_windows
from audiotoken_cli.config import Window
from audiotoken_cli.errors import InputError

WINDOW = Window(0.0, 1.0)


@pytest.fixture
def clips(tmp_path):
    return [write_wav(tmp_path / f"clip{i}.wav", noise(2, 0.5, seed=i)) for i in range(5)]


def test_windows_come_in_order_and_equal_load_window(tmp_path, clips):
    missing = tmp_path / "missing.wav"
    sources = clips[:2] + [missing] + clips[2:]
    results = list(decode_windows(sources, WINDOW, lookahead=2))
    assert [source for source, _ in results] == sources
    for source, result in results:
        if source == missing:
            assert isinstance(result, InputError) and str(result) == f"{missing}: no such file"
        else:
            np.testing.assert_array_equal(result.numpy(), load_window(source, WINDOW).numpy())


def test_sources_are_consumed_lazily(clips):
    taken = []

    def sources():
        for clip in clips:
            taken.append(clip)
            yield clip

    stream = decode_windows(sources(), WINDOW, lookahead=2)
    next(stream)
    assert len(taken) <= 3
    stream.close()


def test_a_decoder_crash_costs_one_file_and_the_stream_goes_on(monkeypatch, clips):
    monkeypatch.setenv(TEST_FAULT_VARIABLE, f"crash:{clips[1].name}")
    results = dict(decode_windows(clips, WINDOW, lookahead=3))
    assert str(results[clips[1]]) == f"{clips[1]}: the decoder crashed (signal 11); skipped"
    for clip in clips[:1] + clips[2:]:
        np.testing.assert_array_equal(results[clip].numpy(), load_window(clip, WINDOW).numpy())


def test_a_hanging_decoder_is_reported_and_skipped(monkeypatch, clips):
    monkeypatch.setenv(TEST_FAULT_VARIABLE, f"hang:{clips[2].name}")
    results = dict(decode_windows(clips, WINDOW, lookahead=2, timeout=1.0))
    assert str(results[clips[2]]) == f"{clips[2]}: decoding took longer than 1 s; skipped"
    assert all(results[clip].shape == (16000,) for clip in clips if clip != clips[2])


def test_closing_the_stream_ends_the_worker(monkeypatch, clips):
    started = []
    original = _Worker._start

    def remember(self):
        original(self)
        started.append(self.process)

    monkeypatch.setattr(_Worker, "_start", remember)
    stream = decode_windows(clips, WINDOW, lookahead=2)
    next(stream)
    stream.close()
    assert started and all(process.poll() is not None for process in started)
    with pytest.raises(ProcessLookupError):
        os.kill(started[0].pid, 0)
