"""What a media file holds, without decoding it: ``probe(path) -> MediaInfo``.

Durations and streams come from the container's header; a file whose header gives no duration
(a live-recorded WebM, a streamed Matroska) is measured by walking its packets (demuxing only,
never decoding a sample). ``probe`` runs in the decoder worker, so a file that crashes or hangs
FFmpeg's demuxer costs an error, not the caller's process; ``read_info`` is the in-process part
the worker runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

AV_TIME_BASE = 1_000_000
"""FFmpeg's unit for ``container.duration``: microseconds."""

ATTACHED_PICTURE = 0x0400
"""FFmpeg's AV_DISPOSITION_ATTACHED_PIC: a video stream that is an album cover, not a video."""


@dataclass(frozen=True)
class MediaInfo:
    """A media file's streams and durations, in seconds.

    ``duration`` is the first audio track's length (the whole file's when it has no audio);
    ``video_duration`` the first picture stream's (0.0 without one). Cover art attached to an
    audio file is not a picture stream. ``sample_rate`` and ``channels`` describe the first
    audio track as stored (0 without one); decoding resamples it to 16 kHz mono.
    """

    path: Path
    duration: float
    has_audio: bool
    sample_rate: int
    channels: int
    has_video: bool
    video_duration: float
    width: int
    height: int


def probe(path: str | Path, *, timeout: float | None = None) -> MediaInfo:
    """``MediaInfo`` of ``path``, read in the decoder worker (a crash or a hang there is an
    ``InputError``). Raises ``InputError`` naming the file when it is missing, not a regular
    file, or not media FFmpeg can open. Cheap: one header read; with a pre-started worker
    (``audio.worker.prestart``) no process starts either."""
    from audiotoken_cli.audio.worker import DEFAULT_TIMEOUT_SECONDS, probe_each

    # list(): the stream must run to its end to hand a pre-started worker back for reuse.
    [(_source, result)] = list(probe_each([Path(path)],
                                          timeout=timeout or DEFAULT_TIMEOUT_SECONDS))
    if isinstance(result, Exception):
        raise result
    return result


def read_info(path: str | Path) -> MediaInfo:
    """``probe`` in this process: what the worker runs. Never decodes samples."""
    from audiotoken_cli.audio.decode import _check_readable_file, open_input

    path = Path(path)
    _check_readable_file(path)
    with open_input(path) as container:
        return info_of(container, path)


def info_of(container, path: Path) -> MediaInfo:
    """``MediaInfo`` of a container already open (``open_media``); may read it to the end."""
    audio = container.streams.audio[0] if container.streams.audio else None
    video = picture_stream(container)
    measured = _measured(container, [s for s in (audio, video) if s is not None])
    whole = container.duration / AV_TIME_BASE if container.duration is not None else None
    audio_seconds = _seconds(audio, whole, measured) if audio is not None else 0.0
    video_seconds = _seconds(video, whole, measured) if video is not None else 0.0
    return MediaInfo(
        path=Path(path),
        duration=audio_seconds if audio is not None else (whole or video_seconds),
        has_audio=audio is not None,
        sample_rate=int(audio.codec_context.sample_rate or 0) if audio is not None else 0,
        channels=int(audio.codec_context.channels or 0) if audio is not None else 0,
        has_video=video is not None,
        video_duration=video_seconds,
        width=int(video.codec_context.width or 0) if video is not None else 0,
        height=int(video.codec_context.height or 0) if video is not None else 0,
    )


def picture_stream(container):
    """The first real video stream; cover art (an attached picture) does not count."""
    for stream in container.streams.video:
        if not int(getattr(stream, "disposition", 0)) & ATTACHED_PICTURE:
            return stream
    return None


def _seconds(stream, whole: float | None, measured: dict) -> float:
    """The stream's header duration, else the container's, else its packets' span."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if whole is not None:
        return whole
    return measured.get(stream.index, 0.0)


def _measured(container, streams: list) -> dict[int, float]:
    """Seconds each stream's packets span, by demuxing the file (no decoding): only for a file
    whose header gives no duration at all, since it reads the whole file."""
    if container.duration is not None or not streams or all(
            s.duration is not None and s.time_base is not None for s in streams):
        return {}
    container.seek(0)  # the caller may have read some packets already
    first: dict[int, float] = {}
    last: dict[int, float] = {}
    for packet in container.demux(*streams):
        if packet.pts is None or packet.time_base is None:
            continue
        begin = float(packet.pts * packet.time_base)
        end = begin + float((packet.duration or 0) * packet.time_base)
        index = packet.stream.index
        first[index] = min(first.get(index, begin), begin)
        last[index] = max(last.get(index, end), end)
    return {index: max(0.0, last[index] - first[index]) for index in first}
