"""Onset strength and the audio-reactive placement of in-between frames."""

from __future__ import annotations

import numpy as np
import torch
from factories import write_audio

from audiotoken_cli.audio.onsets import (
    interval_weights,
    onset_strength,
    reactive_weights,
)
from audiotoken_cli.video.keyframes import frame_plan, schedule

RATE = 16000


def quiet_with_clicks(seconds: float, clicks: list[float], seed: int = 0) -> np.ndarray:
    """Soft noise with a loud 5 ms burst at each time in ``clicks``: (S,) float32."""
    rng = np.random.default_rng(seed)
    audio = 0.003 * rng.standard_normal(round(seconds * RATE))
    for moment in clicks:
        at = round(moment * RATE)
        audio[at:at + 80] += 0.8 * rng.standard_normal(80)
    return audio.astype(np.float32)


def test_onset_strength_peaks_at_the_click():
    strength = onset_strength(torch.from_numpy(quiet_with_clicks(2.0, [1.2])))
    assert abs(int(strength.argmax()) / 100 - 1.2) <= 0.03


def test_weights_rise_from_zero_to_one_and_gather_at_the_click():
    fps, hop = 8, 2.0
    offsets = np.arange(round(hop * fps) + 1) / fps  # 0, 1/8, ..., 2 s
    weights = interval_weights(torch.from_numpy(quiet_with_clicks(hop, [1.2])), hop, offsets)
    assert weights[0] == 0.0 and abs(weights[-1] - 1.0) < 1e-9
    steps = np.diff(weights)
    assert np.all(steps > 0)  # strictly monotone: a quiet stretch still moves a little
    # The frame step that spans the click (1.125 s → 1.25 s) carries most of the change.
    assert int(np.argmax(steps)) == 9 and steps[9] > 0.5
    assert weights[8] < 0.3  # before the click the picture has barely moved


def test_frames_of_a_file_follow_its_clicks(tmp_path):
    source = write_audio(tmp_path / "clicks.wav", quiet_with_clicks(6.0, [0.65, 3.75])[None])
    keys = schedule(6.0, 2.0, 4.0, seed=1)
    weights = reactive_weights(source, 6.0, [k.time for k in keys], fps=10)
    plans = frame_plan(60, 10, keys, weights)
    first = [p.weight for p in plans if p.key == 0]
    second = [p.weight for p in plans if p.key == 1]
    assert first[0] == 0.0 and np.all(np.diff(first) > 0)
    assert int(np.argmax(np.diff(first))) == 6  # 0.6 s → 0.7 s holds the click at 0.65 s
    assert int(np.argmax(np.diff(second))) == 17  # 3.7 s → 3.8 s holds the one at 3.75 s
    assert max(second) < 1.0
