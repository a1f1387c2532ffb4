"""What each PNG carries: an A1111 ``parameters`` text chunk and a JSON ``audiotoken`` chunk with
every setting and the hashes of the models and the audio, so any image can be made again."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from audiotoken_cli import __version__
from audiotoken_cli.config import GenerateSettings
from audiotoken_cli.files import cached_sha256, file_sha256
from audiotoken_cli.pipeline.naming import PlannedImage
from audiotoken_cli.render.diffusion import SAMPLER_NAMES

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
        models = {
            "sd": str(settings.sd),
            "sd_unet_sha256": _unet_hash(Path(settings.sd)),
            "audio_encoder": str(settings.audio_encoder),
            "audio_encoder_sha256": cached_sha256(Path(settings.audio_encoder)),
            "embedder": str(settings.embedder),
            "embedder_sha256": cached_sha256(tokenizer.embedder.weights_file),
            "lora": str(settings.lora) if settings.lora else None,
            "lora_sha256": cached_sha256(settings.lora) if settings.lora else None,
        }
        return cls(settings, models)

    def for_image(self, image: PlannedImage) -> dict:
        s = self.settings
        return {
            "tool": "audiotoken-cli",
            "version": __version__,
            "prompt": s.prompt,
            "negative_prompt": s.negative_prompt,
            "seed": image.seed,
            "steps": s.steps,
            "guidance": s.guidance,
            "scheduler": s.scheduler,
            "width": s.width,
            "height": s.height,
            "dtype": s.runtime.dtype,
            "window": asdict(s.window),
            "audio_file": image.source.name,
            "audio_sha256": self._audio_hash(image.source),
            **self.models,
        }

    def _audio_hash(self, source: Path) -> str:
        """Once per sound, not once per image of it."""
        if source not in self.audio_hashes:
            self.audio_hashes[source] = file_sha256(source)
        return self.audio_hashes[source]


def _unet_hash(sd: Path) -> str | None:
    """The UNet's weight file stands for the model, as a checkpoint hash does in A1111."""
    for name in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors",
                 "diffusion_pytorch_model.bin"):
        if (sd / "unet" / name).is_file():
            return cached_sha256(sd / "unet" / name)
    return None


def a1111_parameters(info: dict) -> str:
    """The ``parameters`` text chunk as A1111 writes it, so image browsers show the settings."""
    lines = [info["prompt"]]
    if info["negative_prompt"]:
        lines.append(f"Negative prompt: {info['negative_prompt']}")
    fields = {
        "Steps": info["steps"],
        "Sampler": SAMPLER_NAMES[info["scheduler"]],
        "CFG scale": info["guidance"],
        "Seed": info["seed"],
        "Size": f"{info['width']}x{info['height']}",
        "Model hash": (info["sd_unet_sha256"] or "")[:10],
        "Model": Path(info["sd"]).name or info["sd"],
        "Audio": info["audio_file"],
        "Version": f"audiotoken-cli {info['version']}",
    }
    lines.append(", ".join(f"{key}: {value}" for key, value in fields.items()))
    return "\n".join(lines)


def save_png(path: Path, image, info: dict) -> None:
    from PIL.PngImagePlugin import PngInfo

    chunks = PngInfo()
    chunks.add_text("parameters", a1111_parameters(info))
    chunks.add_text("audiotoken", json.dumps(info, sort_keys=True))
    image.save(path, format="PNG", pnginfo=chunks)
