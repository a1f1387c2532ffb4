"""Pictures for training: a video frame at a time, an image file, resized to cover and centre-cropped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from audiotoken_cli.audio.media import picture_stream as _picture_stream
from audiotoken_cli.errors import InputError


def read_frame(path: Path, time: float):
    """The first video frame at or after ``time`` seconds (from the video's first frame), as an
    RGB PIL image; the last frame if the video ends first.

    Seeks to the keyframe before ``time`` and decodes forward, so the cost is one group of
    pictures whatever the file's length.
    """
    import av

    from audiotoken_cli.audio.decode import open_media

    try:
        with open_media(path) as container:
            stream = _picture_stream(container)
            if stream is None:
                raise InputError(f"{path}: has no video stream")
            frame = _frame_from(container, stream, time)
    except av.error.FFmpegError as error:
        raise InputError(f"{path}: cannot decode a video frame ({_reason(error)})") from error
    if frame is None:
        raise InputError(f"{path}: the video stream holds no frames")
    return frame.to_image()


def _frame_from(container, stream, time: float):
    """Seek and decode forward to the first frame at/after ``time``; None if none decodes."""
    origin = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    target = origin + max(time, 0.0)
    if stream.time_base is not None:
        container.seek(int(target / stream.time_base), stream=stream, backward=True,
                       any_frame=False)
    last = None
    for frame in container.decode(stream):
        last = frame
        # The slack keeps a frame stamped exactly at ``time`` despite float rounding; a stream
        # without timestamps gets the first frame after the seek.
        if frame.time is None or frame.time >= target - 1e-6:
            return frame
    return last


def _read_image(path: Path):
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as picture:
            # Phone photos store their rotation in EXIF; apply it so the frame is upright.
            return ImageOps.exif_transpose(picture).convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise InputError(f"{path}: cannot read the image ({_reason(error)})") from error


def fit_and_crop(picture, size: tuple[int, int]):
    """Resize (bicubic) so the picture covers ``size`` = (width, height), then crop the middle."""
    from PIL import Image

    width, height = size
    scale = max(width / picture.width, height / picture.height)
    scaled = (max(width, round(picture.width * scale)), max(height, round(picture.height * scale)))
    picture = picture.resize(scaled, resample=Image.Resampling.BICUBIC)
    left = (scaled[0] - width) // 2
    top = (scaled[1] - height) // 2
    return picture.crop((left, top, left + width, top + height))


def to_pixels(picture) -> torch.Tensor:
    """An RGB PIL image → (3, H, W) float32 in [-1, 1], the range Stable Diffusion's VAE takes."""
    array = np.asarray(picture.convert("RGB"), dtype=np.float32)  # (H, W, 3)
    return torch.from_numpy(array / 127.5 - 1.0).permute(2, 0, 1).contiguous()


def _reason(error: Exception) -> str:
    return getattr(error, "strerror", None) or str(error) or type(error).__name__
