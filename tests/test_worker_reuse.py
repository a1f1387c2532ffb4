"""What the decoder worker gained for short batches: a pre-started worker that streams adopt
and hand back, a window per request, and windows returned through the shared results file."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hostile_factories import noise, write_wav

from audiotoken_cli.audio import worker as worker_module
from audiotoken_cli.audio.decode import load_window
from audiotoken_cli.audio.worker import (
    TEST_FAULT_VARIABLE,
    decode_arrays,
    decode_each,
    prestart,
    probe_each,
    stop_prestarted,
)
from audiotoken_cli.config import Window
from audiotoken_cli.errors import InputError

WINDOW = Window(0.0, 1.0)


@pytest.fixture
def clips(tmp_path):
    return [write_wav(tmp_path / f"clip{i}.wav", noise(2, 0.5, seed=i)) for i in range(4)]


@pytest.fixture(autouse=True)
def no_worker_left_behind():
    stop_prestarted()
    yield
    stop_prestarted()


def kept_process():
    return worker_module._prestarted.process if worker_module._prestarted else None


def test_a_prestarted_worker_serves_the_next_streams_and_waits_for_more(clips):
    prestart()
    process = kept_process()
    first = dict(decode_arrays(clips, WINDOW, lookahead=2))
    assert kept_process() is process and process.poll() is None  # handed back, still running
    second = list(probe_each(clips[:1]))
    assert kept_process() is process
    assert second[0][1].duration == pytest.approx(0.5)
    for clip in clips:
        np.testing.assert_array_equal(first[clip], load_window(clip, WINDOW).numpy())
    stop_prestarted()
    assert process.poll() is not None


def test_a_stream_closed_early_ends_even_a_prestarted_worker(clips):
    prestart()
    process = kept_process()
    stream = decode_arrays(clips, WINDOW, lookahead=2)
    next(stream)
    stream.close()  # the worker still holds requests: it cannot serve another stream cleanly
    assert kept_process() is None
    assert process.wait(timeout=5) is not None


def test_a_crash_in_a_prestarted_worker_costs_one_file_and_a_fresh_worker_is_kept(
        monkeypatch, clips):
    monkeypatch.setenv(TEST_FAULT_VARIABLE, f"crash:{clips[1].name}")
    prestart()
    crashed = kept_process()
    results = dict(decode_arrays(clips, WINDOW, lookahead=3))
    assert str(results[clips[1]]) == f"{clips[1]}: the decoder crashed (signal 11); skipped"
    for clip in clips[:1] + clips[2:]:
        np.testing.assert_array_equal(results[clip], load_window(clip, WINDOW).numpy())
    assert crashed.poll() == -11
    assert kept_process() is not None and kept_process().poll() is None


def test_a_worker_started_under_another_fault_setting_is_not_reused(monkeypatch, clips):
    prestart()
    before = kept_process()
    monkeypatch.setenv(TEST_FAULT_VARIABLE, f"hang:{clips[0].name}")
    results = dict(decode_arrays(clips[:1], WINDOW, timeout=1.0))
    assert str(results[clips[0]]) == f"{clips[0]}: decoding took longer than 1 s; skipped"
    assert before.wait(timeout=5) is not None


def test_windows_of_many_lengths_in_flight_at_once_come_back_intact(tmp_path):
    """Windows share the results file; different lengths in flight together must not overlap."""
    clip = write_wav(tmp_path / "long.wav", noise(1, 6.0))
    windows = [Window(start, duration) for start, duration in
               [(0.0, 0.5), (1.0, 3.0), (0.2, 0.1), (2.0, 4.0), (0.0, 1.0), (5.0, 0.7),
                (0.5, 2.5), (3.0, 0.3)]]
    results = list(decode_each([(clip, window) for window in windows], lookahead=3))
    assert [window for (_path, window), _ in results] == windows
    for (_path, window), samples in results:
        np.testing.assert_array_equal(samples, load_window(clip, window).numpy())


def test_a_window_past_the_end_is_an_error_and_the_next_still_decodes(tmp_path):
    clip = write_wav(tmp_path / "short.wav", noise(1, 1.0))
    results = [result for _, result in
               decode_each([(clip, Window(5.0, 1.0)), (clip, Window(0.5, 0.25))])]
    assert isinstance(results[0], InputError) and "past the end" in str(results[0])
    np.testing.assert_array_equal(results[1], load_window(clip, Window(0.5, 0.25)).numpy())


def test_a_forked_child_does_not_adopt_its_parents_worker(clips):
    prestart()
    parent_worker = worker_module._prestarted
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        adopted = worker_module._take_worker()
        os.write(write, b"same" if adopted is parent_worker else b"own")
        adopted.stop()
        os._exit(0)
    os.close(write)
    answer = os.read(read, 16)
    os.waitpid(child, 0)
    assert answer == b"own"
    assert kept_process() is parent_worker.process and parent_worker.usable()
