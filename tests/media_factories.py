"""Videos and images for the training-data tests, written with PyAV and PIL in milliseconds.

``write_clip`` extends ``factories.write_video``: the picture may change over time (so a test can
tell which moment a frame came from) and the audio is any array, or none.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
from PIL import Image

from factories import tone

Color = tuple[int, int, int]

RED: Color = (220, 30, 30)
BLUE: Color = (30, 30, 220)
RED_HZ = 300.0
BLUE_HZ = 2000.0


def ramp_level(time: float) -> float:
    """The grey level ``ramp_color`` shows at ``time`` seconds: 30 at 0 s, up 15 per second."""
    return 30.0 + 15.0 * time


def ramp_color(time: float) -> Color:
    level = round(ramp_level(time))
    return (level, level, level)


def write_clip(path: Path, seconds: float, color: Color | Callable[[float], Color] = RED,
               samples: np.ndarray | None = None, audio: bool = True, fps: int = 10,
               size: tuple[int, int] = (64, 48), rate: int = 16000) -> Path:
    """A video of ``seconds`` with frames of ``color`` (or ``color(t)`` at frame time t).

    The audio track holds ``samples`` (1, n), a 300 Hz tone of the same length by default, or
    nothing when ``audio`` is False.
    """
    path = Path(path)
    colour_at = color if callable(color) else (lambda _t: color)
    if samples is None and audio:
        samples = tone(seconds, rate=rate, freq=RED_HZ)
    width, height = size
    webm = path.suffix == ".webm"
    with av.open(str(path), "w") as container:
        video = container.add_stream("libvpx" if webm else "libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        if not webm:
            # Lossless, so pixel levels can be checked; keyframes 2.5 s apart with B-frames, so
            # finding a frame needs a seek and decoding forward, as in real files.
            video.options = {"qp": "0", "g": str(round(2.5 * fps)), "bf": "2"}
        sound = None
        if audio:
            sound = container.add_stream("libopus" if webm else "aac", rate=rate, layout="mono")
        for index in range(round(seconds * fps)):
            pixels = np.empty((height, width, 3), dtype=np.uint8)
            pixels[:] = colour_at(index / fps)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = index
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
        if sound is not None:
            _encode_mono(container, sound, np.atleast_2d(samples)[0], rate)
    return path


def _encode_mono(container, stream, samples: np.ndarray, rate: int) -> None:
    """Feed the encoder fixed-size frames (AAC and Opus need them), then flush it."""
    step = stream.codec_context.frame_size or 1024
    clipped = np.clip(samples, -1.0, 1.0).astype(np.float32)
    for begin in range(0, clipped.size, step):
        chunk = np.ascontiguousarray(clipped[None, begin:begin + step])
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
        frame.sample_rate, frame.pts = rate, begin
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)


def write_image(path: Path, size: tuple[int, int] = (64, 48), color: Color = BLUE,
                middle: Color | None = None) -> Path:
    """A solid image of ``size`` = (width, height); with ``middle``, the central half of its width
    is that colour instead (to check center-cropping)."""
    width, height = size
    pixels = np.empty((height, width, 3), dtype=np.uint8)
    pixels[:] = color
    if middle is not None:
        pixels[:, width // 4: width - width // 4] = middle
    Image.fromarray(pixels).save(path)
    return Path(path)


def write_live_webm(path: Path, seconds: float, rate: int = 48000) -> Path:
    """Opus audio in a WebM written as a live stream, the way a browser's MediaRecorder writes
    one: no duration in the header (neither the file's nor the track's), no cues."""
    path = Path(path)
    with av.open(str(path), "w", format="webm", options={"live": "1"}) as container:
        sound = container.add_stream("libopus", rate=rate, layout="mono")
        _encode_mono(container, sound, tone(seconds, rate=rate, freq=RED_HZ)[0], rate)
    return path
