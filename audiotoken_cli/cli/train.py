"""``audiotoken train``: teach the audio token on your own videos."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from audiotoken_cli.cli.app import app
from audiotoken_cli.cli.options import (
    AudioEncoderOption,
    Device,
    DeviceOption,
    ModelOption,
    OfflineOption,
    QuietOption,
    SdOption,
    ToolCommand,
)
from audiotoken_cli.cli.run import check_usage, components, guarded
from audiotoken_cli.errors import AudioTokenError


class Precision(str, Enum):
    auto = "auto"
    no = "no"
    fp16 = "fp16"
    bf16 = "bf16"


@app.command(cls=ToolCommand, epilog="\b\nExamples:\n  audiotoken train videos/ -o run/\n"
             "  audiotoken train clips/ -o run/ --labels labels.csv --size 512x320 --cache\n"
             "  audiotoken train clips/ -o run/ --resume\n"
             "  audiotoken generate dog.wav --embedder run/")
def train(
    ctx: typer.Context,
    data: Annotated[Path, typer.Argument(
        metavar="DATA", help="Folder, searched recursively, of videos with sound, or of audio "
        "files each beside an image of the same name (dog.wav + dog.jpg). Subfolder names are "
        "the labels unless --labels is given.", show_default=False)],
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
    resolution: Annotated[Optional[int], typer.Option(
        "--resolution", min=8, metavar="PX", help="Square frame size. Default: the model's "
        "own (512 SD 1.x, 768 SD 2.x-v, 1024 SDXL).", show_default=False)] = None,
    size: Annotated[Optional[str], typer.Option(
        "--size", metavar="WxH", help="Frame size, e.g. 512x320 (the paper's); overrides "
        "--resolution.", show_default=False)] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, metavar="N",
                                            help="Examples per step on each device.")] = 4,
    grad_accum: Annotated[int, typer.Option("--grad-accum", min=1, metavar="N",
                                            help="Gradient accumulation steps.")] = 4,
    max_steps: Annotated[int, typer.Option("--max-steps", min=1, metavar="N",
                                           help="Optimiser steps to train for (the paper: "
                                           "30000).")] = 30_000,
    lr: Annotated[float, typer.Option("--lr", min=0.0, metavar="LR",
                                      help="Base learning rate.")] = 1e-5,
    scale_lr: Annotated[bool, typer.Option(
        "--scale-lr/--no-scale-lr", help="Multiply the lr by batch × accumulation × processes, "
        "as the paper does.")] = True,
    weight_decay: Annotated[float, typer.Option("--weight-decay", min=0.0, metavar="W",
                                                help="AdamW weight decay.")] = 1e-2,
    warmup_steps: Annotated[Optional[int], typer.Option(
        "--warmup-steps", min=0, metavar="N", help="Steps of linear lr warm-up. Default: 10% "
        "of --max-steps, at most 500 (the paper's).", show_default=False)] = None,
    seed: Annotated[int, typer.Option("--seed", "-s", min=0, metavar="SEED",
                                      help="Seed for the embedder's start, the clips, windows, "
                                      "noise and timesteps of every step.")] = 0,
    class_loss_weight: Annotated[float, typer.Option(
        "--class-loss-weight", min=0.0, metavar="W", help="Weight of the class loss (when labels exist).")]
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
    save_every: Annotated[int, typer.Option("--save-every", min=1, metavar="N",
                                            help="Checkpoint every N steps (and at the "
                                            "end).")] = 500,
    keep: Annotated[int, typer.Option("--keep", min=1, metavar="N",
                                      help="Checkpoints kept.")] = 3,
    sample_every: Annotated[int, typer.Option(
        "--sample-every", min=0, metavar="N", help="Sample grid every N steps (0: never).")] = 500,
    eval_every: Annotated[int, typer.Option(
        "--eval-every", min=0, metavar="N", help="AIS and IIS on the held-out clips every N "
        "steps, into metrics.jsonl and eval.png (0: never). Needs Wav2CLIP and CLIP ViT-B/32, "
        "as eval does.")] = 0,
    clip_b32: Annotated[Optional[str], typer.Option(
        "--clip-b32", metavar="SPEC", help="CLIP ViT-B/32 for --eval-every: a path, URL or hub "
        "id. Default: eval's.", show_default=False)] = None,
    wav2clip: Annotated[Optional[str], typer.Option(
        "--wav2clip", metavar="SPEC", help="Wav2CLIP checkpoint for --eval-every. Default: "
        "eval's.", show_default=False)] = None,
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
    from audiotoken_cli.config import RuntimeSettings, TrainSettings, auto_warmup
    from audiotoken_cli.training.data import parse_size

    try:
        frame_size = parse_size(size) if size else (resolution, resolution) if resolution else None
    except AudioTokenError as error:
        raise typer.BadParameter(str(error), param_hint="--size") from None
    warmup = auto_warmup(max_steps) if warmup_steps is None else warmup_steps
    if warmup > max_steps:
        typer.echo(f"warning: --warmup-steps {warmup} is longer than --max-steps {max_steps}: "
                   f"the lr only reaches {max_steps / warmup:.0%} of its value", err=True)
    options = dict(
        data=data, output=output, labels=labels, audio_seconds=audio_seconds, size=frame_size,
        batch_size=batch_size, grad_accum=grad_accum, max_steps=max_steps, lr=lr,
        scale_lr=scale_lr, weight_decay=weight_decay, warmup_steps=warmup, seed=seed,
        class_loss_weight=class_loss_weight, mixed_precision=mixed_precision.value,
        gradient_checkpointing=gradient_checkpointing, cache=cache,
        windows_per_clip=windows_per_clip, save_every=save_every, keep=keep,
        sample_every=sample_every, resume=resume, overwrite=overwrite,
        runtime=RuntimeSettings(device=device.value),
    )
    from audiotoken_cli.validation import check_train_options
    check_usage(check_train_options, options)

    def body() -> int:
        from audiotoken_cli.cli.report import TrainDisplay
        from audiotoken_cli.training.distributed import is_main_process
        from audiotoken_cli.training.loop import train as run_training

        paths = components(model, {"sd": sd, "audio_encoder": audio_encoder},
                            ("sd", "audio_encoder"), offline, quiet)
        init_path = components(model, {"embedder": init}, ("embedder",), offline, quiet)[
            "embedder"] if init else None
        scoring = _eval_models(eval_every, clip_b32, wav2clip, offline, quiet)
        settings = TrainSettings(**paths, init=init_path, eval_every=eval_every, **scoring,
                                 **options)
        if not is_main_process():  # other ranks of torchrun / accelerate train silently
            run_training(settings)
            return 0
        with TrainDisplay() as display:
            run = run_training(settings, display.events())
        display.done(run)
        return 0

    raise typer.Exit(guarded(ctx, body))


def _eval_models(eval_every: int, clip_b32, wav2clip, offline: bool, quiet: bool) -> dict:
    """``--eval-every``'s models as local paths (downloaded when missing), before training."""
    if not eval_every:
        return {}
    from audiotoken_cli.cli.report import print_notice
    from audiotoken_cli.hub import FetchOptions
    from audiotoken_cli.hub.fetch import resolve
    from audiotoken_cli.hub.specs import EVAL_COMPONENTS

    options = FetchOptions(offline=offline, quiet=quiet,
                           notice=(lambda message: None) if quiet else print_notice)
    return {role: resolve(given or EVAL_COMPONENTS[role], role, options)
            for role, given in (("clip_b32", clip_b32), ("wav2clip", wav2clip))}
