"""Which Stable Diffusion a diffusers folder holds (SD 1.x, SD 2.x or SDXL), read from its files.

Never guessed from the folder's or the hub id's name: fine-tunes carry any name. The facts:
- ``model_index.json``'s ``_class_name``: ``StableDiffusionXLPipeline`` for SDXL (with its
  ``text_encoder_2``), ``StableDiffusionPipeline`` for SD 1.x and 2.x;
- SD 1.x's text encoder is OpenAI's CLIP ViT-L (``quick_gelu``), SD 2.x's is OpenCLIP ViT-H
  (``gelu``), so ``text_encoder/config.json``'s activation tells the two apart at any width.
The default image size is the UNet's ``sample_size`` times the VAE's downscale, which is how
diffusers picks its own default (512 for SD 1.x and 2.x-base, 768 for SD 2.x-v, 1024 for SDXL).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from audiotoken_cli.errors import ModelError

KIND_LABELS = {"sd1": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL"}
SDXL_CLASSES = ("StableDiffusionXLPipeline",)
SD_CLASSES = ("StableDiffusionPipeline",)
ENCODERS = {"sd1": ("text_encoder",), "sd2": ("text_encoder",),
            "sdxl": ("text_encoder", "text_encoder_2")}
TOKENIZERS = {"text_encoder": "tokenizer", "text_encoder_2": "tokenizer_2"}


@dataclass(frozen=True)
class ModelKind:
    """What the rest of the code needs to know about a Stable Diffusion folder."""

    name: str  # "sd1" | "sd2" | "sdxl"
    text_widths: tuple[int, ...]  # one per text encoder, in pipeline order
    prediction_type: str  # "epsilon" | "v_prediction" (training's target)
    default_size: int  # pixels on a side

    @property
    def label(self) -> str:
        return KIND_LABELS[self.name]

    @property
    def encoders(self) -> tuple[str, ...]:
        """The text-encoder sub-folders, in the order their widths are concatenated."""
        return ENCODERS[self.name]


def model_parts(folder: Path) -> tuple[str, ...]:
    """The sub-folders the pipeline in ``folder`` needs (the safety checker is optional)."""
    index = _read_json(Path(folder) / "model_index.json")
    extra = ("text_encoder_2", "tokenizer_2") if index.get("_class_name") in SDXL_CLASSES else ()
    return ("unet", "vae", "text_encoder", "tokenizer", "scheduler") + extra


def model_kind(folder: Path) -> ModelKind:
    """Read the kind of the diffusers folder ``folder``; a ModelError names what is wrong."""
    folder = Path(folder)
    index = _read_json(folder / "model_index.json")
    class_name = str(index.get("_class_name", ""))
    if class_name in SDXL_CLASSES:
        name = "sdxl"
    elif class_name in SD_CLASSES:
        first = _read_json(folder / "text_encoder" / "config.json")
        name = "sd2" if first.get("hidden_act") == "gelu" else "sd1"
    else:
        raise ModelError(f"{folder}: a {class_name or 'pipeline without a _class_name'}, not a "
                         "Stable Diffusion 1.x, 2.x or XL pipeline (model_index.json)")
    widths = tuple(int(_read_json(folder / part / "config.json")["hidden_size"])
                   for part in ENCODERS[name])
    scheduler = _read_json(folder / "scheduler" / "scheduler_config.json")
    return ModelKind(name, widths, scheduler.get("prediction_type", "epsilon"),
                     _default_size(folder))


def default_image_size(folder: Path | None) -> int:
    """The image side ``generate`` and ``video`` draw at when no size is given: the model's own
    (1024 for SDXL); 512 when there is no model or its folder cannot say (loading it will)."""
    if folder is None:
        return 512
    try:
        return model_kind(Path(folder)).default_size
    except ModelError:
        return 512


def _default_size(folder: Path) -> int:
    unet = _read_json(folder / "unet" / "config.json")
    vae = _read_json(folder / "vae" / "config.json")
    sample = unet.get("sample_size") or 64
    sample = sample[0] if isinstance(sample, list) else sample
    return int(sample) * 2 ** (len(vae.get("block_out_channels", [0] * 4)) - 1)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as error:
        raise ModelError(f"{path.parent}: no {path.name} (is the download complete?)") from error
    except (OSError, ValueError) as error:
        raise ModelError(f"{path}: unreadable ({str(error).splitlines()[0]})") from error
    if not isinstance(data, dict):
        raise ModelError(f"{path}: expected a JSON object")
    return data
