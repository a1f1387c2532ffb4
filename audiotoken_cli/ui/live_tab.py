"""The Live tab: the microphone streams in; every hop, the last window becomes a new image.

The seed stays the same for the whole stream, so every image starts from the same noise and
consecutive images morph rather than jump (``generate_from_token`` promises the same noise for
the same seed and settings). With the fast switch on, the fast model draws (LCM, 4 steps).

Never a backlog: gradio keeps only the newest chunk of a stream while the handler runs, and a
render starts only when a hop boundary has passed on the wall clock. Boundaries that passed
during a slow render are skipped, and the page says how many. When another tab is using the
UNet, this window is skipped rather than queued.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
import numpy as np

from audiotoken_cli.ui.folders import ServerFolders
from audiotoken_cli.ui.generate_tab import (
    Settings,
    chosen_seed,
    loading_note,
    render_settings,
)
from audiotoken_cli.ui.messages import one_line
from audiotoken_cli.ui.models import SharedModels

SHOWN = 8  # images kept in the page (and on disk): the newest first


@dataclass
class LiveState:
    """One browser session's stream: the newest audio, the hop clock, the images shown."""

    rate: int = 0
    audio: np.ndarray = field(default_factory=lambda: np.zeros((1, 0), np.float32))  # (C, S)
    started: float | None = None
    last_hop: int = -1
    seed: int | None = None
    folder: Path | None = None
    shown: list = field(default_factory=list)  # [(png path, caption)], newest first
    count: int = 0
    skipped: int = 0

    def add(self, rate: int, chunk: np.ndarray, window: float) -> None:
        """Append a chunk ((S,) or (S, C) int16, as gradio gives it) and keep the last window."""
        samples = np.asarray(chunk, dtype=np.float32) / 32768.0
        samples = samples[None] if samples.ndim == 1 else samples.T  # (C, S)
        if rate != self.rate or samples.shape[0] != self.audio.shape[0]:
            self.rate, self.audio = rate, samples[:, :0]
        self.audio = np.concatenate([self.audio, samples], axis=1)[:, -int(window * rate):]


def build(folders: ServerFolders, models: SharedModels, settings: Settings) -> None:
    gr.Markdown("Sing, clap or play into the microphone. Every hop, the last window of sound "
                "becomes a new image, with the Generate tab's prompt, size and sampler (tick "
                "Fast there for the LCM path). The seed stays fixed, so the images morph.")
    with gr.Row():
        with gr.Column(scale=1):
            mic = gr.Audio(sources=["microphone"], streaming=True, type="numpy",
                           label="Microphone", elem_id="live-mic")
            hop = gr.Slider(0.5, 10, value=2.0, step=0.5, label="Hop: seconds between images",
                            elem_id="live-hop")
            window = gr.Slider(0.5, 10, value=4.0, step=0.5,
                               label="Window: seconds of sound per image", elem_id="live-window")
            seed = gr.Number(value=-1, label="Seed (-1: random; fixed for the stream)",
                             precision=0, minimum=-1, elem_id="live-seed")
        with gr.Column(scale=2):
            status = gr.Markdown("", elem_id="live-status")
            gallery = gr.Gallery(label="Newest first", columns=4, format="png",
                                 elem_id="live-gallery", interactive=False)
    state = gr.State(None)

    def chunk(audio, live, hop_s, window_s, seed_value, prompt, negative, steps, guidance,
              scheduler, width, height, fast, request: gr.Request):
        live = live or LiveState()
        try:
            message = _on_chunk(folders, models, request.session_hash, live, audio, float(hop_s),
                                float(window_s), seed_value, prompt,
                                render_settings(steps, guidance, scheduler, width, height,
                                                negative, fast), fast)
        except Exception as error:  # noqa: BLE001 - one line in the page; the stream goes on
            message = one_line(error, folders.root)
        return live.shown or gr.update(), message if message else gr.update(), live

    mic.stream(chunk, inputs=[mic, state, hop, window, seed, settings.prompt,
                              settings.negative_prompt, settings.steps, settings.guidance,
                              settings.scheduler, settings.width, settings.height, settings.fast],
               outputs=[gallery, status, state], stream_every=0.5, concurrency_id="live",
               concurrency_limit=None, show_progress="hidden")

    def start(fast):
        yield None, loading_note(models, fast) or "listening…"  # a fresh stream, a fresh clock
        try:
            models.get(fast)  # loaded while the first hop fills, in sight of the page
        except Exception as error:  # noqa: BLE001
            yield gr.update(), one_line(error, folders.root)
            return
        yield gr.update(), "listening…"

    mic.start_recording(start, inputs=settings.fast, outputs=[state, status],
                        show_progress="hidden")


def _on_chunk(folders, models, session, live: LiveState, audio, hop: float, window: float,
              seed, prompt, settings: dict, fast: bool) -> str | None:
    """Add the chunk; render when a hop boundary has passed. Returns the status line, if new."""
    if audio is None:
        return None
    rate, samples = audio
    live.add(int(rate), samples, window)
    now = time.monotonic()
    if live.started is None:
        live.started = now
        live.seed = chosen_seed(seed)
        live.folder = folders.new_run(session, "live")
    boundary = int((now - live.started) / hop)
    if boundary <= live.last_hop or boundary == 0:
        return None
    missed = boundary - live.last_hop - 1 if live.last_hop >= 0 else boundary - 1
    live.last_hop = boundary
    loading = not models.loaded(fast)
    if loading:
        missed = 0  # the first image waits for the models to load; that is not falling behind
    model = models.get(fast)
    models.check_open()
    if not models.unet.acquire(blocking=False):
        live.skipped += 1
        return f"skipped a window: another request is using the model ({live.skipped} skipped)"
    try:
        began = time.monotonic()
        token = model.embed((live.audio, live.rate), duration=window)
        image = model.generate_from_token(token, n=1, seed=live.seed, prompt=prompt,
                                          on_step=lambda done, total: models.check_open(),
                                          **settings)[0]
        took = time.monotonic() - began
    finally:
        models.unet.release()
    if not folders.keep(session, lambda: _show(live, image, took)):
        return None  # the session ended while this image rendered
    if loading:  # the hops that passed while the models loaded were not skipped renders
        live.last_hop = int((time.monotonic() - live.started) / hop)
    live.skipped += missed
    message = f"image {live.count} took {took:.1f} s"
    if loading:
        message += " (after loading the models)"
    if missed:
        message += (f"; skipped {missed} window{'s' * (missed != 1)}: rendering is slower "
                    f"than the microphone ({live.skipped} skipped in all)")
    return message


def _show(live: LiveState, image, took: float) -> None:
    import audiotoken_cli as audiotoken

    live.count += 1
    path = live.folder / f"live_{live.count:05d}.png"
    audiotoken.save_image(image, path)
    live.shown.insert(0, (str(path), f"#{live.count} · {took:.1f} s"))
    for old, _ in live.shown[SHOWN:]:
        Path(old).unlink(missing_ok=True)
    del live.shown[SHOWN:]
