"""The keyframe schedule and frame plan of `audiotoken video` (pure functions, no models)."""

from __future__ import annotations

import pytest
import torch

from audiotoken_cli.video.keyframes import chunks, frame_count, frame_plan, schedule
from audiotoken_cli.render.interpolate import crossfade, slerp


def test_windows_are_centred_and_kept_inside_the_file():
    keys = schedule(40.0, hop=2.0, window=10.0, seed=7)
    assert len(keys) == 21 and keys[-1].time == 40.0
    assert [k.start for k in keys[:5]] == [0.0, 0.0, 0.0, 1.0, 3.0]
    assert keys[10].start == 15.0  # t = 20 s: 15 s … 25 s
    assert all(0.0 <= k.start <= 30.0 and k.duration == 10.0 and k.seed == 7 for k in keys)
    assert keys[-1].start == 30.0


def test_a_file_shorter_than_the_window_starts_at_zero():
    keys = schedule(3.5, hop=2.0, window=10.0, seed=1)
    assert [(k.time, k.start, k.duration) for k in keys] == [(0.0, 0.0, 10.0), (2.0, 0.0, 10.0)]


def test_frames_cover_the_audio_and_weights_rise_through_each_interval():
    keys = schedule(5.0, hop=2.0, window=4.0, seed=1)  # keyframes at 0, 2, 4 s
    count = frame_count(5.0, fps=4)
    plans = frame_plan(count, 4, keys)
    assert count == 20
    assert [p.key for p in plans[:9]] == [0] * 8 + [1]
    assert [p.weight for p in plans[:8]] == pytest.approx([i / 8 for i in range(8)])
    assert all(p.weight == 0.0 for p in plans if p.key == 2)  # after the last keyframe: hold
    assert [len(c) for c in chunks(plans)] == [8, 8, 4]


def test_slerp_keeps_the_ends_and_shared_rows_and_stays_between_norms():
    a, b = torch.randn(77, 32), torch.randn(77, 32)
    b[:5] = a[:5]  # rows before the placeholder are the same in every prompt
    assert torch.equal(slerp(a, b, 0.0), a) and torch.equal(slerp(a, b, 1.0), b)
    middle = slerp(a, b, 0.5)
    assert torch.allclose(middle[:5], a[:5], atol=1e-6)
    norms = middle.norm(dim=-1)
    low = torch.minimum(a.norm(dim=-1), b.norm(dim=-1))
    high = torch.maximum(a.norm(dim=-1), b.norm(dim=-1))
    assert torch.all(norms >= low - 1e-4) and torch.all(norms <= high + 1e-4)


def test_crossfade_blends_pixels():
    import numpy as np

    a = np.zeros((2, 2, 3), np.uint8)
    b = np.full((2, 2, 3), 200, np.uint8)
    assert crossfade(a, b, 0.25).tolist() == np.full((2, 2, 3), 50).tolist()
