"""``audiotoken generate``: images of each sound."""

from __future__ import annotations

import secrets
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from audiotoken_cli.cli.app import app
from audiotoken_cli.cli.options import (
    AudioEncoderOption,
    CompileOption,
    Device,
    DeviceOption,
    Dtype,
    DtypeOption,
    DurationOption,
    EmbedderOption,
    FastOption,
    LcmLoraOption,
    LoraOption,
    LowVramOption,
    ModelOption,
    OfflineOption,
    OptionalAudioInputs,
    OutputDir,
    OverwriteOption,
    QuietOption,
    SafetyCheckerOption,
    SdOption,
    StartOption,
    TaesdOption,
    ToolCommand,
)
from audiotoken_cli.cli.run import (
    Nouns,
    check_usage,
    components,
    guarded,
    run_batch,
    with_image_size,
)
from audiotoken_cli.errors import AudioTokenError
from audiotoken_cli.examples import EXAMPLES, example_path
from audiotoken_cli.validation import prompt_problem


class Scheduler(str, Enum):
    dpmpp = "dpm++"
    pndm = "pndm"
    ddim = "ddim"
    euler = "euler"
    euler_a = "euler-a"


def check_fast_options(fast: bool, scheduler: str | None, lcm_lora, taesd) -> None:
    """--fast's options fit together (generate and video share them)."""
    from audiotoken_cli.render.fast import FAST_SCHEDULER

    if fast and scheduler not in (None, FAST_SCHEDULER):
        raise typer.BadParameter("--fast samples with the LCM scheduler; drop --scheduler",
                                 param_hint="--scheduler")
    if (lcm_lora or taesd) and not fast:
        raise typer.BadParameter("--lcm-lora and --taesd are --fast's weights; add --fast",
                                 param_hint="--lcm-lora/--taesd")


def check_fast_paths(fast: bool, paths: dict, model: str) -> None:
    from audiotoken_cli.errors import UsageError

    if fast and not (paths.get("lcm_lora") and paths.get("taesd")):
        raise UsageError(f"--fast needs an LCM-LoRA and a tiny autoencoder; preset "
                         f"{model!r} names none: pass --lcm-lora and --taesd")


@app.command(cls=ToolCommand,
             epilog="\b\nExamples:\n  audiotoken generate --example bell -n 4\n"
             "  audiotoken generate dog.wav rain.mp3 -n 4 --seed 7\n"
             "  audiotoken generate clips/ --scheduler pndm --steps 50 -o renders/\n"
             "  audiotoken generate bird.wav --embedder run/ --prompt 'a painting of <*>'\n"
             "  audiotoken generate clips/ --fast\n"
             "  audiotoken generate --from dog_seed7.png -o again/")
def generate(
    ctx: typer.Context,
    audio: OptionalAudioInputs = None,
    example: Annotated[Optional[str], typer.Option(
        "--example", metavar="NAME", help=f"Also draw a sound shipped with audiotoken "
        f"({', '.join(EXAMPLES)}); its images go to the current folder unless -o says "
        "otherwise.", show_default=False)] = None,
    from_image: Annotated[Optional[Path], typer.Option(
        "--from", metavar="IMAGE", help="Take every setting from this PNG's audiotoken chunk "
        "(options given here still win); without AUDIO, its own sound.", show_default=False,
        exists=True, dir_okay=False)] = None,
    num_images: Annotated[int, typer.Option("--num-images", "-n", min=1, metavar="N",
                                            help="Images per sound.")] = 1,
    seed: Annotated[Optional[int], typer.Option(
        "--seed", "-s", min=0, metavar="SEED", help="Base seed: image i of each sound uses seed+i. "
        "Random (and printed) when omitted.", show_default=False)] = None,
    steps: Annotated[Optional[int], typer.Option(
        "--steps", min=1, metavar="N", help="Denoising steps [default: 25; 4 with --fast].",
        show_default=False)] = None,
    guidance: Annotated[Optional[float], typer.Option(
        "--guidance", "-g", min=0.0, metavar="SCALE", help="Classifier-free guidance scale "
        "[default: 7.5; 1.0 (off) with --fast].", show_default=False)] = None,
    prompt: Annotated[str, typer.Option(
        "--prompt", metavar="TEXT", help="Prompt; <*> marks where the sound goes (exactly once).")]
        = "a photo of <*>",
    negative_prompt: Annotated[str, typer.Option(
        "--negative-prompt", metavar="TEXT", help="What the images should not show.")] = "",
    width: Annotated[Optional[int], typer.Option(
        "--width", "-W", min=8, metavar="PX", help="Image width, a multiple of 8 [default: the "
        "model's own: 512 SD 1.x, 768 SD 2.x-v, 1024 SDXL].", show_default=False)] = None,
    height: Annotated[Optional[int], typer.Option(
        "--height", "-H", min=8, metavar="PX", help="Image height, a multiple of 8 [default: "
        "the model's own].", show_default=False)] = None,
    scheduler: Annotated[Optional[Scheduler], typer.Option(
        "--scheduler", metavar="[dpm++|pndm|ddim|euler|euler-a]", help="Sampler [default: dpm++]. "
        "pndm keeps the model's own scheduler; with --steps 50 it is the paper's setting.",
        show_default=False)] = None,
    fast: FastOption = False,
    lcm_lora: LcmLoraOption = None,
    taesd: TaesdOption = None,
    compile_unet: CompileOption = False,
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
    lora: LoraOption = None,
    safety_checker: SafetyCheckerOption = True,
    low_vram: LowVramOption = False,
    model: ModelOption = "vggsound",
    offline: OfflineOption = False,
    quiet: QuietOption = False,
    device: DeviceOption = Device.auto,
    dtype: DtypeOption = Dtype.auto,
) -> None:
    """Draw what each sound looks like: PNGs written beside each sound.

    Image i of dog.wav is dog_seed<seed+i>.png; when that file holds an image made with other
    settings, the new one goes beside it as dog_seed<seed+i>_<settings tag>.png, and an image
    already made with the same settings is skipped. Each PNG carries its settings (an A1111
    'parameters' chunk and a JSON 'audiotoken' chunk), which --from reads back.
    """
    from audiotoken_cli.config import GenerateSettings, RuntimeSettings, Window
    from audiotoken_cli.render.fast import FAST_GUIDANCE, FAST_SCHEDULER, FAST_STEPS

    values = dict(num_images=num_images, seed=seed, steps=steps, guidance=guidance,
                  prompt=prompt, negative_prompt=negative_prompt, width=width, height=height,
                  scheduler=None if scheduler is None else scheduler.value, start=start,
                  duration=duration, sd=sd, audio_encoder=audio_encoder, embedder=embedder,
                  lora=lora, lcm_lora=lcm_lora, taesd=taesd, dtype=dtype.value)
    inputs = list(audio or [])
    if from_image is not None:
        inputs = _apply_image_settings(ctx, from_image, values, inputs)
        fast = fast or values["scheduler"] == FAST_SCHEDULER
    if example is not None:
        try:
            inputs.append(str(example_path(example)))
        except AudioTokenError as error:
            raise typer.BadParameter(str(error), param_hint="--example") from None
        output_dir = output_dir if output_dir is not None else Path.cwd()
    if not inputs:
        raise typer.BadParameter("give sounds to draw, --example NAME or --from IMAGE",
                                 param_hint="AUDIO")
    if values["prompt"].count("<*>") != 1:
        raise typer.BadParameter(prompt_problem(values["prompt"]), param_hint="--prompt")
    check_fast_options(fast, values["scheduler"], values["lcm_lora"], values["taesd"])
    random_seed = values["seed"] is None
    if random_seed:
        values["seed"] = secrets.randbelow(2**31)
    steps_default, guidance_default = (FAST_STEPS, FAST_GUIDANCE) if fast else (25, 7.5)
    options = dict(
        seed=values["seed"], num_images=values["num_images"],
        steps=values["steps"] or steps_default,
        guidance=guidance_default if values["guidance"] is None else values["guidance"],
        prompt=values["prompt"], negative_prompt=values["negative_prompt"],
        width=values["width"], height=values["height"],
        scheduler=FAST_SCHEDULER if fast else (values["scheduler"] or Scheduler.dpmpp.value),
        window=Window(start=values["start"], duration=values["duration"]), compile=compile_unet,
        batch_size=batch_size, output_dir=output_dir, overwrite=overwrite,
        safety_checker=safety_checker, low_vram=low_vram,
        runtime=RuntimeSettings(device=device.value, dtype=values["dtype"]),
    )
    roles = ("sd", "audio_encoder", "embedder", "lora") + (("lcm_lora", "taesd") if fast else ())
    given = {role: values[role] for role in roles}
    footer = (f"seed {values['seed']} (pass --seed {values['seed']} to make the same images "
              "again)") if random_seed else None
    from audiotoken_cli.validation import check_generate_options
    check_usage(check_generate_options, options)

    def body() -> int:
        from audiotoken_cli.pipeline.generate import GenerateEvents, generate_files

        def process(sources, progress, roots, rank, world):
            progress.on_phase("finding the models")
            paths = components(model, given, roles, offline, quiet)
            check_fast_paths(fast, paths, model)
            settings = GenerateSettings(**paths, **with_image_size(options, paths["sd"]))
            events = GenerateEvents(on_total=progress.on_total, on_step=progress.on_step,
                                    on_image=progress.on_image, on_phase=progress.on_phase)
            return generate_files(sources, settings, events, roots, rank=rank, world=world)

        return run_batch(inputs, process, "Sounds", Nouns("image", "sound", "generate"), output_dir, footer)

    raise typer.Exit(guarded(ctx, body))


def _apply_image_settings(ctx: typer.Context, image: Path, values: dict,
                          inputs: list[str]) -> list[str]:
    """Fill ``values`` from the image's chunk, except options given on this command line;
    returns the inputs (the image's own sound when none were given)."""
    from audiotoken_cli.pipeline.metadata import settings_from_image

    try:
        recorded, sound = settings_from_image(image)
    except AudioTokenError as error:
        raise typer.BadParameter(str(error), param_hint="--from") from None
    for name, value in recorded.items():
        source = ctx.get_parameter_source(name)  # compared by name: Typer may bundle click
        if source is None or source.name in ("DEFAULT", "DEFAULT_MAP"):
            values[name] = value
    if not inputs and sound is None:
        raise typer.BadParameter(f"{image}: the sound it was made from is not where it was; "
                                 "give it after --from", param_hint="AUDIO")
    return inputs or [sound]
