"""The ``audiotoken`` command line: parse, validate, call the library, report.

This is the only module that knows Typer. Heavy libraries (torch, PyAV, diffusers) are imported
inside the commands, so ``--help``, ``--version`` and argument errors answer instantly.
"""

from __future__ import annotations

import sys
import traceback
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from audiotoken_cli import __version__
from audiotoken_cli.errors import AudioTokenError

app = typer.Typer(
    name="audiotoken",
    help="Turn sounds into pictures with AudioToken (Interspeech 2023).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
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
                   show_default=False),
]
OutputDir = Annotated[
    Optional[Path],
    typer.Option("--output-dir", "-o", help="Write outputs here instead of beside each input.",
                 file_okay=False),
]
AudioEncoderOption = Annotated[
    Optional[Path],
    typer.Option("--audio-encoder", help="BEATs checkpoint (.pt, official {'cfg','model'} format).",
                 show_default=False),
]
EmbedderOption = Annotated[
    Optional[Path],
    typer.Option("--embedder", help="Embedder: the paper's embedder_learned_embeds.bin, or a "
                 "folder / .safetensors saved by audiotoken.", show_default=False),
]
StartOption = Annotated[
    float,
    typer.Option("--start", min=0.0, help="Where the audio window starts, in seconds."),
]
DurationOption = Annotated[
    float,
    typer.Option("--duration", min=0.01, help="Window length in seconds (the paper: 10). "
                 "Shorter audio is looped to fill it."),
]
class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"
    mps = "mps"


class Dtype(str, Enum):
    auto = "auto"
    float32 = "float32"
    float16 = "float16"
    bfloat16 = "bfloat16"


DeviceOption = Annotated[
    Device,
    typer.Option("--device", help="auto picks CUDA, then MPS, then CPU."),
]
DtypeOption = Annotated[
    Dtype,
    typer.Option("--dtype", help="auto picks float16 on a GPU, float32 on the CPU."),
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
    token in Stable Diffusion's text space, and that token stands in for [bold]<*>[/] in a prompt.
    """
    ctx.obj = AppState(debug=debug)


# ---------------------------------------------------------------------------------------------
# embed


@app.command(epilog="Example: [bold]audiotoken embed dog.wav rain.mp3 --audio-encoder "
             "BEATs.pt --embedder embedder_learned_embeds.bin -o tokens/[/]")
def embed(
    ctx: typer.Context,
    audio: AudioInputs,
    output_dir: OutputDir = None,
    audio_encoder: AudioEncoderOption = None,
    embedder: EmbedderOption = None,
    start: StartOption = 0.0,
    duration: DurationOption = 10.0,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1,
                                            help="Audio windows encoded together.")] = 8,
    device: DeviceOption = Device.auto,
    dtype: DtypeOption = Dtype.auto,
    overwrite: OverwriteOption = False,
) -> None:
    """Turn each sound into its audio token, saved as <stem>.safetensors.

    Each file holds one tensor, emb_params [1, d]: the textual-inversion layout
    that diffusers, A1111 and ComfyUI load as an embedding.
    """
    from audiotoken_cli.config import EmbedSettings, RuntimeSettings, Window

    settings = EmbedSettings(
        audio_encoder=_required(audio_encoder, "--audio-encoder", "a BEATs checkpoint file"),
        embedder=_required(embedder, "--embedder", "an embedder file or folder"),
        window=Window(start=start, duration=duration),
        batch_size=batch_size,
        output_dir=output_dir,
        overwrite=overwrite,
        runtime=RuntimeSettings(device=device.value, dtype=dtype.value),
    )

    def body() -> int:
        from audiotoken_cli.tokens import embed_files

        return _run_batch(audio, lambda sources: embed_files(sources, settings), "Embedding")

    raise typer.Exit(_guarded(ctx, body))


# ---------------------------------------------------------------------------------------------
# Shared plumbing: validation, the per-file batch loop, error reporting.


def _required(value: Optional[Path], option: str, what: str) -> Path:
    if value is None:
        # Named presets and downloads arrive with `audiotoken download`; until then we ask
        # for local files rather than guess.
        raise typer.BadParameter(f"missing: pass {what} with {option} PATH", param_hint=option)
    return value


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
        with reporter.progress(verb, total=len(sources)) as advance:
            for result in process(sources):
                if result.failed:
                    reporter.error(result.message)
                results.append(result)
                advance(result)
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
    app(prog_name="audiotoken")


if __name__ == "__main__":
    sys.exit(main())
