"""The models behind ``video``, loaded once: sound window → token → prompt embeddings → pixels.

Each step is the one ``generate`` takes (the same ``load_window``, ``AudioTokenizer``,
``PromptEncoder`` and batched ``render``), which is what makes a keyframe equal to ``generate``'s
image for its window and seed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from audiotoken_cli.audio.decode import load_window
from audiotoken_cli.config import GenerateSettings
from audiotoken_cli.devices import resolve_device, resolve_dtype
from audiotoken_cli.pipeline.keyframes import Keyframe
from audiotoken_cli.pipeline.metadata import RunMetadata
from audiotoken_cli.pipeline.tokens import AudioTokenizer, check_token
from audiotoken_cli.render.diffusion import (
    ImageJob,
    RenderSettings,
    auto_batch_size,
    check_size,
    load_pipeline,
    render,
    use_scheduler,
)
from audiotoken_cli.render.prompt import PromptEncoder, check_prompt


class FrameRenderer:
    """Everything loaded; ``with_images=False`` loads only BEATs and the embedder."""

    def __init__(self, settings: GenerateSettings, with_images: bool = True):
        check_prompt(settings.prompt)
        self.settings = settings
        self.device = resolve_device(settings.runtime.device)
        dtype = resolve_dtype(settings.runtime.dtype, self.device)
        # Both model loads come before any audio work, so a bad model fails fast.
        self.tokenizer = AudioTokenizer.load(settings.audio_encoder, settings.embedder,
                                             self.device, dtype)
        self.models = RunMetadata.collect(settings, self.tokenizer).models
        self.render_settings = RenderSettings(settings.steps, settings.guidance, settings.width,
                                              settings.height, settings.scheduler)
        self.batch_size = settings.batch_size or auto_batch_size(self.device, settings.width,
                                                                 settings.height)
        self.pipe = None
        if with_images:
            self._load_images(dtype)

    def _load_images(self, dtype: torch.dtype) -> None:
        settings = self.settings
        pipe = load_pipeline(settings.sd, self.device, dtype, safety_checker=settings.safety_checker,
                             low_vram=settings.low_vram)
        if settings.lora is not None:
            from audiotoken_cli.models.lora import apply_paper_lora

            apply_paper_lora(pipe.unet, settings.lora)
        use_scheduler(pipe, settings.scheduler)
        check_size(settings.width, settings.height, pipe)
        self.encoder = PromptEncoder(pipe.tokenizer, pipe.text_encoder)
        self.encoder.check_token_width(self.tokenizer.token_dim, str(settings.embedder),
                                       str(settings.sd))
        with torch.inference_mode():
            self.negative = self.encoder.encode([settings.negative_prompt])[0]  # (77, d)
        self.pipe = pipe

    @property
    def token_dim(self) -> int:
        return self.tokenizer.token_dim

    def token(self, source: Path, keyframe: Keyframe) -> torch.Tensor:
        """Keyframe's token, (d,) float32 on the CPU: ``embed --start --duration`` for its window."""
        waveform = load_window(source, keyframe.window)  # (S,)
        token = self.tokenizer(waveform[None])[0].cpu()
        return check_token(token, f"{source} (window at {keyframe.window.start:g} s)")

    def embeds(self, token: torch.Tensor) -> torch.Tensor:
        """(d,) token → (77, d) prompt embeddings with the token in place of <*>."""
        with torch.inference_mode():
            return self.encoder.encode([self.settings.prompt], token.to(self.device)[None])[0]

    def render(self, embeds: Sequence[torch.Tensor], seed: int,
               on_step: Callable[[], None] = lambda: None) -> tuple[list[np.ndarray], int]:
        """Images of prompt embeddings, all from ``seed``'s noise, ``batch_size`` per UNet call.

        Returns (H, W, 3) uint8 arrays and how many the safety checker blocked (those are black).
        """
        images, blocked = [], 0
        for begin in range(0, len(embeds), self.batch_size):
            jobs = [ImageJob(e, self.negative, seed) for e in embeds[begin:begin + self.batch_size]]
            for image in render(self.pipe, jobs, self.render_settings, on_step):
                if image is None:
                    blocked += 1
                    size = (self.settings.height, self.settings.width, 3)
                    images.append(np.zeros(size, dtype=np.uint8))
                else:
                    images.append(np.asarray(image.convert("RGB")))
        return images, blocked
