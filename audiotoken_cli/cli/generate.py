"""``audiotoken generate``: images of each sound."""

from __future__ import annotations

import secrets
from enum import Enum
from typing import Annotated, Optional

import typer

from audiotoken_cli.cli.app import app
from audiotoken_cli.cli.options import (
    AudioEncoderOption,
    AudioInputs,
    Device,
    DeviceOption,
    Dtype,
    DtypeOption,
    DurationOption,
    EmbedderOption,
    ModelOption,
    OfflineOption,
    OutputDir,
    OverwriteOption,
    QuietOption,
    SdOption,
    StartOption,
)
from audiotoken_cli.cli.run import check_usage, components, guarded, run_batch


class Scheduler(str, Enum):
    dpmpp = "dpm++"
    pndm = "pndm"
    ddim = "ddim"
    euler = "euler"
    euler_a = "euler-a"





@app.command(epilog="\b\nExamples:\n  audiotoken generate dog.wav rain.mp3 -n 4 --seed 7\n"
             "  audiotoken generate clips/ --scheduler pndm --steps 50 -o renders/\n"
             "  audiotoken generate bird.wav --embedder run/ --prompt 'a painting of <*>'")
def generate(
    ctx: typer.Context,
    audio: AudioInputs,
    num_images: Annotated[int, typer.Option("--num-images", "-n", min=1, metavar="N",
                                            help="Images per sound.")] = 1,
    seed: Annotated[Optional[int], typer.Option(
        "--seed", "-s", min=0, metavar="SEED", help="Base seed: image i of each sound uses seed+i. "
        "Random (and printed) when omitted.", show_default=False)] = None,
    steps: Annotated[int, typer.Option("--steps", min=1, metavar="N", help="Denoising steps.")] = 25,
    guidance: Annotated[float, typer.Option("--guidance", "-g", min=0.0, metavar="SCALE",
                                            help="Classifier-free guidance scale.")] = 7.5,
    prompt: Annotated[str, typer.Option(
        "--prompt", metavar="TEXT", help="Prompt; <*> marks where the sound goes (exactly once).")]
        = "a photo of <*>",
    negative_prompt: Annotated[str, typer.Option(
        "--negative-prompt", metavar="TEXT", help="What the images should not show.")] = "",
    width: Annotated[int, typer.Option("--width", "-W", min=8, metavar="PX", help="Image width, a multiple of "
                                       "8.")] = 512,
    height: Annotated[int, typer.Option("--height", "-H", min=8, metavar="PX", help="Image height, a multiple "
                                        "of 8.")] = 512,
    scheduler: Annotated[Scheduler, typer.Option(
        "--scheduler", metavar="[dpm++|pndm|ddim|euler|euler-a]", help="Sampler. pndm keeps the model's own scheduler; with --steps 50 it is "
        "the paper's setting.")] = Scheduler.dpmpp,
    output_dir: OutputDir = None,
    batch_size: Annotated[Optional[int], typer.Option(
        "--batch-size", min=1, metavar="N", help="Images per UNet call (default: what fits the device).",
        show_default=False)] = None,
    overwrite: OverwriteOption = False,
    start: StartOption = 0.0,
    duration: DurationOption = 10.0,
    sd: SdOption = None,
    audio_encoder: AudioEncoderOption = None,
    embedder: EmbedderOption = None,
    lora: Annotated[Optional[str], typer.Option(
        "--lora", metavar="SPEC", help="The paper's optional UNet LoRA "
        "(lora_layers_learned_embeds.bin): a path, URL or hub id.", show_default=False)] = None,
    safety_checker: Annotated[bool, typer.Option(
        "--safety-checker/--no-safety-checker",
        help="Run the model's own safety checker, when it ships one.")] = True,
    low_vram: Annotated[bool, typer.Option(
        "--low-vram", help="Keep sub-models on the CPU until used (CUDA): slower, less "
        "memory.")] = False,
    model: ModelOption = "vggsound",
    offline: OfflineOption = False,
    quiet: QuietOption = False,
    device: DeviceOption = Device.auto,
    dtype: DtypeOption = Dtype.auto,
) -> None:
    """Draw what each sound looks like: PNGs written beside each sound.

    Image i of dog.wav is dog_seed<seed+i>.png. Each PNG carries its settings
    (an A1111 'parameters' chunk and a JSON 'audiotoken' chunk).
    """
    from audiotoken_cli.config import GenerateSettings, RuntimeSettings, Window

    if prompt.count("<*>") != 1:
        raise typer.BadParameter(f"{prompt!r} must contain the placeholder <*> exactly once, "
                                 "e.g. 'a photo of <*>'", param_hint="--prompt")
    if seed is None:
        seed = secrets.randbelow(2**31)
        typer.echo(f"seed {seed} (pass --seed {seed} to make the same images again)", err=True)
    options = dict(
        seed=seed, num_images=num_images, steps=steps, guidance=guidance, prompt=prompt,
        negative_prompt=negative_prompt, width=width, height=height,
        scheduler=scheduler.value, window=Window(start=start, duration=duration),
        batch_size=batch_size, output_dir=output_dir, overwrite=overwrite,
        safety_checker=safety_checker, low_vram=low_vram,
        runtime=RuntimeSettings(device=device.value, dtype=dtype.value),
    )
    given = {"sd": sd, "audio_encoder": audio_encoder, "embedder": embedder, "lora": lora}
    from audiotoken_cli.validation import check_generate_options
    check_usage(check_generate_options, options)

    def body() -> int:
        from audiotoken_cli.pipeline.generate import GenerateEvents, generate_files

        def process(sources, progress):
            paths = components(model, given, ("sd", "audio_encoder", "embedder", "lora"),
                                offline, quiet)
            settings = GenerateSettings(**paths, **options)
            events = GenerateEvents(progress.on_total, progress.on_step, progress.on_image)
            return generate_files(sources, settings, events)

        return run_batch(audio, process, "Sounds")

    raise typer.Exit(guarded(ctx, body))
