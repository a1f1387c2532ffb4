"""The ``audiotoken`` command line: parse, validate, call the library, report.

This is the only module that knows Typer. Heavy libraries (torch, PyAV, diffusers) are imported
inside the commands, so ``--help``, ``--version`` and argument errors answer instantly.
"""

from __future__ import annotations

import os
import secrets
import sys
import traceback
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from audiotoken_cli import __version__
from audiotoken_cli.config import DEVICE_CHOICES, DTYPE_CHOICES
from audiotoken_cli.errors import AudioTokenError

app = typer.Typer(
    name="audiotoken",
    help="Turn sounds into pictures with AudioToken (Interspeech 2023).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@dataclass
class AppState:
    debug: bool = False


# ---------------------------------------------------------------------------------------------
# Options shared by several commands, defined once.

AudioInputs = Annotated[
    list[str],
    typer.Argument(help="Audio or video files, folders (searched recursively) or glob patterns.",
                   metavar="AUDIO...",
                   show_default=False),
]
OutputDir = Annotated[
    Optional[Path],
    typer.Option("--output-dir", "-o", metavar="DIR", help="Write outputs here instead of beside each input.",
                 file_okay=False),
]
AudioEncoderOption = Annotated[
    Optional[str],
    typer.Option("--audio-encoder", metavar="SPEC", help="BEATs checkpoint (official {'cfg','model'} "
                 ".pt): a path, URL or hub id. Default: the preset's.", show_default=False),
]
EmbedderOption = Annotated[
    Optional[str],
    typer.Option("--embedder", metavar="SPEC", help="The paper's embedder_learned_embeds.bin, or an "
                 "audiotoken embedder folder (e.g. a training run): a path, URL or hub id. "
                 "Default: the preset's.", show_default=False),
]
ModelOption = Annotated[
    str,
    typer.Option("--model", "-m", metavar="NAME", help="Model preset bundling SD, audio encoder "
                 "and embedder (see `audiotoken download --list`)."),
]
OfflineOption = Annotated[
    bool,
    typer.Option("--offline", help="Never use the network; only cached or local files "
                 "(also HF_HUB_OFFLINE=1)."),
]
QuietOption = Annotated[
    bool,
    typer.Option("--quiet", "-q", help="No download progress bars or notices."),
]
StartOption = Annotated[
    float,
    typer.Option("--start", min=0.0, metavar="SECONDS", help="Where the audio window starts, in seconds."),
]
DurationOption = Annotated[
    float,
    typer.Option("--duration", min=0.01, metavar="SECONDS", help="Window length in seconds (the paper: 10). "
                 "Shorter audio is looped to fill it."),
]
# The choices live in config.py (devices.py validates with the same tuples); Typer wants Enums.
Device = Enum("Device", {name: name for name in DEVICE_CHOICES}, type=str)
Dtype = Enum("Dtype", {name: name for name in DTYPE_CHOICES}, type=str)


DeviceOption = Annotated[
    Device,
    typer.Option("--device", metavar="[auto|cpu|cuda|mps]", help="auto picks CUDA, then MPS, then CPU."),
]
DtypeOption = Annotated[
    Dtype,
    typer.Option("--dtype", metavar="[auto|float32|float16|bfloat16]", help="auto picks float16 on a GPU, float32 on the CPU."),
]
OverwriteOption = Annotated[
    bool,
    typer.Option("--overwrite/--no-overwrite", help="Replace outputs that already exist."),
]


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"audiotoken {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[Optional[bool], typer.Option(
        "--version", callback=_version_callback, is_eager=True,
        help="Show the version and exit.")] = None,
    debug: Annotated[bool, typer.Option(
        "--debug", help="Show full tracebacks for errors.")] = False,
) -> None:
    """Turn sounds into pictures with AudioToken (Interspeech 2023).

    A frozen audio classifier (BEATs) hears the sound, a small learned embedder turns it into one
    token in Stable Diffusion's text space, and that token stands in for <*> in a prompt.
    """
    ctx.obj = AppState(debug=debug)


# ---------------------------------------------------------------------------------------------
# generate


class Scheduler(str, Enum):
    dpmpp = "dpm++"
    pndm = "pndm"
    ddim = "ddim"
    euler = "euler"
    euler_a = "euler-a"


SdOption = Annotated[
    Optional[str],
    typer.Option("--sd", metavar="SPEC", help="Stable Diffusion (SD 1.x or 2.x) as a diffusers "
                 "folder or hub id. Default: the preset's.", show_default=False),
]


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

    def body() -> int:
        from audiotoken_cli.generate import GenerateEvents, generate_files

        def process(sources, progress):
            paths = _components(model, given, ("sd", "audio_encoder", "embedder", "lora"),
                                offline, quiet)
            settings = GenerateSettings(**paths, **options)
            events = GenerateEvents(progress.on_total, progress.on_step, progress.on_image)
            return generate_files(sources, settings, events)

        return _run_batch(audio, process, "Sounds")

    raise typer.Exit(_guarded(ctx, body))


# ---------------------------------------------------------------------------------------------
# embed


@app.command(epilog="\b\nExamples:\n  audiotoken embed dog.wav rain.mp3 -o tokens/\n"
             "  audiotoken embed clips/ --embedder run/ --audio-encoder ~/models/BEATs.pt")
def embed(
    ctx: typer.Context,
    audio: AudioInputs,
    output_dir: OutputDir = None,
    audio_encoder: AudioEncoderOption = None,
    embedder: EmbedderOption = None,
    start: StartOption = 0.0,
    duration: DurationOption = 10.0,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, metavar="N",
                                            help="Audio windows encoded together.")] = 8,
    overwrite: OverwriteOption = False,
    model: ModelOption = "vggsound",
    offline: OfflineOption = False,
    quiet: QuietOption = False,
    device: DeviceOption = Device.auto,
    dtype: DtypeOption = Dtype.auto,
) -> None:
    """Save each sound's audio token in a safetensors file beside it.

    <stem>.safetensors holds one tensor, emb_params [1, d]: the textual-inversion layout
    that diffusers, A1111 and ComfyUI load as an embedding.
    """
    from audiotoken_cli.config import EmbedSettings, RuntimeSettings, Window

    options = dict(window=Window(start=start, duration=duration), batch_size=batch_size,
                   output_dir=output_dir, overwrite=overwrite,
                   runtime=RuntimeSettings(device=device.value, dtype=dtype.value))
    given = {"audio_encoder": audio_encoder, "embedder": embedder}

    def body() -> int:
        from audiotoken_cli.tokens import embed_files

        def process(sources, _progress):
            paths = _components(model, given, ("audio_encoder", "embedder"), offline, quiet)
            return embed_files(sources, EmbedSettings(**paths, **options))

        return _run_batch(audio, process, "Embedding")

    raise typer.Exit(_guarded(ctx, body))


# ---------------------------------------------------------------------------------------------
# train


class Precision(str, Enum):
    auto = "auto"
    no = "no"
    fp16 = "fp16"
    bf16 = "bf16"


@app.command(epilog="\b\nExamples:\n  audiotoken train videos/ -o run/\n"
             "  audiotoken train clips/ -o run/ --labels labels.csv --size 512x320 --cache\n"
             "  audiotoken train clips/ -o run/ --resume\n"
             "  audiotoken generate dog.wav --embedder run/")
def train(
    ctx: typer.Context,
    data: Annotated[Path, typer.Argument(
        metavar="DATA", help="Folder of videos with sound, or of audio files each with an image "
        "of the same name (searched recursively).", show_default=False)],
    output: Annotated[Path, typer.Option(
        "--output", "-o", metavar="RUN", help="Run folder: config, metrics, checkpoints, samples "
        "and the trained embedder.", show_default=False)],
    labels: Annotated[Optional[Path], typer.Option(
        "--labels", metavar="CSV", help="Labels for the class loss: VGGSound's "
        "ytid,start,label,split or file,label. Default: first subfolder names.",
        show_default=False)] = None,
    init: Annotated[Optional[str], typer.Option(
        "--init", metavar="SPEC", help="Start from this embedder (e.g. the paper's) and "
        "fine-tune it.", show_default=False)] = None,
    audio_seconds: Annotated[float, typer.Option(
        "--audio-seconds", min=0.5, metavar="SECONDS", help="Audio window per sample, from the "
        "first 10 s.")] = 5.0,
    resolution: Annotated[int, typer.Option(
        "--resolution", min=8, metavar="PX", help="Square frame size.")] = 512,
    size: Annotated[Optional[str], typer.Option(
        "--size", metavar="WxH", help="Frame size, e.g. 512x320 (the paper's); overrides "
        "--resolution.", show_default=False)] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, metavar="N")] = 4,
    grad_accum: Annotated[int, typer.Option("--grad-accum", min=1, metavar="N",
                                            help="Gradient accumulation steps.")] = 4,
    max_steps: Annotated[int, typer.Option("--max-steps", min=1, metavar="N")] = 30_000,
    lr: Annotated[float, typer.Option("--lr", min=0.0, metavar="LR",
                                      help="Base learning rate.")] = 1e-5,
    scale_lr: Annotated[bool, typer.Option(
        "--scale-lr/--no-scale-lr", help="Multiply the lr by batch × accumulation × processes, "
        "as the paper does.")] = True,
    weight_decay: Annotated[float, typer.Option("--weight-decay", min=0.0)] = 1e-2,
    warmup_steps: Annotated[int, typer.Option("--warmup-steps", min=0, metavar="N")] = 500,
    seed: Annotated[int, typer.Option("--seed", "-s", min=0)] = 0,
    class_loss_weight: Annotated[float, typer.Option(
        "--class-loss-weight", min=0.0, help="Weight of the class loss (when labels exist).")]
        = 0.01,
    mixed_precision: Annotated[Precision, typer.Option(
        "--mixed-precision", metavar="[auto|no|fp16|bf16]",
        help="auto: bf16 where the GPU has it, else fp16 on GPUs, no on the CPU.")]
        = Precision.auto,
    gradient_checkpointing: Annotated[bool, typer.Option(
        "--gradient-checkpointing/--no-gradient-checkpointing",
        help="Recompute UNet activations in the backward pass: less memory, a bit slower.")]
        = True,
    cache: Annotated[bool, typer.Option(
        "--cache/--no-cache", help="Precompute BEATs features and VAE latents once (in RUN/cache, "
        "memory-mapped); each step then runs only the embedder, text encoder and UNet.")] = False,
    windows_per_clip: Annotated[int, typer.Option(
        "--windows-per-clip", min=1, metavar="K", help="Audio windows (each with its frame) "
        "drawn per clip.")] = 8,
    save_every: Annotated[int, typer.Option("--save-every", min=1, metavar="N")] = 500,
    keep: Annotated[int, typer.Option("--keep", min=1, metavar="N",
                                      help="Checkpoints kept.")] = 3,
    sample_every: Annotated[int, typer.Option(
        "--sample-every", min=0, metavar="N", help="Sample grid every N steps (0: never).")] = 500,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue from the run folder's last checkpoint.")] = False,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Start again in a run folder that holds a run.")] = False,
    sd: SdOption = None,
    audio_encoder: AudioEncoderOption = None,
    model: ModelOption = "vggsound",
    offline: OfflineOption = False,
    quiet: QuietOption = False,
    device: DeviceOption = Device.auto,
) -> None:
    """Teach the audio token on your own videos.

    Only the small embedder learns; BEATs and Stable Diffusion stay frozen. Writes
    RUN/embedder.safetensors + config.json, which generate --embedder RUN uses.
    """
    from audiotoken_cli.config import RuntimeSettings, TrainSettings
    from audiotoken_cli.data import parse_size
    from audiotoken_cli.errors import AudioTokenError

    try:
        frame_size = parse_size(size) if size else (resolution, resolution)
    except AudioTokenError as error:
        raise typer.BadParameter(str(error), param_hint="--size") from None
    options = dict(
        data=data, output=output, labels=labels, audio_seconds=audio_seconds, size=frame_size,
        batch_size=batch_size, grad_accum=grad_accum, max_steps=max_steps, lr=lr,
        scale_lr=scale_lr, weight_decay=weight_decay, warmup_steps=warmup_steps, seed=seed,
        class_loss_weight=class_loss_weight, mixed_precision=mixed_precision.value,
        gradient_checkpointing=gradient_checkpointing, cache=cache,
        windows_per_clip=windows_per_clip, save_every=save_every, keep=keep,
        sample_every=sample_every, resume=resume, overwrite=overwrite,
        runtime=RuntimeSettings(device=device.value),
    )

    def body() -> int:
        from audiotoken_cli.report import TrainDisplay
        from audiotoken_cli.train import is_main_process
        from audiotoken_cli.train import train as run_training

        paths = _components(model, {"sd": sd, "audio_encoder": audio_encoder},
                            ("sd", "audio_encoder"), offline, quiet)
        init_path = _components(model, {"embedder": init}, ("embedder",), offline, quiet)[
            "embedder"] if init else None
        settings = TrainSettings(**paths, init=init_path, **options)
        if not is_main_process():  # other ranks of torchrun / accelerate train silently
            run_training(settings)
            return 0
        with TrainDisplay() as display:
            run = run_training(settings, display.events())
        display.done(run)
        return 0

    raise typer.Exit(_guarded(ctx, body))


# ---------------------------------------------------------------------------------------------
# download


@app.command(epilog="\b\nExamples:\n  audiotoken download                 # the default preset, vggsound\n"
             "  audiotoken download --list\n"
             "  audiotoken download --model birds --quiet")
def download(
    ctx: typer.Context,
    model: ModelOption = "vggsound",
    list_presets: Annotated[bool, typer.Option(
        "--list", help="Show the presets, their components, sizes and whether they are "
        "cached; download nothing.")] = False,
    sd: SdOption = None,
    audio_encoder: AudioEncoderOption = None,
    embedder: EmbedderOption = None,
    lora: Annotated[Optional[str], typer.Option(
        "--lora", metavar="SPEC", help="Also fetch this UNet LoRA.", show_default=False)] = None,
    quiet: QuietOption = False,
) -> None:
    """Fetch, verify and cache a preset's weights for offline use.

    Files go to the standard Hugging Face cache (HF_HOME), plain URLs to the user cache.
    The paper's pickled weights also get safetensors copies there, for fast, safe loads.
    """
    def body() -> int:
        from audiotoken_cli.report import print_download_summary, print_presets

        if list_presets:
            from audiotoken_cli.hub import preset_status

            print_presets(preset_status())
            return 0
        from audiotoken_cli.safecache import load_beats_fast, load_embedder_fast

        given = {"sd": sd, "audio_encoder": audio_encoder, "embedder": embedder, "lora": lora}
        # Small files first: a bad checksum shows before gigabytes of Stable Diffusion.
        paths = _components(model, given, ("audio_encoder", "embedder", "sd", "lora"),
                            offline=False, quiet=quiet)
        # One verified load makes the safetensors copies that every later run loads.
        load_beats_fast(paths["audio_encoder"])
        load_embedder_fast(paths["embedder"])
        print_download_summary(model, paths)
        return 0

    raise typer.Exit(_guarded(ctx, body))


# ---------------------------------------------------------------------------------------------
# Shared plumbing: validation, the per-file batch loop, error reporting.


def _components(model: str, given: dict, roles: tuple[str, ...], offline: bool, quiet: bool):
    """Local paths for the components: the options given, else the preset's, fetched when
    missing (with a one-line notice)."""
    from audiotoken_cli.hub import FetchOptions, resolve_components
    from audiotoken_cli.report import print_notice

    fetch = FetchOptions(offline=offline, quiet=quiet,
                         notice=(lambda message: None) if quiet else print_notice)
    return resolve_components(model, given, roles, fetch)


def _run_batch(arguments: list[str], process, verb: str) -> int:
    """Expand inputs, run ``process`` over them with a progress bar, print a summary.

    Returns the exit code: 0 when every file worked (or was skipped), 1 when any failed.
    """
    from audiotoken_cli.files import FileResult, expand_inputs
    from audiotoken_cli.report import Reporter

    sources, input_errors = expand_inputs(arguments)
    reporter = Reporter()
    results: list[FileResult] = []
    for error in input_errors:
        reporter.error(str(error))
    if sources:
        with reporter.progress(verb, total=len(sources)) as progress:
            for result in process(sources, progress):
                if result.failed:
                    reporter.error(result.message)
                results.append(result)
                progress.file_done(result)
    reporter.summary(results)
    failed = len(input_errors) + sum(result.failed for result in results)
    return 1 if failed else 0


def _guarded(ctx: typer.Context, body) -> int:
    """Run a command body; user errors become one red line (a traceback with --debug)."""
    from audiotoken_cli.report import print_error

    debug = ctx.obj.debug if isinstance(ctx.obj, AppState) else False
    try:
        return body()
    except AudioTokenError as error:
        if debug:
            traceback.print_exc()
        print_error(str(error))
        return 1
    except KeyboardInterrupt:
        print_error("interrupted; finished files are kept, nothing half-written is left")
        return 130


def main() -> None:
    """Console-script entry point."""
    # Set before huggingface_hub is imported: it would otherwise report usage to the hub.
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    app(prog_name="audiotoken")


if __name__ == "__main__":
    sys.exit(main())
