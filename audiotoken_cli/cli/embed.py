"""``audiotoken embed``: each sound's audio token, for other tools."""

from __future__ import annotations

from typing import Annotated

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
    StartOption,
    ToolCommand,
)
from audiotoken_cli.cli.run import Nouns, check_usage, components, guarded, run_batch


@app.command(cls=ToolCommand, epilog="\b\nExamples:\n  audiotoken embed dog.wav rain.mp3 -o tokens/\n"
             "  audiotoken embed clips/ --embedder run/ --audio-encoder ~/models/BEATs.pt\n"
             "  audiotoken embed \"my dog.wav\" --name dog   (then embedding:dog in ComfyUI)")
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
    name: Annotated[str | None, typer.Option(
        "--name", metavar="NAME",
        help="The embedding's name, so NAME.safetensors (one input). Default: the audio's stem "
             "with spaces made _, as ComfyUI's embedding:NAME ends at a space.")] = None,
    model: ModelOption = "vggsound",
    offline: OfflineOption = False,
    quiet: QuietOption = False,
    device: DeviceOption = Device.auto,
    dtype: DtypeOption = Dtype.auto,
) -> None:
    """Save each sound's audio token in a safetensors file beside it.

    <stem>.safetensors holds one tensor, emb_params [1, d]: the textual-inversion layout
    that diffusers, A1111 and ComfyUI load as an embedding. Spaces in the stem become _
    (ComfyUI cuts embedding:NAME at a space); --name chooses the name.
    """
    from audiotoken_cli.config import EmbedSettings, RuntimeSettings, Window

    options = dict(window=Window(start=start, duration=duration), batch_size=batch_size,
                   output_dir=output_dir, overwrite=overwrite, name=name,
                   runtime=RuntimeSettings(device=device.value, dtype=dtype.value))
    given = {"audio_encoder": audio_encoder, "embedder": embedder}
    from audiotoken_cli.validation import check_embed_options
    check_usage(check_embed_options, options)

    def body() -> int:
        from audiotoken_cli.pipeline.tokens import embed_files

        def process(sources, progress, roots, rank, world):
            progress.on_phase("finding the models")
            paths = components(model, given, ("audio_encoder", "embedder"), offline, quiet)
            progress.on_phase("loading models and encoding")
            return embed_files(sources, EmbedSettings(**paths, **options), roots, rank=rank,
                               world=world)

        return run_batch(audio, process, "Embedding", Nouns("token file", "sound", "embed"), output_dir)

    raise typer.Exit(guarded(ctx, body))
