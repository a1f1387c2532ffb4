"""Range checks for every setting a user can give, run before any model loads.

The CLI and the Python API call the same functions, so both give the same one-line
``UsageError`` naming the option and its valid range. Nothing here imports torch.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from audiotoken_cli.config import PLACEHOLDER, Window
from audiotoken_cli.errors import UsageError

MAX_SEED = 2**63 - 1
"""Seeds are 0..2^63-1: torch.Generator.manual_seed and numpy's SeedSequence take any of these,
and every image's seed (base + i) must stay inside the range too."""

MAX_START_SECONDS = 7 * 24 * 3600.0
"""A week: far past any real recording, small enough that start × rate stays an exact integer."""

MIN_DURATION_SECONDS = 0.01
MAX_DURATION_SECONDS = 3600.0
"""An hour of 16 kHz float32 audio is 230 MB per window; longer windows are a typo."""

IMAGE_MULTIPLE = 8
"""Stable Diffusion's VAE downsamples by 8, so image sides must be multiples of 8."""
MAX_IMAGE_SIDE = 8192


def check_number(name: str, value, low: float, high: float) -> float:
    """``value`` as a float in [low, high], else a UsageError naming the option and the range."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise UsageError(f"{name} {value!r} is not a number; it must be in {low:g}..{high:g}") from None
    if not math.isfinite(number) or not low <= number <= high:
        bounds = f"in {low:g}..{high:g}" if high < sys.float_info.max else f"finite and at least {low:g}"
        raise UsageError(f"{name} {value!r} is out of range; it must be {bounds}")
    return number


def check_window(window: Window, start_name: str = "--start",
                 duration_name: str = "--duration") -> None:
    check_number(start_name, window.start, 0.0, MAX_START_SECONDS)
    check_number(duration_name, window.duration, MIN_DURATION_SECONDS, MAX_DURATION_SECONDS)


def check_seed(seed, count: int = 1, name: str = "--seed") -> None:
    """Seeds seed..seed+count-1 must all lie in 0..2^63-1."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise UsageError(f"{name} {seed!r} is not a whole number; it must be in 0..{MAX_SEED}")
    if count < 1:
        raise UsageError(f"the number of images {count} must be at least 1")
    highest = MAX_SEED - (count - 1)
    if not 0 <= seed <= highest:
        raise UsageError(f"{name} {seed} is out of range; with {count} image(s) per sound it must "
                         f"be in 0..{highest} (seeds run from 0 to 2^63-1)")


def check_image_size(width, height, names: tuple[str, str] = ("--width", "--height")) -> None:
    for name, value in zip(names, (width, height)):
        if isinstance(value, bool) or not isinstance(value, int) \
                or not IMAGE_MULTIPLE <= value <= MAX_IMAGE_SIDE or value % IMAGE_MULTIPLE:
            suggestion = ""
            if isinstance(value, int) and IMAGE_MULTIPLE <= value <= MAX_IMAGE_SIDE:
                suggestion = f"; try {max(IMAGE_MULTIPLE, round(value / 8) * 8)}"
            raise UsageError(f"{name} {value!r} must be a multiple of {IMAGE_MULTIPLE} in "
                             f"{IMAGE_MULTIPLE}..{MAX_IMAGE_SIDE}{suggestion}")


def check_output_folder(path, name: str = "--output-dir") -> None:
    """The folder need not exist yet, but it must be (or become) a writable folder: not a file,
    not under a file, and its nearest existing ancestor writable."""
    if path is None:
        return
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{name} {folder}: is a file, not a folder")
    existing = folder
    while not existing.exists():
        if existing.is_symlink():
            raise UsageError(f"{name} {folder}: {existing} is a broken symbolic link")
        parent = existing.parent
        if parent == existing:
            break
        existing = parent
    if existing != folder and not existing.is_dir():
        raise UsageError(f"{name} {folder}: lies under {existing}, which is a file, not a folder")
    if existing.is_dir() and not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{name} {folder}: cannot write in {existing} (permission denied)")


def check_generate_options(options: Mapping) -> None:
    """Range checks for ``generate``'s options (GenerateSettings fields; missing ones skipped)."""
    window = options.get("window")
    if window is not None:
        check_window(window)
    count = options.get("num_images", 1)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise UsageError(f"--num-images {count!r} must be at least 1")
    if "seed" in options:
        check_seed(options["seed"], count)
    # None: the model's own size, filled in once the model is known
    width, height = options.get("width"), options.get("height")
    check_image_size(512 if width is None else width, 512 if height is None else height)
    if "steps" in options:
        check_number("--steps", options["steps"], 1, 10_000)
    if "guidance" in options:
        check_number("--guidance", options["guidance"], 0.0, 1000.0)
    check_output_folder(options.get("output_dir"))


def check_embed_options(options: Mapping) -> None:
    window = options.get("window")
    if window is not None:
        check_window(window)
    check_output_folder(options.get("output_dir"))
    if options.get("name") is not None:
        check_embedding_name(options["name"])


def check_embedding_name(name: str) -> None:
    """An embedding name every client can say: ComfyUI's ``embedding:NAME`` ends at the first
    space, and the name is a file's stem."""
    if not name or any(char.isspace() for char in name) or "/" in name or "\\" in name \
            or name in (".", ".."):
        raise UsageError(f"--name {name!r}: an embedding name needs at least one character and no "
                         "spaces or slashes (ComfyUI's embedding:NAME ends at the first space)")


def check_train_options(options: Mapping) -> None:
    if "audio_seconds" in options:
        check_number("--audio-seconds", options["audio_seconds"], 0.5, 10.0)
    if "seed" in options:
        check_seed(options["seed"])
    if options.get("size") is not None:
        check_image_size(*options["size"], names=("--size width", "--size height"))
    for name in ("lr", "weight_decay", "class_loss_weight", "l1_weight"):
        if name in options:  # any finite size: a huge --lr is a legitimate way to test divergence
            check_number("--" + name.replace("_", "-"), options[name], 0.0, sys.float_info.max)
    if options.get("output") is not None:
        check_output_folder(options["output"], "--output")


def prompt_problem(prompt: str, placeholder: str = PLACEHOLDER) -> str:
    """The one wording of a bad prompt, shared by the CLI (after Typer's "Invalid value for
    --prompt:"), the Python API and the web app, so every surface says the same."""
    return (f"the prompt {prompt!r} must contain the placeholder {placeholder} exactly once, "
            f"e.g. 'a photo of {placeholder}'")
