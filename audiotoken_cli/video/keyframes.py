"""The keyframe schedule of ``audiotoken video``: which moments of a sound get their own token.

Keyframe k sits at time t_k = k·hop (k = 0, 1, ... while t_k ≤ the audio's duration). Its token
comes from its own window of ``window`` seconds centred on t_k, shifted (not shrunk) to stay
inside the file: start = clamp(t_k − window/2, 0, duration − window). A file shorter than the
window starts at 0 and is looped to fill it, as ``generate`` does. Keyframe k's token is then
exactly ``embed --start S --duration D`` and its image exactly ``generate --start S --duration D
--seed SEED``: the same decoder (``load_window``), the same tokenizer, the same renderer.

Frame i of the video shows time i/fps. Between keyframes k and k+1 it takes the interpolation
weight w ∈ [0, 1) of its place in the interval (linear in time, or by the onset strength with
``--audio-reactive``); after the last keyframe the picture holds.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from audiotoken_cli.config import Window
from audiotoken_cli.errors import InputError

TIME_DECIMALS = 3
"""Window starts are kept to the millisecond, so the sidecar's numbers are the ones to pass to
``embed --start`` and they select the same samples (16 samples per millisecond)."""


@dataclass(frozen=True)
class Keyframe:
    """One keyframe: its moment, its audio window and the seed of its picture (seconds)."""

    index: int
    time: float
    start: float
    duration: float
    seed: int

    @property
    def window(self) -> Window:
        return Window(start=self.start, duration=self.duration)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class FramePlan:
    """What frame ``index`` shows: keyframe ``key`` blended towards key+1 by ``weight``."""

    index: int
    key: int
    weight: float

    @property
    def on_keyframe(self) -> bool:
        return self.weight == 0.0


def schedule(duration: float, hop: float, window: float, seed: int) -> list[Keyframe]:
    """The keyframes of a sound ``duration`` seconds long (see the module's docstring)."""
    if duration <= 0:
        raise ValueError(f"duration must be positive, got {duration}")
    count = math.floor(duration / hop + 1e-9) + 1
    latest_start = max(0.0, duration - window)
    keyframes = []
    for index in range(count):
        time = round(index * hop, TIME_DECIMALS)
        start = min(max(time - window / 2, 0.0), latest_start)
        # Round down so a window that ends at the file's end stays inside it.
        start = math.floor(start * 10**TIME_DECIMALS + 1e-6) / 10**TIME_DECIMALS
        keyframes.append(Keyframe(index, time, start, float(window), seed))
    return keyframes


def frame_count(duration: float, fps: int) -> int:
    """Frames in a video as long as the audio: round(fps × duration), at least one."""
    return max(1, round(fps * duration))


def frame_plan(num_frames: int, fps: int, keyframes: list[Keyframe],
               weights: np.ndarray | None = None) -> list[FramePlan]:
    """Each frame's keyframe and weight. ``weights``, when given, are the frames' weights as
    placed by the onset strength (see ``audio/onsets.py``); otherwise weights are linear in time."""
    times = [key.time for key in keyframes]
    plans = []
    for index in range(num_frames):
        moment = index / fps
        key = _interval(times, moment)
        if key == len(times) - 1:
            weight = 0.0  # after the last keyframe the picture holds
        elif weights is not None:
            weight = float(weights[index])
        else:
            weight = (moment - times[key]) / (times[key + 1] - times[key])
        # A frame within a microsecond of a keyframe is that keyframe.
        plans.append(FramePlan(index, key, 0.0 if weight < 1e-6 else min(weight, 1.0)))
    return plans


def _interval(times: list[float], moment: float) -> int:
    """The index k with times[k] ≤ moment < times[k+1] (the last one past the end)."""
    import bisect

    return max(0, bisect.bisect_right(times, moment + 1e-9) - 1)


def chunks(plans: list[FramePlan]) -> list[list[FramePlan]]:
    """Frames grouped by keyframe interval: the unit rendered, cached and resumed together."""
    groups: dict[int, list[FramePlan]] = {}
    for plan in plans:
        groups.setdefault(plan.key, []).append(plan)
    return [groups[key] for key in sorted(groups)]


def media_duration(path: Path) -> float:
    """The audio track's duration in seconds (``audio.media.probe``: the header, else the
    packets; read in the decoder worker)."""
    from audiotoken_cli.audio.media import probe

    info = probe(path)
    if not info.has_audio:
        raise InputError(f"{path}: has no audio track")
    return info.duration
