"""The app's page, its queue, and its life: bind, serve, clean up on Ctrl-C or SIGTERM."""

from __future__ import annotations

import os
import signal
import threading
from dataclasses import dataclass, field

import gradio as gr

from audiotoken_cli.errors import UsageError
from audiotoken_cli.ui.folders import Limits, ServerFolders
from audiotoken_cli.ui.models import SharedModels


@dataclass
class UiOptions:
    host: str = "127.0.0.1"
    port: int = 7860
    share: bool = False
    limits: Limits = field(default_factory=Limits)
    load: dict = field(default_factory=dict)
    """``audiotoken.load()``'s keywords (model, sd, device, ...)."""
    fast_load: dict = field(default_factory=dict)
    """Extra keywords for the fast model (lcm_lora, taesd)."""
    fast: bool = False
    """Whether the page's Fast switch starts on."""


def build_app(folders: ServerFolders, models: SharedModels, fast: bool = False):
    """The page: three tabs over one shared model."""
    from audiotoken_cli.ui import generate_tab, live_tab, video_tab

    with gr.Blocks(title="audiotoken", analytics_enabled=False) as demo:
        gr.Markdown("## audiotoken: sounds into pictures")
        with gr.Tab("Generate", id="generate", elem_id="tab-generate"):
            settings = generate_tab.build(folders, models, fast)
        with gr.Tab("Video", id="video", elem_id="tab-video"):
            video_tab.build(folders, models, settings)
        with gr.Tab("Live", id="live", elem_id="tab-live"):
            live_tab.build(folders, models, settings)

        def session_ended(request: gr.Request):
            folders.end_session(request.session_hash)

        demo.unload(session_ended)
    return demo


def serve(options: UiOptions, on_ready=print) -> None:
    """Serve until Ctrl-C or SIGTERM, then remove every upload and output."""
    folders = ServerFolders.create(options.limits)
    # gradio keeps uploads (and serves files) under GRADIO_TEMP_DIR, read as the page is built.
    os.environ["GRADIO_TEMP_DIR"] = str(folders.root)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    stop = threading.Event()
    previous = _on_signals(stop)
    demo = models = None
    try:
        models = SharedModels(options.load, options.fast_load)
        demo = build_app(folders, models, options.fast)
        # The UNet's events share one concurrency slot (concurrency_id "unet"); the live stream
        # takes the same lock without waiting, so no two requests render at once.
        demo.queue(default_concurrency_limit=1)
        try:
            demo.launch(server_name=options.host, server_port=options.port,
                        share=options.share, max_file_size=options.limits.max_bytes,
                        prevent_thread_lock=True, show_error=False, quiet=True, inbrowser=False,
                        theme=_theme(), ssr_mode=False, footer_links=[])
        except OSError:  # gradio's own message names its environment variables, not our options
            raise UsageError(f"cannot listen on {options.host}:{options.port}: the port is in "
                             "use or the address is not this machine's; choose another with "
                             "--port or --host") from None
        on_ready(f"audiotoken ui: serving on {demo.local_url} (Ctrl-C stops it; uploads and "
                 f"outputs are kept in {folders.root} until then)")
        stop.wait()
    finally:
        if models is not None:
            models.close()  # no thread may still be inside torch when the interpreter exits
        if demo is not None:
            demo.close()
        folders.remove_all()
        _restore(previous)
        on_ready("audiotoken ui: stopped; uploads and outputs removed")


def _theme():
    """gradio's default look with system fonts: its own theme would fetch a web font from
    Google's servers, which a local app should not need."""
    return gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                             font_mono=["ui-monospace", "monospace"])


def _on_signals(stop: threading.Event) -> dict:
    previous = {}
    for number in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[number] = signal.signal(number, lambda *_: stop.set())
        except ValueError:  # not the main thread (a test calling serve): no signals to catch
            pass
    return previous


def _restore(previous: dict) -> None:
    for number, handler in previous.items():
        signal.signal(number, handler)
