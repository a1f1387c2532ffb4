"""``audiotoken download``: fetch, verify and cache weights."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from audiotoken_cli.cli.app import app
from audiotoken_cli.cli.options import (
    AudioEncoderOption,
    EmbedderOption,
    ModelOption,
    QuietOption,
    SdOption,
    ToolCommand,
)
from audiotoken_cli.cli.run import components, guarded


@app.command(cls=ToolCommand, epilog="\b\nExamples:\n  audiotoken download                 # the default preset, vggsound\n"
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
    fast: Annotated[bool, typer.Option(
        "--fast", help="Also fetch generate --fast's LCM-LoRA and tiny autoencoder.")] = False,
    eval_models: Annotated[bool, typer.Option(
        "--eval", help="Fetch the models `audiotoken eval` scores with (CLIP ViT-B/32 and "
        "ViT-L/14, Wav2CLIP, the FID Inception) instead of a preset.")] = False,
    quiet: QuietOption = False,
) -> None:
    """Fetch, verify and cache a preset's weights for offline use.

    Files go to the standard Hugging Face cache (HF_HOME), plain URLs to the user cache.
    The paper's pickled weights also get safetensors copies there, for fast, safe loads.
    """
    def body() -> int:
        from audiotoken_cli.cli.report import print_download_summary, print_presets

        if list_presets:
            from audiotoken_cli.hub import preset_status

            print_presets(preset_status())
            return 0
        if eval_models:
            return _download_eval(quiet)
        from audiotoken_cli.hub import get_preset
        from audiotoken_cli.models.safecache import load_beats_fast, load_embedder_fast

        given = {"sd": sd, "audio_encoder": audio_encoder, "embedder": embedder, "lora": lora}
        # A preset without a published embedder (sdxl) fetches the rest, for training one.
        with_embedder = bool(embedder or get_preset(model).embedder)
        # Small files first: a bad checksum shows before gigabytes of Stable Diffusion.
        roles = (("audio_encoder",) + (("embedder",) if with_embedder else ()) + ("sd", "lora")
                 + (("lcm_lora", "taesd") if fast else ()))
        paths = components(model, given, roles, offline=False, quiet=quiet)
        # One verified load makes the safetensors copies that every later run loads.
        load_beats_fast(paths["audio_encoder"])
        if with_embedder:
            load_embedder_fast(paths["embedder"])
        print_download_summary(model, paths)
        return 0

    raise typer.Exit(guarded(ctx, body))


def _download_eval(quiet: bool) -> int:
    from audiotoken_cli.cli.eval import resolve_models
    from audiotoken_cli.cli.report import print_error, print_notice
    from audiotoken_cli.hub.specs import EVAL_ROLES

    models = resolve_models({}, list(EVAL_ROLES), offline=False, quiet=quiet)
    for model in models.values():
        if model.error:
            print_error(model.error)
        else:
            print_notice(f"{model.role}: {model.path}")
    return 1 if any(model.error for model in models.values()) else 0
