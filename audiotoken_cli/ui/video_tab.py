"""The Video tab: a long recording becomes ``audiotoken video``'s MP4. The storyboard shows as
soon as the keyframes are drawn, then the MP4 (with the recording's sound) plays in the page."""

from __future__ import annotations

import queue
import threading
import time

import gradio as gr

from audiotoken_cli.ui.folders import ServerFolders
from audiotoken_cli.ui.generate_tab import (
    Settings,
    chosen_seed,
    loading_note,
    render_settings,
)
from audiotoken_cli.ui.messages import one_line
from audiotoken_cli.ui.models import SharedModels


def build(folders: ServerFolders, models: SharedModels, settings: Settings) -> None:
    gr.Markdown("Drawn with the Generate tab's prompt, sampler and size. Each keyframe is "
                "exactly `generate` for its window; the frames between morph from one to the "
                "next.")
    with gr.Row():
        with gr.Column(scale=1):
            upload = gr.File(label="A long recording (sound or video)", type="filepath",
                             elem_id="video-upload")
            seed = gr.Number(value=-1, label="Seed (-1: random)", precision=0, minimum=-1,
                             elem_id="video-seed")
            hop = gr.Slider(0.5, 30, value=2.0, step=0.5, label="Hop: seconds between keyframes",
                            elem_id="video-hop")
            fps = gr.Slider(1, 30, value=8, step=1, label="Frames per second", elem_id="video-fps")
            keyframes_only = gr.Checkbox(False, label="Keyframes only (no in-between frames)",
                                         elem_id="keyframes-only")
            go = gr.Button("Make the video", variant="primary", elem_id="video-button")
        with gr.Column(scale=2):
            status = gr.Markdown("", elem_id="video-status")
            storyboard = gr.Image(label="Storyboard", type="filepath", interactive=False,
                                  elem_id="storyboard")
            player = gr.Video(label="Video", interactive=False, height=420, elem_id="video-player")

    def run(upload_path, seed_value, hop_value, fps_value, only_keys, prompt, negative, steps,
            guidance, scheduler, width, height, fast, request: gr.Request,
            progress=gr.Progress()):
        options = dict(seed=seed_value, hop=float(hop_value), fps=int(fps_value),
                       keyframes_only=bool(only_keys), prompt=prompt,
                       **render_settings(steps, guidance, scheduler, width, height, negative, fast))
        yield from _video(folders, models, request.session_hash, upload_path, options, fast,
                          progress)

    go.click(run, inputs=[upload, seed, hop, fps, keyframes_only, settings.prompt,
                          settings.negative_prompt, settings.steps, settings.guidance,
                          settings.scheduler, settings.width, settings.height, settings.fast],
             outputs=[storyboard, player, status], concurrency_id="unet", concurrency_limit=1)


def _video(folders, models, session, audio_path, options, fast, progress):
    """Runs ``AudioToken.video`` in a worker thread and relays its events to the page."""
    import audiotoken_cli as audiotoken

    try:
        upload = folders.checked_upload(audio_path, "a recording")
        note = loading_note(models, fast)
        if note:
            yield gr.update(), gr.update(), note
        model = models.get(fast)
        options["seed"] = chosen_seed(options["seed"])
        output = folders.new_run(session, "video")
        messages: queue.Queue = queue.Queue()
        counts = {"keyframes": 0, "keyframe": 0, "frames": 0, "frame": 0}

        def count(name, value=None):
            models.check_open()
            counts[name] = value if value is not None else counts[name] + 1
            messages.put(("progress", None))

        events = audiotoken.VideoEvents(
            on_keyframes=lambda total: count("keyframes", total),
            on_keyframe=lambda: count("keyframe"),
            on_frames=lambda total: count("frames", total),
            on_frame=lambda: count("frame"),
            on_step=models.check_open,
            on_storyboard=lambda path: messages.put(("storyboard", path)))

        def work():
            try:
                with models.unet:
                    messages.put(("done", model.video(str(upload), output, storyboard=True,
                                                      events=events, **options)))
            except BaseException as error:  # noqa: BLE001 - relayed to the page
                messages.put(("error", error))
            finally:
                folders.discard_if_ended(session, output)

        began = time.monotonic()
        threading.Thread(target=work, daemon=True, name="audiotoken-video").start()
        drawing = f"drawing the keyframes of {upload.name}, seed {options['seed']}…"
        yield gr.update(), gr.update(), drawing
        while True:
            kind, value = messages.get()
            if kind == "progress":
                _show(progress, counts)
            elif kind == "storyboard":
                yield str(value), gr.update(), "storyboard done; rendering the frames between…"
            elif kind == "error":
                raise value
            else:
                seconds = time.monotonic() - began
                yield (str(value.storyboard) if value.storyboard else gr.update(),
                       str(value.mp4) if value.mp4 else None,
                       f"{upload.name}: {counts['keyframes']} keyframes, video in {seconds:.1f} s")
                return
    except Exception as error:  # noqa: BLE001
        yield gr.update(), gr.update(), one_line(error, folders.root)


def _show(progress, counts) -> None:
    if counts["frames"]:
        progress((counts["frame"], counts["frames"]),
                 desc=f"frame {counts['frame']} of {counts['frames']}")
    elif counts["keyframes"]:
        progress((counts["keyframe"], counts["keyframes"]),
                 desc=f"keyframe {counts['keyframe']} of {counts['keyframes']}")
