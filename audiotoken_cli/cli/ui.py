"""``audiotoken ui``: the local web app (gradio, an optional extra)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from audiotoken_cli.cli.app import app
from audiotoken_cli.cli.options import (
    AudioEncoderOption,
    Device,
    DeviceOption,
    Dtype,
    DtypeOption,
    EmbedderOption,
    LoraOption,
    LowVramOption,
    ModelOption,
    OfflineOption,
    SafetyCheckerOption,
    SdOption,
    ToolCommand,
)
from audiotoken_cli.cli.run import guarded

INSTALL_HINT = 'audiotoken ui needs gradio: pip install "audiotoken-cli[ui]"'


@app.command(cls=ToolCommand,
             epilog="\b\nExamples:\n  audiotoken ui\n  audiotoken ui --port 8080 --embedder run/\n"
             "  audiotoken ui --host 0.0.0.0 --max-upload-mb 50   (reachable from your network)")
def ui(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(
        "--host", metavar="ADDRESS", help="Address to listen on. The default answers this "
        "machine only; 0.0.0.0 opens the app to your network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, metavar="PORT",
                                      help="Port to listen on.")] = 7860,
    share: Annotated[bool, typer.Option(
        "--share/--no-share", help="Also publish the app through a public gradio.live link.")]
        = False,
    max_upload_mb: Annotated[float, typer.Option(
        "--max-upload-mb", min=0.001, metavar="MB", help="Largest upload accepted.")] = 200.0,
    max_duration: Annotated[float, typer.Option(
        "--max-duration", min=0.01, metavar="SECONDS", help="Longest recording accepted (read "
        "from the file's header, before decoding).")] = 600.0,
    fast: Annotated[bool, typer.Option(
        "--fast", help="Start with the page's Fast switch on: LCM-LoRA, 4 steps, guidance off, "
        "TAESD (the Live tab's quickest path).")] = False,
    lcm_lora: Annotated[Optional[str], typer.Option(
        "--lcm-lora", metavar="SPEC", help="The fast switch's LCM-LoRA: a path, URL or hub id. "
        "Default: the preset's.", show_default=False)] = None,
    taesd: Annotated[Optional[str], typer.Option(
        "--taesd", metavar="SPEC", help="The fast switch's tiny autoencoder: a path or hub id. "
        "Default: the preset's.", show_default=False)] = None,
    sd: SdOption = None,
    audio_encoder: AudioEncoderOption = None,
    embedder: EmbedderOption = None,
    lora: LoraOption = None,
    safety_checker: SafetyCheckerOption = True,
    low_vram: LowVramOption = False,
    model: ModelOption = "vggsound",
    offline: OfflineOption = False,
    device: DeviceOption = Device.auto,
    dtype: DtypeOption = Dtype.auto,
) -> None:
    """Open a local web app: sounds, recordings and a live microphone into pictures.

    Models load once, on the first request, and every tab shares them. Uploads and outputs live
    in a private temporary folder, each browser session in its own, removed when the session ends
    and when the server stops (Ctrl-C).
    """
    try:
        import gradio  # noqa: F401
    except ImportError:
        typer.echo(INSTALL_HINT, err=True)
        raise typer.Exit(2) from None
    from audiotoken_cli.ui import Limits, UiOptions, serve

    load = dict(model=model, device=device.value, dtype=dtype.value, sd=sd,
                audio_encoder=audio_encoder, embedder=embedder, lora=lora,
                safety_checker=safety_checker, low_vram=low_vram, offline=offline, quiet=False)
    fast_load = {key: value for key, value in (("lcm_lora", lcm_lora), ("taesd", taesd)) if value}
    options = UiOptions(host=host, port=port, share=share,
                        limits=Limits(max_upload_mb=max_upload_mb, max_duration=max_duration),
                        load=load, fast_load=fast_load, fast=fast)
    raise typer.Exit(guarded(ctx, lambda: serve(options, on_ready=typer.echo) or 0))
