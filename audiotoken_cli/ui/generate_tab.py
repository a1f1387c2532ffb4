"""The Generate tab: a sound (upload or microphone) and the settings of ``audiotoken generate``,
a gallery of the PNGs ``generate`` would write, the sound's token file, and "reuse this image's
settings"."""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
from PIL import Image

from audiotoken_cli.ui.folders import ServerFolders
from audiotoken_cli.ui.messages import one_line
from audiotoken_cli.ui.models import SharedModels

# The samplers `generate --scheduler` offers (the CLI's own list); --fast always samples with LCM.
SCHEDULERS = ["dpm++", "pndm", "ddim", "euler", "euler-a"]
PLAIN_STEPS, PLAIN_GUIDANCE = 25, 7.5
# What `generate --fast` uses when --steps and --guidance are not given.
FAST_STEPS, FAST_GUIDANCE = 4, 1.0
MAX_SEED = 2**31 - 1  # the CLI's random seeds are drawn below 2**31 too


@dataclass
class Settings:
    """The Generate tab's controls; the Live tab draws with the same ones."""

    prompt: gr.Textbox
    negative_prompt: gr.Textbox
    seed: gr.Number
    num_images: gr.Slider
    steps: gr.Slider
    guidance: gr.Slider
    scheduler: gr.Dropdown
    width: gr.Slider
    height: gr.Slider
    fast: gr.Checkbox

    def inputs(self) -> list:
        return [self.prompt, self.negative_prompt, self.seed, self.num_images, self.steps,
                self.guidance, self.scheduler, self.width, self.height, self.fast]


def render_settings(steps, guidance, scheduler, width, height, negative_prompt, fast) -> dict:
    """The per-call settings of ``AudioToken.generate``, from the page's values."""
    settings = dict(steps=int(steps), guidance=float(guidance), width=int(width),
                    height=int(height), negative_prompt=negative_prompt or "")
    if not fast:  # the fast model samples with LCM whatever is asked
        settings["scheduler"] = scheduler
    return settings


def progress_text(done: int, total: int, n: int, steps: int) -> str:
    """The API counts image-steps; images of one UNet batch advance together, so the line names
    both counts rather than guessing which image is on which step."""
    return f"{n} image{'s' * (n != 1)} × {steps} steps: {done} of {total} image-steps"


def chosen_seed(value) -> int:
    """The page's seed; -1 or empty (A1111's convention) draws a random one."""
    return secrets.randbelow(MAX_SEED) if value is None or int(value) < 0 else int(value)


def loading_note(models: SharedModels, fast: bool) -> str | None:
    if models.loaded(fast):
        return None
    return "loading models… (once per server; the first request waits for it)"


def build(folders: ServerFolders, models: SharedModels, fast_first: bool = False) -> Settings:
    with gr.Row():
        with gr.Column(scale=1):
            upload = gr.File(label="Sound or video (any format `generate` reads)",
                             type="filepath", elem_id="generate-upload")
            record = gr.Audio(label="…or record one", sources=["microphone"], type="filepath",
                              elem_id="generate-record")
            prompt = gr.Textbox("a photo of <*>", label="Prompt (<*> is where the sound goes)",
                                elem_id="prompt")
            negative = gr.Textbox("", label="Negative prompt", elem_id="negative-prompt")
            with gr.Row():
                seed = gr.Number(value=-1, label="Seed (-1: random)", precision=0,
                                 minimum=-1, elem_id="seed")
                dice = gr.Button("New seed", scale=0, min_width=96, elem_id="dice")
            num_images = gr.Slider(1, 16, value=4, step=1, label="Images", elem_id="num-images")
            fast = gr.Checkbox(fast_first, label="Fast (LCM-LoRA + TAESD, 4 steps)",
                               elem_id="fast")
            with gr.Accordion("Sampler and size", open=False, elem_id="sampler-settings"):
                first_steps, first_guidance, _ = _sampler_defaults(fast_first)
                steps = gr.Slider(1, 150, value=first_steps, step=1, label="Steps",
                                  elem_id="steps")
                guidance = gr.Slider(0, 30, value=first_guidance, step=0.5, label="Guidance",
                                     elem_id="guidance")
                scheduler = gr.Dropdown(SCHEDULERS, value="dpm++", label="Scheduler",
                                        interactive=not fast_first, elem_id="scheduler")
                width = gr.Slider(64, 1024, value=512, step=8, label="Width", elem_id="width")
                height = gr.Slider(64, 1024, value=512, step=8, label="Height", elem_id="height")
            go = gr.Button("Generate", variant="primary", elem_id="generate-button")
        with gr.Column(scale=2):
            status = gr.Markdown("", elem_id="generate-status")
            gallery = gr.Gallery(label="Images", columns=4, format="png", elem_id="gallery",
                                 interactive=False)
            with gr.Row():
                reuse = gr.Button("Reuse this image's settings", elem_id="reuse")
                token_button = gr.Button("Download the audio token", elem_id="token-button")
            token_file = gr.File(label="Audio token (as `audiotoken embed` writes it)",
                                 visible=False, elem_id="token-file")
    settings = Settings(prompt, negative, seed, num_images, steps, guidance, scheduler, width,
                        height, fast)
    selected = gr.State(None)
    shown = gr.State([])  # the gallery's PNG paths, held by the server: never sent back by the page

    dice.click(lambda: secrets.randbelow(MAX_SEED), outputs=seed, queue=False)
    # .input, not .change: "reuse this image's settings" sets the switch without resetting them
    fast.input(_sampler_defaults, inputs=fast, outputs=[steps, guidance, scheduler], queue=False)

    def run(upload_path, record_path, prompt, negative, seed, n, steps, guidance, scheduler,
            width, height, fast, request: gr.Request, progress=gr.Progress()):
        yield from _generate(folders, models, request.session_hash, upload_path or record_path,
                             prompt, negative, seed, n, steps, guidance, scheduler, width, height,
                             fast, progress=progress)

    go.click(run, inputs=[upload, record, *settings.inputs()], outputs=[gallery, status, shown],
             api_name="generate", concurrency_id="unet", concurrency_limit=1)

    def chosen(event: gr.SelectData):
        return event.index

    gallery.select(chosen, outputs=selected, queue=False)
    reuse.click(_reuse, inputs=[shown, selected],
                outputs=[prompt, negative, seed, steps, guidance, scheduler, width, height, fast,
                         status], queue=False)

    def token(upload_path, record_path, fast, request: gr.Request):
        return _token(folders, models, request.session_hash, upload_path or record_path, fast)

    token_button.click(token, inputs=[upload, record, fast], outputs=[token_file, status],
                       concurrency_id="unet", concurrency_limit=1)
    return settings


def _sampler_defaults(fast: bool):
    if fast:
        return FAST_STEPS, FAST_GUIDANCE, gr.update(interactive=False)
    return PLAIN_STEPS, PLAIN_GUIDANCE, gr.update(interactive=True)


def _generate(folders, models, session, audio_path, prompt, negative, seed, n, steps, guidance,
              scheduler, width, height, fast, *, progress):
    try:
        upload = folders.checked_upload(audio_path)
        note = loading_note(models, fast)
        if note:
            yield gr.update(), note, gr.update()
        model = models.get(fast)
        n, steps = int(n), int(steps)
        seed = chosen_seed(seed)
        rendering = f"rendering {n} image{'s' * (n != 1)} of {upload.name}, seed {seed}…"
        yield gr.update(), rendering, gr.update()

        def on_step(done: int, total: int) -> None:
            models.check_open()
            progress((done, total), desc=progress_text(done, total, n, steps))

        began = time.monotonic()
        with models.unet:
            images = model.generate(str(upload), n=n, seed=seed, prompt=prompt, on_step=on_step,
                                    **render_settings(steps, guidance, scheduler, width, height,
                                                      negative, fast))
        run = folders.new_run(session, "generate")
        paths = [str(run / f"{upload.stem}_seed{json.loads(image.info['audiotoken'])['seed']}.png")
                 for image in images]  # generate's own names
        folders.keep(session, lambda: [_save(image, Path(path))
                                       for image, path in zip(images, paths)])
        yield paths, (f"made {len(paths)} image{'s' * (len(paths) != 1)} of {upload.name} in "
                      f"{time.monotonic() - began:.1f} s, seeds {seed}–{seed + n - 1}"), paths
    except Exception as error:  # noqa: BLE001 - every failure becomes one line in the page
        yield gr.update(), one_line(error, folders.root), gr.update()


def _save(image, path: Path) -> None:
    import audiotoken_cli as audiotoken

    audiotoken.save_image(image, path)


def _reuse(paths, index):
    """Every setting that changes the pixels, read back from the chosen PNG's JSON chunk."""
    if not paths or index is None or index >= len(paths) or not Path(paths[index]).is_file():
        return *[gr.update()] * 9, "error: choose an image in the gallery first"
    record = json.loads(Image.open(paths[index]).text["audiotoken"])
    fast = record["scheduler"] not in SCHEDULERS  # "lcm": made with the fast switch
    return (record["prompt"], record["negative_prompt"], record["seed"], record["steps"],
            record["guidance"],
            gr.update(interactive=False) if fast else gr.update(value=record["scheduler"],
                                                                 interactive=True),
            record["width"],
            record["height"], fast,
            f"settings of image {index + 1} (seed {record['seed']}) are in the form")


def _token(folders, models, session, audio_path, fast):
    try:
        upload = folders.checked_upload(audio_path)
        model = models.get(fast)
        path = folders.new_run(session, "token") / f"{upload.stem}.safetensors"  # embed's name
        with models.unet:
            model.save_token(str(upload), path)
        folders.discard_if_ended(session, path.parent)
        return gr.update(value=str(path), visible=True), f"the audio token of {upload.name}"
    except Exception as error:  # noqa: BLE001
        return gr.update(), one_line(error, folders.root)
