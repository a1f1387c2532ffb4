"""``audiotoken video``: a whole recording becomes a video that moves with the sound."""

from __future__ import annotations

import secrets
from typing import Annotated, Optional

import typer

from audiotoken_cli.cli.app import app
from audiotoken_cli.cli.generate import Scheduler, check_fast_options, check_fast_paths
from audiotoken_cli.cli.options import (
    AudioEncoderOption,
    AudioInputs,
    CompileOption,
    Device,
    DeviceOption,
    Dtype,
    DtypeOption,
    EmbedderOption,
    FastOption,
    LcmLoraOption,
    LoraOption,
    LowVramOption,
    ModelOption,
    OfflineOption,
    OutputDir,
    OverwriteOption,
    QuietOption,
    SafetyCheckerOption,
    SdOption,
    TaesdOption,
    ToolCommand,
)
from audiotoken_cli.cli.run import (
    Nouns,
    components,
    guarded,
    run_batch,
    with_image_size,
)
from audiotoken_cli.validation import prompt_problem


@app.command(cls=ToolCommand, epilog="\b\nExamples:\n  audiotoken video song.mp3 --seed 7\n"
             "  audiotoken video field.wav --hop 4 --fps 12 --storyboard --save-keyframes\n"
             "  audiotoken video talk.m4a --keyframes-only --storyboard -o out/\n"
             "  audiotoken video loop.wav --storyboard --no-video\n"
             "  audiotoken video song.mp3 --fast -o videos/")
def video(
    ctx: typer.Context,
    audio: AudioInputs,
    hop: Annotated[float, typer.Option("--hop", min=0.05, metavar="SECONDS",
                                       help="Seconds between keyframes.")] = 2.0,
    window: Annotated[float, typer.Option(
        "--window", min=0.05, metavar="SECONDS", help="Seconds of audio behind each keyframe, "
        "centred on its moment and kept inside the file.")] = 10.0,
    fps: Annotated[int, typer.Option("--fps", min=1, max=120, metavar="N",
                                     help="Frames per second.")] = 8,
    make_video: Annotated[bool, typer.Option("--video/--no-video",
                                             help="Write the MP4 (--no-video: only the "
                                             "storyboard, sidecar and tokens).")] = True,
    save_keyframes: Annotated[bool, typer.Option(
        "--save-keyframes", help="Also write each keyframe as a PNG with generate's metadata "
        "into <name>.keyframes/.")] = False,
    storyboard: Annotated[bool, typer.Option(
        "--storyboard", help="Write <name>.storyboard.png: the keyframes in a grid, each "
        "labelled mm:ss.")] = False,
    keyframes_only: Annotated[bool, typer.Option(
        "--keyframes-only", help="Render only the keyframes and cross-fade between them in "
        "pixels (cheap; for CPUs).")] = False,
    audio_reactive: Annotated[bool, typer.Option(
        "--audio-reactive", help="Place the in-between frames by the audio's onset strength, so "
        "changes land on beats.")] = False,
    seed: Annotated[Optional[int], typer.Option(
        "--seed", "-s", min=0, metavar="SEED", help="The seed of every keyframe and frame (one "
        "noise for the whole video). Random (and printed) when omitted.",
        show_default=False)] = None,
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
        "--width", "-W", min=8, metavar="PX", help="Frame width, a multiple of 8 [default: the "
        "model's own: 512 SD 1.x, 1024 SDXL].", show_default=False)] = None,
    height: Annotated[Optional[int], typer.Option(
        "--height", "-H", min=8, metavar="PX", help="Frame height, a multiple of 8 [default: "
        "the model's own].", show_default=False)] = None,
    scheduler: Annotated[Optional[Scheduler], typer.Option(
        "--scheduler", metavar="[dpm++|pndm|ddim|euler|euler-a]",
        help="Sampler, as for generate [default: dpm++].", show_default=False)] = None,
    fast: FastOption = False,
    lcm_lora: LcmLoraOption = None,
    taesd: TaesdOption = None,
    compile_unet: CompileOption = False,
    output_dir: OutputDir = None,
    batch_size: Annotated[Optional[int], typer.Option(
        "--batch-size", min=1, metavar="N", help="Frames per UNet call (default: what fits the "
        "device).", show_default=False)] = None,
    overwrite: OverwriteOption = False,
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
    """Turn a whole recording into a video that moves with the sound.

    Writes <stem>.audiotoken.mp4 (H.264 with the source's audio), a sidecar
    <stem>.audiotoken.json listing each keyframe's time, window and seed, and
    <stem>.audiotoken.tokens.safetensors. Keyframe k, at k x hop seconds, is exactly
    `generate --start START --duration WINDOW --seed SEED` for its window. An interrupted
    run resumes from .<stem>.audiotoken.work/ when run again with the same settings.
    """
    from audiotoken_cli.config import GenerateSettings, RuntimeSettings
    from audiotoken_cli.render.fast import FAST_GUIDANCE, FAST_SCHEDULER, FAST_STEPS

    scheduler_name = None if scheduler is None else scheduler.value
    check_fast_options(fast, scheduler_name, lcm_lora, taesd)
    if prompt.count("<*>") != 1:
        raise typer.BadParameter(prompt_problem(prompt), param_hint="--prompt")
    if not make_video and not storyboard:
        raise typer.BadParameter("--no-video makes nothing without --storyboard",
                                 param_hint="--no-video")
    if seed is None:
        seed = secrets.randbelow(2**31)
        typer.echo(f"seed {seed} (pass --seed {seed} to make the same video again)", err=True)
    steps_default, guidance_default = (FAST_STEPS, FAST_GUIDANCE) if fast else (25, 7.5)
    options = dict(
        seed=seed, steps=steps or steps_default,
        guidance=guidance_default if guidance is None else guidance, prompt=prompt,
        negative_prompt=negative_prompt, width=width, height=height,
        scheduler=FAST_SCHEDULER if fast else (scheduler_name or Scheduler.dpmpp.value),
        batch_size=batch_size, output_dir=output_dir, overwrite=overwrite,
        safety_checker=safety_checker, low_vram=low_vram, compile=compile_unet,
        runtime=RuntimeSettings(device=device.value, dtype=dtype.value),
    )
    video_options = dict(hop=hop, window=window, fps=fps, video=make_video,
                         save_keyframes=save_keyframes, storyboard=storyboard,
                         keyframes_only=keyframes_only, audio_reactive=audio_reactive)
    roles = ("sd", "audio_encoder", "embedder", "lora") + (("lcm_lora", "taesd") if fast else ())
    given = {"sd": sd, "audio_encoder": audio_encoder, "embedder": embedder, "lora": lora,
             "lcm_lora": lcm_lora, "taesd": taesd}
    given = {role: given[role] for role in roles}

    def body() -> int:
        from audiotoken_cli.video import VideoSettings, video_files

        def process(sources, progress, roots, rank, world):
            paths = components(model, given, roles, offline, quiet)
            check_fast_paths(fast, paths, model)
            settings = VideoSettings(GenerateSettings(**paths, **with_image_size(options, paths["sd"])),
                                     **video_options)
            # generate's skeleton: this rank's files (every world-th), mirrored under -o.
            return video_files(sources, settings, _events(progress), roots, rank=rank,
                               world=world)

        return run_batch(audio, process, "Sounds", Nouns("video", "sound", "video"), output_dir)

    raise typer.Exit(guarded(ctx, body))


def _events(progress):
    """Bars for each file's keyframes and frames (with the time left), made when totals come."""
    from audiotoken_cli.video import VideoEvents

    bars = {"keyframe": lambda: None, "frame": lambda: None}

    def total(kind: str, label: str):
        def start(count: int) -> None:
            bars[kind] = progress.counter(label, count, label.lower())
        return start

    return VideoEvents(on_keyframes=total("keyframe", "Keyframes"),
                       on_keyframe=lambda: bars["keyframe"](),
                       on_frames=total("frame", "Frames"),
                       on_frame=lambda: bars["frame"]())
