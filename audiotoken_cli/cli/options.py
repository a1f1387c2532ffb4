"""Options shared by several commands, defined once (Typer ``Annotated`` aliases)."""

from __future__ import annotations

import re
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import click
import typer
from typer.core import TyperArgument, TyperCommand

from audiotoken_cli.config import DEVICE_CHOICES, DTYPE_CHOICES

AudioInputs = Annotated[
    list[str],
    typer.Argument(help="Audio or video files, folders (searched recursively) or glob patterns.",
                   metavar="AUDIO...",
                   show_default=False),
]
OptionalAudioInputs = Annotated[
    Optional[list[str]],
    typer.Argument(help="Audio or video files, folders (searched recursively) or glob patterns.",
                   metavar="[AUDIO]...", show_default=False),
]
OutputDir = Annotated[
    Optional[Path],
    typer.Option("--output-dir", "-o", metavar="DIR", help="Write outputs here instead of beside each "
                 "input, in the inputs' subfolders (relative to the folder or pattern given).",
                 file_okay=False),
]
AudioEncoderOption = Annotated[
    Optional[str],
    typer.Option("--audio-encoder", metavar="SPEC", help="BEATs checkpoint (the official .pt with cfg and "
                 "model): a path, URL or hub id. Default: the preset's.", show_default=False),
]
EmbedderOption = Annotated[
    Optional[str],
    typer.Option("--embedder", metavar="SPEC", help="The paper's embedder_learned_embeds.bin, or an "
                 "audiotoken embedder (a training run folder or its .safetensors): a path, URL or "
                 "hub id. "
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
# The choices live in config.py (model.py validates with the same tuples); Typer wants Enums.
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
LoraOption = Annotated[
    Optional[str],
    typer.Option("--lora", metavar="SPEC", help="The paper's optional UNet LoRA "
                 "(lora_layers_learned_embeds.bin): a path, URL or hub id.", show_default=False),
]
SafetyCheckerOption = Annotated[
    bool,
    typer.Option("--safety-checker/--no-safety-checker",
                 help="Run the model's own safety checker, when it ships one."),
]
LowVramOption = Annotated[
    bool,
    typer.Option("--low-vram", help="Keep sub-models on the CPU until used (CUDA): slower, less "
                 "memory."),
]
FastOption = Annotated[
    bool,
    typer.Option("--fast", help="LCM-LoRA, 4 steps, guidance off, and the tiny TAESD decoder: "
                 "12x fewer UNet evaluations, for CPUs. Softer images."),
]
LcmLoraOption = Annotated[
    Optional[str],
    typer.Option("--lcm-lora", metavar="SPEC", help="--fast's LCM-LoRA "
                 "(pytorch_lora_weights.safetensors): a path, URL or hub id. Default: the "
                 "preset's.", show_default=False),
]
TaesdOption = Annotated[
    Optional[str],
    typer.Option("--taesd", metavar="SPEC", help="--fast's tiny autoencoder (a diffusers "
                 "AutoencoderTiny folder): a path or hub id. Default: the preset's.",
                 show_default=False),
]
CompileOption = Annotated[
    bool,
    typer.Option("--compile", help="torch.compile the UNet: faster batches after a one-time "
                 "compilation warm-up; for long runs on a GPU."),
]
SdOption = Annotated[
    Optional[str],
    typer.Option("--sd", metavar="SPEC", help="Stable Diffusion (SD 1.x or 2.x) as a diffusers "
                 "folder or hub id. Default: the preset's.", show_default=False),
]


class ToolCommand(TyperCommand):
    """Help that reads like a tool's: usage lines show each argument's metavar as written
    (``AUDIO...``, ``DATA``) rather than Typer's ``{AUDIO...}...``, and argument rows show no
    Python type (``<list[str]>``, ``<path>``)."""

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, (click.Argument, TyperArgument)):
                pieces.append(param.metavar or param.name.upper())
        return pieces

    def get_help(self, ctx: click.Context) -> str:
        lines, removed = [], 0
        for line in super().get_help(ctx).splitlines():
            if removed and line.startswith(" " * (removed + 4)):
                lines.append(line[removed:])  # the row's wrapped description, moved left too
                continue
            removed = 0
            if line.startswith("  ") and not line.lstrip().startswith("-"):
                shorter = _PYTHON_TYPE.sub("", line, count=1)
                removed = len(line) - len(shorter)
                line = shorter
            lines.append(line)
        return "\n".join(lines)


_PYTHON_TYPE = re.compile(r" <(list\[\w+\]|path|str|int|float)>")
