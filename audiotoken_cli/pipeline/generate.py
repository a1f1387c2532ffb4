"""``audiotoken generate``: images of each sound, written next to it.

    files (lazy) ─▶ naming plan ─▶ ImageRenderer (renderer.py: decode ahead, tokens, prompt
      embeddings, UNet batches) ─▶ PNG writer thread (encode, atomic rename) ─▶ one result per file

Image i of a file uses seed base+i and is named by pipeline/naming.py: ``<stem>_seed<seed>.png``,
or beside it with a settings tag when that name holds an image made with other settings; an image
already made with these settings is skipped rather than made again (unless --overwrite). The plan
is made as the files stream in, so a folder of
10,000 files starts rendering at once. Under torchrun each rank takes every world-th file.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

from audiotoken_cli.audio.worker import prestart as prestart_decoder
from audiotoken_cli.config import GenerateSettings
from audiotoken_cli.errors import InputError
from audiotoken_cli.files import (
    FileResult,
    check_output_name,
    claim_files,
    output_error,
)
from audiotoken_cli.pipeline.metadata import same_settings
from audiotoken_cli.pipeline.naming import (
    PlannedImage,
    image_path,
    pixel_settings,
    settings_tag,
)
from audiotoken_cli.pipeline.renderer import (
    ImageRenderer,
    RenderFailure,
    Request,
    Sound,
)
from audiotoken_cli.pipeline.writer import PngWriter
from audiotoken_cli.render.prompt import check_prompt


@dataclass
class GenerateEvents:
    """Hooks for a progress display; all optional, called from any thread.

    ``on_total(images, steps)`` adds to the totals as the plan grows (once per file with work).
    """

    on_total: Callable[[int, int], None] = lambda images, steps: None
    on_step: Callable[[], None] = lambda: None
    on_image: Callable[[Path], None] = lambda path: None
    on_phase: Callable[[str], None] = lambda phase: None  # "loading models", "decoding", ...


@dataclass
class _FileState:
    source: Path
    paths: dict[int, Path] = field(default_factory=dict)  # seed → planned image, still to do
    pending: int = 0
    existed: int = 0
    written: list[Path] = field(default_factory=list)
    blocked: list[Path] = field(default_factory=list)
    failure: str | None = None
    result: FileResult | None = None  # set once the file is finished


class _Ledger:
    """Files in input order until they finish; results leave from the head only, so they come out
    in input order whichever thread finished them."""

    def __init__(self):
        self._lock = threading.Lock()
        self._files: deque[_FileState] = deque()

    def add(self, state: _FileState) -> None:
        with self._lock:
            self._files.append(state)

    def image_done(self, state: _FileState, path: Path, *, blocked: bool = False,
                   error: str | None = None) -> None:
        with self._lock:
            if error is not None:
                state.failure = state.failure or error
            else:
                (state.blocked if blocked else state.written).append(path)
            state.pending -= 1
            if state.pending == 0:
                state.result = _file_result(state)

    def fail(self, state: _FileState, message: str) -> None:
        with self._lock:
            state.pending = 0
            state.failure = message
            state.result = _file_result(state)

    def ready(self) -> Iterator[FileResult]:
        while True:
            with self._lock:
                if not self._files or self._files[0].result is None:
                    return
                state = self._files.popleft()
            yield state.result


def generate_files(sources: Iterable[Path], settings: GenerateSettings,
                   events: GenerateEvents | None = None,
                   roots: Mapping[Path, Path] | None = None, *, rank: int = 0, world: int = 1,
                   model=None) -> Iterator[FileResult]:
    """Render ``settings.num_images`` images per source; yield one result per source (this
    rank's sources only: those whose input index is ``rank`` modulo ``world``), in input order.
    Models load only when some file needs an image. ``roots``: each source's input root,
    mirrored under ``settings.output_dir`` (filled as the sources stream in). ``model``: a
    loaded model (model.py) to use instead of loading the one the settings name."""
    events = events or GenerateEvents()
    check_prompt(settings.prompt)
    ledger = _Ledger()
    planned = _plan(sources, settings, ledger, events, {} if roots is None else roots, rank, world)
    first = None
    for item in planned:  # skipped files are reported before any model loads
        yield from ledger.ready()
        if item is not None:
            first = item
            break
    if first is None:
        yield from ledger.ready()
        return
    events.on_phase("loading models")
    prestart_decoder()  # the decoder process starts while the models load
    renderer = ImageRenderer.load(settings) if model is None else ImageRenderer(model, settings)
    events.on_phase("rendering")
    writer = PngWriter(limit=2 * renderer.batch_size)
    requests = chain([first], (item for item in planned if item is not None))
    stream = renderer.stream(requests, events.on_step)
    try:
        for result in stream:
            state: _FileState = result.request.key
            if isinstance(result, RenderFailure):
                ledger.fail(state, result.message)
            elif result.image is None:
                ledger.image_done(state, state.paths[result.seed], blocked=True)
                events.on_image(state.paths[result.seed])
            else:
                writer.submit(state.paths[result.seed], result.image, result.info,
                              _on_written(ledger, state, events))
            yield from ledger.ready()
    finally:
        stream.close()  # stops the decoding thread now, not when the generator is collected
        writer.close()  # queued images are finished (atomically) even on Ctrl-C
    yield from ledger.ready()


def _on_written(ledger: _Ledger, state: _FileState, events: GenerateEvents):
    def done(path: Path, error: BaseException | None) -> None:
        message = None if error is None else f"{state.source}: could not write {path} ({error})"
        ledger.image_done(state, path, error=message)
        events.on_image(path)
    return done


def _plan(sources: Iterable[Path], settings: GenerateSettings, ledger: _Ledger,
          events: GenerateEvents, roots: Mapping[Path, Path], rank: int, world: int
          ) -> Iterator[Request | None]:
    """A request per file with images to make; None for every other file (so the caller can
    report as it goes). The skeleton (claims, sharding, stale partials) is files.claim_files'."""
    dtype = _dtype_name(settings)

    def plan_of(source: Path) -> list[PlannedImage] | InputError:
        try:
            images = plan_images([source], settings, dtype, roots)[source]
            for image in images:
                check_output_name(source, image.path)
            return images
        except (InputError, OSError) as error:  # a name too long, a folder we may not look at
            return error if isinstance(error, InputError) else output_error(source, error)

    def outputs_of(plan: list[PlannedImage] | InputError) -> list[Path]:
        return [] if isinstance(plan, InputError) else [image.path for image in plan]

    for item in claim_files(sources, plan_of, outputs_of, rank, world):
        source, images = item.source, item.plan
        if not item.mine:
            yield None
            continue
        if isinstance(images, InputError):
            ledger.add(_FileState(source, result=FileResult(source, "failed",
                                                             message=str(images))))
            yield None
            continue
        if item.collision is not None:
            ledger.add(_FileState(source, result=FileResult(source, "failed",
                                                             message=str(item.collision))))
            yield None
            continue
        missing = [image for image in images if not image.exists]
        if not missing:
            ledger.add(_FileState(source, result=FileResult(
                source, "skipped", tuple(image.path for image in images),
                "made with these settings already; --overwrite makes them again")))
            yield None
            continue
        state = _FileState(source, {image.seed: image.path for image in missing}, len(missing),
                           existed=len(images) - len(missing))
        ledger.add(state)
        events.on_total(len(missing), len(missing) * settings.steps)
        yield Request(Sound(source.name, path=source), tuple(image.seed for image in missing),
                      key=state)


def plan_images(sources: Sequence[Path], settings: GenerateSettings, dtype: str,
                roots: Mapping[Path, Path] | None = None) -> dict[Path, list[PlannedImage]]:
    """Each source's images under the naming rule (naming.py), marked ``exists`` when already
    made with these settings (read back from the PNG's chunk: metadata.py)."""
    wanted = pixel_settings(settings, dtype)
    tag = settings_tag(wanted)
    plan = {}
    for source in sources:
        images = []
        for seed in range(settings.seed, settings.seed + settings.num_images):
            path = image_path(source, seed, settings.output_dir, (roots or {}).get(source))
            if settings.overwrite or not path.exists():
                images.append(PlannedImage(source, seed, path))
            elif same_settings(path, wanted):
                images.append(PlannedImage(source, seed, path, exists=True))
            else:
                tagged = path.with_name(f"{path.stem}_{tag}.png")
                images.append(PlannedImage(source, seed, tagged, exists=tagged.exists()))
        plan[source] = images
    return plan


def _file_result(state: _FileState) -> FileResult:
    if state.failure is not None:
        return FileResult(state.source, "failed", tuple(state.written), state.failure)
    notes = []
    if state.existed:
        notes.append(f"{state.existed} existed")
    if state.blocked:
        notes.append(f"{len(state.blocked)} blocked by the safety checker, not saved")
    return FileResult(state.source, "written", tuple(state.written), "; ".join(notes))


def _dtype_name(settings: GenerateSettings) -> str:
    """The dtype the run will use (``auto`` resolved), as the images' metadata records it."""
    from audiotoken_cli.model import resolve_device, resolve_dtype

    device = resolve_device(settings.runtime.device)
    return str(resolve_dtype(settings.runtime.dtype, device)).removeprefix("torch.")
