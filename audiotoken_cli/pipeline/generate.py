"""``audiotoken generate``: images of each sound, written next to it.

    audio ─▶ token (tokens.py) ─▶ prompt embeddings (prompt.py) ─▶ images (diffusion.py) ─▶ PNG

Image i of a file uses seed base+i and is named by pipeline/naming.py: ``<stem>_seed<seed>.png``,
or beside it with a settings tag when that name holds an image made with other settings; an image
already made with these settings is skipped rather than made again (unless --overwrite).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from audiotoken_cli.config import GenerateSettings
from audiotoken_cli.devices import resolve_device, resolve_dtype
from audiotoken_cli.files import (
    FileResult,
    find_collisions,
    write_atomically,
)
from audiotoken_cli.pipeline.metadata import RunMetadata, save_png
from audiotoken_cli.pipeline.naming import PlannedImage, plan_images
from audiotoken_cli.pipeline.tokens import AudioTokenizer, tokenize_files
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


@dataclass
class GenerateEvents:
    """Hooks for a progress display; all optional."""

    on_total: Callable[[int, int], None] = lambda images, steps: None
    on_step: Callable[[], None] = lambda: None
    on_image: Callable[[Path], None] = lambda path: None
    on_phase: Callable[[str], None] = lambda phase: None  # "loading models", "decoding", ...




@dataclass
class _FileProgress:
    pending: int
    written: list[Path] = field(default_factory=list)
    blocked: list[Path] = field(default_factory=list)
    existed: int = 0




def generate_files(sources: Sequence[Path], settings: GenerateSettings,
                   events: GenerateEvents | None = None,
                   roots: Mapping[Path, Path] | None = None) -> Iterator[FileResult]:
    """Render ``settings.num_images`` images per source; yield one result per source.

    ``roots``: each source's input root, mirrored under ``settings.output_dir``.
    """
    events = events or GenerateEvents()
    check_prompt(settings.prompt)
    device = resolve_device(settings.runtime.device)
    dtype = resolve_dtype(settings.runtime.dtype, device)
    plan = plan_images(sources, settings, str(dtype).removeprefix("torch."), roots)
    collisions = find_collisions({s: [image.path for image in images] for s, images in plan.items()})
    todo: dict[Path, list[PlannedImage]] = {}
    progress: dict[Path, _FileProgress] = {}
    for source in sources:
        if source in collisions:
            yield FileResult(source, "failed", message=str(collisions[source]))
            continue
        missing = [image for image in plan[source] if not image.exists]
        if not missing:
            yield FileResult(source, "skipped", tuple(i.path for i in plan[source]),
                             "made with these settings already; --overwrite makes them again")
            continue
        todo[source] = missing
        progress[source] = _FileProgress(len(missing), existed=len(plan[source]) - len(missing))
    if not todo:
        return

    events.on_phase("loading models")
    # Both model loads come before any audio work, so a bad model fails fast.
    tokenizer = AudioTokenizer.load(settings.audio_encoder, settings.embedder, device, dtype)
    pipe = load_pipeline(settings.sd, device, dtype, safety_checker=settings.safety_checker,
                         low_vram=settings.low_vram)
    if settings.lora is not None:
        from audiotoken_cli.models.lora import apply_paper_lora

        apply_paper_lora(pipe.unet, settings.lora)
    use_scheduler(pipe, settings.scheduler)
    check_size(settings.width, settings.height, pipe)
    encoder = PromptEncoder(pipe.tokenizer, pipe.text_encoder)
    encoder.check_token_width(tokenizer.token_dim, str(settings.embedder), str(settings.sd))
    with torch.inference_mode():
        negative = encoder.encode([settings.negative_prompt])[0]  # (77, d)

    events.on_phase("decoding")
    jobs: list[tuple[PlannedImage, ImageJob]] = []
    for source, token, failure in tokenize_files(tokenizer, list(todo), settings.window):
        if failure is not None:
            del progress[source]
            yield failure
            continue
        with torch.inference_mode():
            prompt_embeds = encoder.encode([settings.prompt], token[None])[0]  # (77, d)
        jobs += [(image, ImageJob(prompt_embeds, negative, image.seed)) for image in todo[source]]

    metadata = RunMetadata.collect(settings, tokenizer)
    render_settings = RenderSettings(settings.steps, settings.guidance, settings.width,
                                     settings.height, settings.scheduler)
    batch_size = settings.batch_size or auto_batch_size(device, settings.width, settings.height)
    batches = [jobs[i:i + batch_size] for i in range(0, len(jobs), batch_size)]
    events.on_phase("rendering")
    events.on_total(len(jobs), len(batches) * settings.steps)
    for batch in batches:
        images = render(pipe, [job for _, job in batch], render_settings, events.on_step)
        for (planned, _), image in zip(batch, images):
            state = progress[planned.source]
            if image is None:
                state.blocked.append(planned.path)
            else:
                info = metadata.for_image(planned)
                write_atomically(planned.path, lambda tmp, im=image, i=info: save_png(tmp, im, i))
                state.written.append(planned.path)
            events.on_image(planned.path)
            state.pending -= 1
            if state.pending == 0:
                yield _file_result(planned.source, state)


def _file_result(source: Path, state: _FileProgress) -> FileResult:
    notes = []
    if state.existed:
        notes.append(f"{state.existed} existed")
    if state.blocked:
        notes.append(f"{len(state.blocked)} blocked by the safety checker, not saved")
    return FileResult(source, "written", tuple(state.written), "; ".join(notes))
