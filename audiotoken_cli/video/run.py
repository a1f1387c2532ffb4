"""``audiotoken video``: a whole recording becomes a video that moves with the sound.

    audio ─▶ keyframe windows (keyframes.py) ─▶ tokens ─▶ keyframe images ─┐
                                                                          ├─▶ frames ─▶ MP4 (mp4.py)
             slerped prompt embeddings, same seed's noise (frames.py)     ┘

The per-file skeleton is ``generate``'s and ``embed``'s: files are taken in input order (rank r
of a torchrun takes every world-th one), outputs are claimed per file so two inputs can never
write the same output, files with nothing to do are reported before any model loads, the models
load once for the first file with work, and one result per file comes out as it finishes.
Outputs and their names: outputs.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import audiotoken_cli.video.keyframes as kf
from audiotoken_cli import __version__
from audiotoken_cli.config import GenerateSettings
from audiotoken_cli.errors import AudioTokenError, InputError, UsageError
from audiotoken_cli.files import (
    FileResult,
    check_output_name,
    claim_files,
    output_error,
    write_atomically,
)
from audiotoken_cli.hashing import file_sha256
from audiotoken_cli.video.outputs import (
    VideoOutputs,
    made_by_video,
    save_keyframes,
    write_tokens,
)
from audiotoken_cli.video.workfolder import WorkFolder


@dataclass(frozen=True)
class VideoSettings:
    """``generate``'s settings (models, prompt, seed, steps, size, ...) plus the video's own.

    hop: seconds between keyframes. window: seconds of audio behind each keyframe's token.
    video: write the MP4 (``--no-video`` with ``--storyboard`` makes only the storyboard).
    """

    generate: GenerateSettings
    hop: float = 2.0
    window: float = 10.0
    fps: int = 8
    video: bool = True
    save_keyframes: bool = False
    storyboard: bool = False
    keyframes_only: bool = False
    audio_reactive: bool = False


@dataclass
class VideoEvents:
    """Hooks for a progress display; all optional. Totals come once per file.

    ``on_step`` ticks once per UNet step (of a batch of keyframes or frames);
    ``on_storyboard(path)`` comes as soon as the storyboard is written, before any in-between
    frame renders (a preview while the video is still being made).
    """

    on_keyframes: Callable[[int], None] = lambda total: None
    on_keyframe: Callable[[], None] = lambda: None
    on_frames: Callable[[int], None] = lambda total: None
    on_frame: Callable[[], None] = lambda: None
    on_step: Callable[[], None] = lambda: None
    on_storyboard: Callable[[Path], None] = lambda path: None


@dataclass(frozen=True)
class VideoResult:
    """What ``make_video`` (``AudioToken.video``) wrote: each path, or None where that output
    was not asked for (``storyboard``, ``keyframes``: the folder of keyframe PNGs) or not made
    (``mp4`` with ``video=False``)."""

    mp4: Path | None = None
    sidecar: Path | None = None
    tokens: Path | None = None
    storyboard: Path | None = None
    keyframes: Path | None = None


def check_settings(settings: VideoSettings) -> None:
    if settings.hop <= 0 or settings.window <= 0 or settings.fps < 1:
        raise UsageError("--hop and --window must be positive and --fps at least 1")
    if not settings.video and not settings.storyboard:
        raise UsageError("--no-video makes nothing without --storyboard")


def video_files(sources: Iterable[Path], settings: VideoSettings,
                events: VideoEvents | None = None, roots: Mapping[Path, Path] | None = None, *,
                rank: int = 0, world: int = 1, model=None) -> Iterator[FileResult]:
    """Make each source's video (and storyboard); yield one result per source of this rank
    (input index ``rank`` modulo ``world``), in input order. ``roots``: each source's input
    root, mirrored under the output folder. ``model``: a loaded model (model.py) to use instead
    of loading the one the settings name."""
    events = events or VideoEvents()
    check_settings(settings)
    frames = None
    for source, outputs, skipped in _plan(sources, settings, roots or {}, rank, world):
        if skipped is not None:
            yield skipped
            continue
        if frames is None:
            frames = _frames(settings, model)
        yield _attempt(source, outputs, settings, frames, events)


def make_video(source: Path, settings: VideoSettings, model, events: VideoEvents | None = None):
    """One file's video on a loaded model, for the Python API: its outputs' paths (an
    ``VideoResult``), or the CLI's one-line error raised."""
    check_settings(settings)
    [(source, outputs, skipped)] = list(_plan([source], settings, {}, 0, 1))
    if skipped is not None and skipped.failed:
        raise InputError(skipped.message)
    if skipped is None:
        _video_one(source, outputs, settings, _frames(settings, model), events or VideoEvents())
    present = lambda path: path if path.exists() else None  # noqa: E731
    return VideoResult(mp4=present(outputs.mp4) if settings.video else None,
                       sidecar=present(outputs.sidecar), tokens=present(outputs.tokens),
                       storyboard=present(outputs.storyboard) if settings.storyboard else None,
                       keyframes=present(outputs.keyframes) if settings.save_keyframes else None)


def _frames(settings: VideoSettings, model):
    from audiotoken_cli.model import load_model
    from audiotoken_cli.video.frames import VideoFrames

    if model is None:
        model = load_model(settings.generate.load_settings)
    return VideoFrames.of(model, settings.generate)


def _plan(sources: Iterable[Path], settings: VideoSettings, roots: Mapping[Path, Path],
          rank: int, world: int) -> Iterator[tuple[Path, VideoOutputs, FileResult | None]]:
    """(source, outputs, None) for each of this rank's files with work to do, or with the result
    for one without; the skeleton (claims, sharding, stale partials) is files.claim_files'. The paths
    are listed first (paths only, no decoding): an output must never overwrite an input that
    comes later in the list."""
    sources = list(sources)
    inputs = {source.resolve(): source for source in sources}
    output_dir = settings.generate.output_dir

    def outputs_of(source: Path) -> VideoOutputs:
        return VideoOutputs.of(source, output_dir, roots.get(source))

    for item in claim_files(sources, outputs_of, lambda outputs: outputs.files(settings),
                            rank, world):
        source, outputs = item.source, item.plan
        if not item.mine:
            continue
        problem = _output_problem(source, outputs, settings)
        if problem is not None:
            yield source, outputs, FileResult(source, "failed", message=str(problem))
            continue
        clash = next((inputs[p.resolve()] for p in outputs.files(settings)
                      if p.resolve() in inputs), None)
        if made_by_video(source):
            yield source, outputs, FileResult(
                source, "skipped", (), "a video this command made (its sidecar is beside it); "
                "rename it to use it as an input")
        elif clash is not None:
            yield source, outputs, FileResult(
                source, "failed", message=f"{source}: its output would overwrite the input "
                f"{clash}; use -o DIR or rename one of them")
        elif item.collision is not None:
            yield source, outputs, FileResult(source, "failed", message=str(item.collision))
        elif outputs.primary(settings).exists() and not settings.generate.overwrite:
            yield source, outputs, FileResult(source, "skipped", (outputs.primary(settings),),
                                              "exists; --overwrite replaces it")
        else:
            yield source, outputs, None


def _output_problem(source: Path, outputs: VideoOutputs, settings: VideoSettings
                    ) -> InputError | None:
    """A name too long for the file system, or an output folder we may not look at: that
    file's one line, before any work is spent on it."""
    try:
        for path in [*outputs.files(settings), outputs.work, outputs.keyframes]:
            check_output_name(source, path)
        outputs.primary(settings).exists()
        source.with_suffix(".json").is_file()
    except InputError as error:
        return error
    except OSError as error:
        return output_error(source, error)
    return None


def _attempt(source: Path, outputs: VideoOutputs, settings: VideoSettings, frames,
             events: VideoEvents) -> FileResult:
    """One file's video, or its failure as a result (the batch goes on)."""
    import av

    try:
        return _video_one(source, outputs, settings, frames, events)
    except AudioTokenError as error:
        return FileResult(source, "failed", message=str(error))
    except av.error.FFmpegError as error:  # e.g. audio that decodes for tokens but not muxing
        return FileResult(source, "failed", message=f"{source}: could not write the video "
                          f"({error.strerror or error})")


def _video_one(source: Path, outputs: VideoOutputs, settings: VideoSettings, frames,
               events: VideoEvents) -> FileResult:
    from audiotoken_cli.video.frames import keyframe_images, keyframe_tokens

    gen = settings.generate
    duration = kf.media_duration(source)
    if duration <= 0:
        raise InputError(f"{source}: the audio track holds no samples")
    keys = kf.schedule(duration, settings.hop, settings.window, gen.seed)
    audio_sha = file_sha256(source)
    record = _sidecar_settings(source, audio_sha, duration, settings, frames)
    work = WorkFolder(outputs.work, record)

    events.on_keyframes(len(keys))
    tokens = keyframe_tokens(source, keys, work, frames)  # (K, d)
    blocked = keyframe_images(keys, tokens, work, frames, events)

    written = [outputs.sidecar, outputs.tokens]
    write_tokens(outputs.tokens, tokens, record)
    sidecar = {"keyframes": [key.to_dict() for key in keys], "settings": record}
    write_atomically(outputs.sidecar, lambda tmp: tmp.write_text(json.dumps(sidecar, indent=1)))
    if settings.save_keyframes:
        written += save_keyframes(source, audio_sha, keys, work, outputs, frames)
    if settings.storyboard:
        from audiotoken_cli.video.storyboard import storyboard

        sheet = storyboard([key.time for key in keys], work.image)
        write_atomically(outputs.storyboard, lambda tmp: sheet.save(tmp, format="PNG"))
        written.append(outputs.storyboard)
        events.on_storyboard(outputs.storyboard)
    if settings.video:
        weights = None
        if settings.audio_reactive:
            from audiotoken_cli.audio.onsets import reactive_weights

            weights = reactive_weights(source, duration, [k.time for k in keys], settings.fps)
        plans = kf.frame_plan(record["frames"], settings.fps, keys, weights)
        events.on_frames(len(plans))
        write_atomically(outputs.mp4, lambda tmp: _write_video(
            tmp, source, plans, tokens, work, settings, frames, events))
        written.append(outputs.mp4)
    work.remove()
    note = f"{len(keys)} keyframes" + (f"; {blocked} blocked by the safety checker (black)"
                                       if blocked else "")
    return FileResult(source, "written", tuple(written), note)


def _sidecar_settings(source: Path, audio_sha: str, duration: float, settings: VideoSettings,
                      frames) -> dict:
    """Every setting that decides the pixels, so any frame can be made again (and the work
    folder's key)."""
    gen = settings.generate
    # The models' part first: the run metadata it comes from also carries a `window` (the
    # generate-style dict), which the video's own window length must override.
    return {
        **frames.models,
        "tool": "audiotoken-cli", "version": __version__,
        "audio_file": source.name, "audio_sha256": audio_sha, "audio_duration": duration,
        "hop": settings.hop, "window": settings.window, "fps": settings.fps,
        "frames": kf.frame_count(duration, settings.fps),
        "window_rule": "start = clamp(time - window/2, 0, duration - window)",
        "keyframes_only": settings.keyframes_only, "audio_reactive": settings.audio_reactive,
        "prompt": gen.prompt, "negative_prompt": gen.negative_prompt, "seed": gen.seed,
        "steps": gen.steps, "guidance": gen.guidance, "scheduler": gen.scheduler,
        "width": gen.width, "height": gen.height,
        "dtype": frames.models.get("dtype", gen.runtime.dtype),
        "device": frames.device.type, "token_dim": frames.token_dim,
        "safety_checker": gen.safety_checker,
    }


def _write_video(target: Path, source: Path, plans: list[kf.FramePlan], tokens, work: WorkFolder,
                 settings: VideoSettings, frames, events: VideoEvents) -> None:
    from audiotoken_cli.video.frames import chunk_frames
    from audiotoken_cli.video.mp4 import Mp4Writer

    gen = settings.generate
    with Mp4Writer(target, source, settings.fps, gen.width, gen.height) as writer:
        for chunk in kf.chunks(plans):
            for frame in chunk_frames(chunk, tokens, work, settings, frames, events):
                writer.write(frame)
                events.on_frame()
