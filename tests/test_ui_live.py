"""The Live tab's clock with the real tiny models: when rendering is slower than the hop, windows
are skipped and the page says so; renders never pile up behind the microphone."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest

pytest.importorskip("gradio", reason="audiotoken ui needs the [ui] extra")

from factories import tone  # noqa: E402
from ui_support import make_models  # noqa: E402

from audiotoken_cli.ui.folders import Limits, ServerFolders  # noqa: E402
from audiotoken_cli.ui.live_tab import LiveState, _on_chunk  # noqa: E402
from audiotoken_cli.ui.models import SharedModels  # noqa: E402

RATE, CHUNK = 16_000, 0.25  # seconds of microphone per chunk


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    parts = make_models(tmp_path_factory.mktemp("models"), fast=False)
    models = SharedModels(dict(device="cpu", dtype="float32", offline=True, sd=str(parts["sd"]),
                               audio_encoder=str(parts["audio_encoder"]),
                               embedder=str(parts["embedder"])))
    folders = ServerFolders.create(Limits())
    yield models, folders
    folders.remove_all()


def stream(models, folders, seconds: float, hop: float, steps: int) -> list[str]:
    """Feed the microphone in real time (a chunk every CHUNK seconds of wall clock, as gradio
    does: a chunk that arrives during a render waits for it); the status lines it produced."""
    live, lines = LiveState(), []
    samples = (tone(seconds + 1, freq=300)[0] * 32767).astype(np.int16)
    settings = dict(steps=steps, guidance=7.5, width=64, height=64, negative_prompt="",
                    scheduler="pndm")
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        at = int((time.monotonic() - began) * RATE)
        chunk = samples[at:at + int(CHUNK * RATE)]
        line = _on_chunk(folders, models, "live-test", live, (RATE, chunk), hop, 1.0, 5,
                         "a photo of <*>", settings, False)
        if line:
            lines.append(line)
        time.sleep(max(0.0, CHUNK - (time.monotonic() - began) % CHUNK))
    return lines


def test_a_fast_enough_render_draws_every_hop_and_skips_none(shared):
    models, folders = shared
    models.get(False)  # loaded before the clock starts
    lines = stream(models, folders, seconds=4.0, hop=1.0, steps=1)
    assert len(lines) >= 3 and not any("skipped" in line for line in lines), lines


def test_a_slow_render_skips_windows_says_so_and_builds_no_backlog(shared):
    models, folders = shared
    models.get(False)
    began = time.monotonic()
    # 30 steps: several times the hop even on a quiet machine (10 took 0.5 s, the hop itself).
    lines = stream(models, folders, seconds=5.0, hop=0.5, steps=30)
    elapsed = time.monotonic() - began
    took = [float(re.search(r"took ([\d.]+) s", line).group(1)) for line in lines]
    assert min(took) > 0.5, took  # each render is slower than the hop, the case under test
    assert any("rendering is slower than the microphone" in line for line in lines), lines
    # No backlog: the stream ends with the microphone, not renders later; every render started
    # on a fresh hop, so there are no more of them than the renders' own time allows.
    assert elapsed < 5.0 + 2 * max(took)
    assert len(lines) <= elapsed / min(took) + 1
    # Each count is the hops that passed during the render before it: none lost, none invented
    # (give or take the hop a chunk straddles).
    for before, line in zip(took, lines[1:]):
        found = re.search(r"skipped (\d+) window", line)
        skipped = int(found.group(1)) if found else 0
        assert before / 0.5 - 2 <= skipped <= before / 0.5 + 1, (before, line)
