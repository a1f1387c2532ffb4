"""``audiotoken eval``: score generated images against their sounds (docs/eval.md)."""

from __future__ import annotations

import glob
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from audiotoken_cli.cli.app import app
from audiotoken_cli.cli.options import (
    DeviceOption,
    OfflineOption,
    QuietOption,
    ToolCommand,
)
from audiotoken_cli.cli.run import EXIT_FAILED, guarded
from audiotoken_cli.errors import UsageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
# The choices live in eval/inception.py (kept free of torch-heavy imports here); Typer wants Enums.
FidProtocol = Enum("FidProtocol", {name: name for name in ("clean", "torchmetrics")}, type=str)


def _model_option(flag: str, what: str):
    return Annotated[Optional[str], typer.Option(
        flag, metavar="SPEC", help=f"{what}: a path, URL or hub id. Default: the built-in source "
        "(see docs/eval.md).", show_default=False)]


@app.command("eval", cls=ToolCommand, epilog="\b\nExamples:\n"
             "  audiotoken eval out/ --audio sounds/ --real frames/ --labels labels.csv\n"
             "  audiotoken eval --compare before/eval.json after/eval.json")
def eval_command(
    ctx: typer.Context,
    images: Annotated[Optional[list[str]], typer.Argument(
        help="Generated images: files, folders (searched recursively) or glob patterns.",
        metavar="IMAGES...", show_default=False)] = None,
    audio: Annotated[Optional[Path], typer.Option(
        "--audio", metavar="DIR", help="The sounds the images were made from.",
        show_default=False)] = None,
    real: Annotated[Optional[Path], typer.Option(
        "--real", metavar="DIR", help="Real pictures (or videos: their middle frame) named like "
        "the sounds; for IIS, FID and KID.", show_default=False)] = None,
    labels: Annotated[Optional[Path], typer.Option(
        "--labels", metavar="CSV", help="Class labels of the sounds (the formats `train` reads); "
        "for AIC.", show_default=False)] = None,
    output_dir: Annotated[Path, typer.Option(
        "--output-dir", "-o", metavar="DIR", help="Where eval.json and eval.csv go.",
        file_okay=False)] = Path("."),
    compare: Annotated[Optional[tuple[Path, Path]], typer.Option(
        "--compare", metavar="A.json B.json", help="Print two eval.json side by side, with the "
        "differences; score nothing.", show_default=False)] = None,
    clip_b32: _model_option("--clip-b32", "CLIP ViT-B/32 (transformers folder)") = None,
    clip_l14: _model_option("--clip-l14", "CLIP ViT-L/14 (transformers folder)") = None,
    wav2clip: _model_option("--wav2clip", "Wav2CLIP checkpoint (Wav2CLIP.pt)") = None,
    inception: _model_option("--inception", "FID Inception weights (pytorch-fid's "
                             "pt_inception-2015-12-05-6726825d.pth)") = None,
    aic_prompt: Annotated[str, typer.Option(
        "--aic-prompt", metavar="TEXT", help="The class prompt for AIC; {label} stands for the "
        "class name (SonicDiffusion's code uses the bare label: '{label}').")
    ] = "a photo of a {label}",
    fid_protocol: Annotated[FidProtocol, typer.Option(
        "--fid-protocol", help="How pictures are resized to the Inception's 299×299 for FID and "
        "KID: torchmetrics (its FrechetInceptionDistance's antialiased bilinear; the default) "
        "or clean (clean-fid's PIL bicubic, as MACS reports its table).")] = FidProtocol.torchmetrics,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Images per batch.")] = 16,
    device: DeviceOption = "auto",
    offline: OfflineOption = False,
    quiet: QuietOption = False,
) -> None:
    """Score images against their sounds: AIS, IIS, AIC, FID and KID.

    Pairs each image with its sound by generate's naming rule (dog_seed3.png → dog.*) or its
    metadata; writes eval.json (every figure with its protocol) and eval.csv (a row per image).
    """
    def body() -> int:
        if compare:
            return _print_compare(*compare)
        if not images or audio is None:
            raise UsageError("give the images and --audio DIR (or --compare A.json B.json)")
        _require_torchmetrics()
        if not audio.is_dir():
            raise UsageError(f"{audio}: --audio must be a folder")
        for flag, folder in (("--real", real),):
            if folder is not None and not folder.is_dir():
                raise UsageError(f"{folder}: {flag} must be a folder")
        if "{label}" not in aic_prompt:
            raise UsageError(f"--aic-prompt {aic_prompt!r} must contain {{label}}")
        return _evaluate(images, audio, real, labels, output_dir, aic_prompt,
                         {"clip_b32": clip_b32, "clip_l14": clip_l14, "wav2clip": wav2clip,
                          "inception": inception}, batch_size, device, offline, quiet,
                         fid_protocol.value)

    raise typer.Exit(guarded(ctx, body))


def _require_torchmetrics() -> None:
    """One line before any work where a broken install lacks torchmetrics (a core dependency)."""
    import importlib.util

    if importlib.util.find_spec("torchmetrics") is None:
        raise UsageError('audiotoken eval needs torchmetrics for FID and KID: '
                         'pip install "torchmetrics>=1.9" (or reinstall audiotoken-cli)')


def _evaluate(arguments, audio, real, labels, output_dir, aic_prompt, given, batch_size, device,
              offline, quiet, fid_protocol) -> int:
    from audiotoken_cli.cli.report import print_error, print_notice
    from audiotoken_cli.eval.outputs import csv_rows, result_json, write_outputs
    from audiotoken_cli.eval.run import Evaluator, evaluate
    from audiotoken_cli.model import resolve_device

    files, missing = expand_images(arguments)
    for problem in missing:
        print_error(problem)
    if not files:
        raise UsageError("no images found in " + ", ".join(arguments))
    roles = ["clip_b32", "wav2clip"] + (["clip_l14"] if real or labels else []) + (
        ["inception"] if real else [])
    models = resolve_models(given, roles, offline, quiet)
    for model in models.values():
        if model.error:
            print_error(model.error)
    evaluator = Evaluator(models, resolve_device(getattr(device, "value", device)), batch_size,
                          aic_prompt=aic_prompt, fid_protocol=fid_protocol)
    result = evaluate(files, audio, real, labels, evaluator)
    for pair in result.skipped_images:
        print_error(f"{pair.problem} (not counted)")
    for problem in result.real_problems:
        print_error(f"{problem} (no real frame for IIS, FID and KID)")
    inputs = {"images": arguments, "audio": str(audio), "real": str(real) if real else None,
              "labels": str(labels) if labels else None, "batch_size": batch_size,
              "fid_protocol": fid_protocol}
    json_path, csv_path = write_outputs(output_dir, result_json(result, inputs), csv_rows(result))
    _print_figures(result)
    if not quiet:
        print_notice(f"wrote {json_path} and {csv_path} ({result.computed} features computed, "
                     f"{result.cache_hits} read from the cache)")
    failed = missing or result.skipped_images or any(m.error for m in models.values())
    return EXIT_FAILED if failed else 0


def expand_images(arguments: list[str]) -> tuple[list[Path], list[str]]:
    """Image files from files, folders and glob patterns, in order, each once; a path that is
    not a regular file is a problem line, not an image."""
    from audiotoken_cli.eval.run import not_a_regular_file

    found: dict[Path, None] = {}
    problems = []
    for argument in arguments:
        path = Path(argument).expanduser()
        if path.is_dir():
            hits = [p for p in sorted(path.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES]
        elif path.exists():  # a FIFO or a device too: refused below
            hits = [path]
        else:
            hits = [Path(p) for p in sorted(glob.glob(argument, recursive=True))
                    if Path(p).suffix.lower() in IMAGE_SUFFIXES]
        if not hits:
            problems.append(f"{argument}: no such image, folder or pattern")
        for hit in hits:  # refused before anything opens them (a FIFO would block for ever)
            problem = not_a_regular_file(hit)
            if problem:
                problems.append(problem)
            else:
                found[hit] = None
    return list(found), problems


def resolve_models(given: dict, roles: list[str], offline: bool, quiet: bool) -> dict:
    """Each eval model resolved (downloaded when missing); one that cannot be had keeps its
    error, so only the figures that need it are skipped."""
    from audiotoken_cli.cli.report import print_notice
    from audiotoken_cli.errors import AudioTokenError
    from audiotoken_cli.eval.run import Model
    from audiotoken_cli.hashing import cached_sha256
    from audiotoken_cli.hub import FetchOptions
    from audiotoken_cli.hub.fetch import resolve
    from audiotoken_cli.hub.specs import EVAL_COMPONENTS, EVAL_ROLES

    notice = (lambda message: None) if quiet else print_notice
    options = FetchOptions(offline=offline, quiet=quiet, notice=notice)
    models = {}
    for role in EVAL_ROLES:
        source = given.get(role) or EVAL_COMPONENTS[role]
        model = Model(role, source)
        models[role] = model
        if role not in roles:
            continue
        try:
            model.path = resolve(source, role, options)
            weights = _weights_file(model.path)
            model.sha256 = cached_sha256(weights) if weights else None
        except AudioTokenError as error:
            model.error, model.path = str(error), None
    return models


def _weights_file(path: Path) -> Path | None:
    if path.is_file():
        return path
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (path / name).is_file():
            return path / name
    return None


def _print_figures(result) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="audiotoken eval", show_lines=False)
    for column in ("figure", "value", "protocol", "on"):
        table.add_column(column)
    for figure in result.figures:
        info = figure.protocol
        if figure.value is None:
            value, on = "skipped", figure.skipped or ""
        else:
            value = f"{figure.value:.4f}" + (f" ± {info['std']:.4f}" if "std" in info else "")
            on = _counts(info)
        table.add_row(figure.name, value, str(info.get("protocol", "torchmetrics")), on)
    Console().print(table)


def _counts(info: dict) -> str:
    parts = []
    for key in ("pairs", "comparisons", "classes", "real", "generated", "subset_size"):
        if key in info:
            parts.append(f"{info[key]} {key.replace('_', ' ')}")
    return ", ".join(parts)


def _print_compare(a: Path, b: Path) -> int:
    from rich.console import Console
    from rich.table import Table

    from audiotoken_cli.eval.outputs import compare, read_report

    first, second = read_report(a), read_report(b)
    table = Table(title="audiotoken eval --compare")
    for column in ("figure", str(a), str(b), "B − A"):
        table.add_column(column)

    def shown(value):
        return "skipped" if value is None else f"{value:.4f}"

    for name, va, vb, diff in compare(first, second):
        table.add_row(name, shown(va), shown(vb), "" if diff is None else f"{diff:+.4f}")
    Console().print(table)
    return 0
