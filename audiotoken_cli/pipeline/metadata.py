"""What each PNG carries: an A1111 ``parameters`` text chunk and a JSON ``audiotoken`` chunk with
every setting and the hashes of the models and the audio, so any image can be made again."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from audiotoken_cli import __version__
from audiotoken_cli.config import GenerateSettings
from audiotoken_cli.hashing import cached_sha256, file_sha256
from audiotoken_cli.pipeline.naming import (
    MODEL_SETTINGS,
    PIXEL_SETTINGS,
    PlannedImage,
    model_id,
    pixel_settings,
)
from audiotoken_cli.render.diffusion import SAMPLER_NAMES
from audiotoken_cli.render.kind import KIND_LABELS, model_kind

if TYPE_CHECKING:
    from audiotoken_cli.pipeline.tokens import AudioTokenizer


@dataclass
class RunMetadata:
    """What every image of a run shares; ``for_image`` adds the per-image part."""

    settings: GenerateSettings
    models: dict
    audio_hashes: dict[Path, str] = field(default_factory=dict)

    @classmethod
    def collect(cls, settings: GenerateSettings, tokenizer: AudioTokenizer) -> RunMetadata:
        """Resolved values only: absolute model paths (and hub ids where the path is in the hub
        cache), the dtype and device actually used, so ``generate --from`` can run it again."""
        dtype = str(tokenizer.dtype).removeprefix("torch.")
        models = {
            **pixel_settings(settings, dtype),
            "device": tokenizer.device.type,
            "sd_hub": hub_id(settings.sd),
            "sd_kind": model_kind(Path(settings.sd)).name,  # sd1 | sd2 | sdxl, from the folder
            "sd_unet_sha256": _unet_hash(Path(settings.sd)),
            "audio_encoder_hub": hub_id(settings.audio_encoder),
            "audio_encoder_sha256": cached_sha256(Path(settings.audio_encoder)),
            "embedder_hub": hub_id(settings.embedder),
            "embedder_sha256": cached_sha256(tokenizer.embedder.weights_file),
            "lora_hub": hub_id(settings.lora),
            "lora_sha256": cached_sha256(settings.lora) if settings.lora else None,
        }
        return cls(settings, models)

    def for_image(self, image: PlannedImage) -> dict:
        return {
            "tool": "audiotoken-cli",
            "version": __version__,
            **self.models,
            "seed": image.seed,
            "audio_file": image.source.name,
            "audio_path": str(image.source.resolve()),
            "audio_sha256": self._audio_hash(image.source),
        }

    def _audio_hash(self, source: Path) -> str:
        """Once per sound, not once per image of it."""
        if source not in self.audio_hashes:
            self.audio_hashes[source] = file_sha256(source)
        return self.audio_hashes[source]


def hub_id(path: Path | str | None) -> str | None:
    """``owner/name@commit/sub/path`` for a file or folder inside the hub cache, else None; a
    hub id works on any machine, where a cache path does not."""
    if path is None:
        return None
    parts = Path(path).resolve().parts
    for i, part in enumerate(parts[:-2]):
        kind, _, name = part.partition("--")
        if kind in ("models", "spaces") and "--" in name and parts[i + 1] == "snapshots":
            owner, _, repo = name.partition("--")
            prefix = "spaces/" if kind == "spaces" else ""
            rest = "/".join(parts[i + 3:])
            return f"{prefix}{owner}/{repo}@{parts[i + 2]}" + (f"/{rest}" if rest else "")
    return None


def read_image_settings(path: Path) -> dict | None:
    """The JSON ``audiotoken`` chunk of a PNG, or None when the file has none (or is no PNG)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            text = getattr(image, "text", {}).get("audiotoken")
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return None  # no readable chunk: whoever reads the pixels reports the image's problem
    try:
        info = json.loads(text) if text else None
    except ValueError:
        return None
    return info if isinstance(info, dict) else None


def settings_from_image(image: Path) -> tuple[dict, str | None]:
    """The settings an image was made with, named as ``generate``'s options, and its sound
    (None when the recorded sound is no longer there).

    Models come back as the recorded path when it exists here, else as the hub id recorded beside
    it (so an image made on another machine still names weights this one can fetch).
    """
    from audiotoken_cli.errors import InputError

    info = read_image_settings(image)
    if info is None:
        raise InputError(f"{image}: no audiotoken settings in this image (not made by "
                         "audiotoken generate, or its metadata was stripped)")
    values = {key: info[key] for key in ("seed", "steps", "guidance", "prompt",
                                         "negative_prompt", "width", "height", "scheduler")
              if key in info}
    window = info.get("window") or {}
    values.update({key: window[key] for key in ("start", "duration") if key in window})
    if info.get("dtype"):
        values["dtype"] = info["dtype"]
    for role in ("sd", "audio_encoder", "embedder", "lora", "lcm_lora", "taesd"):
        path, hub = info.get(role), info.get(f"{role}_hub")
        if path and Path(path).exists():
            values[role] = path
        elif hub or path:
            values[role] = hub or path
    candidates = [info.get("audio_path"), str(Path(image).parent / info.get("audio_file", ""))]
    return values, next((c for c in candidates if c and Path(c).is_file()), None)


def same_settings(path: Path, wanted: dict) -> bool:
    """Whether the image at ``path`` was made with these pixel-changing settings."""
    info = read_image_settings(path)
    if info is None:
        return False
    found = {key: info.get(key) for key in PIXEL_SETTINGS}
    for key in MODEL_SETTINGS:
        found[key] = model_id(found[key]) if found[key] else None
    return found == {key: wanted.get(key) for key in PIXEL_SETTINGS}


def _unet_hash(sd: Path) -> str | None:
    """The UNet's weight file stands for the model, as a checkpoint hash does in A1111."""
    for name in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors",
                 "diffusion_pytorch_model.bin"):
        if (sd / "unet" / name).is_file():
            return cached_sha256(sd / "unet" / name)
    return None


def a1111_parameters(info: dict) -> str:
    """The ``parameters`` text chunk as A1111 writes it, so image browsers show the settings."""
    # "Negative prompt:" even when empty (A1111 leaves it out then): ComfyUI's import of an
    # A1111 chunk builds its workflow only when the line is there; A1111 reads it as "".
    lines = [info["prompt"], f"Negative prompt: {info['negative_prompt']}".rstrip()]
    fields = {
        "Steps": info["steps"],
        "Sampler": SAMPLER_NAMES[info["scheduler"]],
        "CFG scale": info["guidance"],
        "Seed": info["seed"],
        "Size": f"{info['width']}x{info['height']}",
        # As in A1111, the checkpoint hash: here the sha256 of the UNet's weight file.
        "Model hash": (info["sd_unet_sha256"] or "")[:10] or None,
        "Model": Path(info["sd"]).name or info["sd"],
        **({"Model kind": KIND_LABELS[info["sd_kind"]]} if info.get("sd_kind") else {}),
        "Audio": info["audio_file"],
        "Version": f"audiotoken-cli {info['version']}",
    }
    # As A1111 does, a field with no value is left out (its parser cannot read "Key: ,").
    lines.append(", ".join(f"{key}: {a1111_quote(value)}" for key, value in fields.items()
                           if value is not None))
    return "\n".join(lines)


def a1111_quote(value: object) -> str:
    """A value as A1111 writes its own fields: a JSON string when it holds a comma, a colon or a
    line break (which its ``parse_generation_parameters`` would otherwise split into bogus fields).
    Also quoted here: a value with a double quote, or with spaces at either end, which its parser
    would unquote or strip; A1111's reader takes any JSON string, so these read back exactly."""
    text = str(value)
    if any(mark in text for mark in ',:\n"') or text != text.strip():
        return json.dumps(text, ensure_ascii=False)
    return text


def save_png(path: Path, image, info: dict) -> None:
    from PIL.PngImagePlugin import PngInfo

    chunks = PngInfo()
    chunks.add_text("parameters", a1111_parameters(info))
    chunks.add_text("audiotoken", json.dumps(info, sort_keys=True))
    image.save(path, format="PNG", pnginfo=chunks)
