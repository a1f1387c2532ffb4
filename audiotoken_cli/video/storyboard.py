"""The storyboard: a contact sheet of a video's keyframes, each tile labelled with its time.

Tiles are pasted one at a time onto the sheet, and each keyframe is read only while it is pasted,
so memory grows with the sheet (a small thumbnail per keyframe), not with the renders.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

TILE_WIDTH = 256
"""Tiles are at most this wide; smaller renders keep their own size."""
SHEET_WIDTH = 4096
"""Long recordings get smaller tiles, so the sheet (and its memory) stays about this size
whatever the number of keyframes (a 2-hour recording at --hop 2 has 3,600)."""
MIN_TILE_WIDTH = 32
LABEL_HEIGHT = 14


def mmss(seconds: float) -> str:
    """A time as mm:ss (minutes run past 59 for long recordings: 75:02)."""
    whole = math.floor(seconds + 1e-6)
    return f"{whole // 60:02d}:{whole % 60:02d}"


def grid_shape(count: int) -> tuple[int, int]:
    """(columns, rows) of a nearly square grid for ``count`` tiles."""
    columns = max(1, math.ceil(math.sqrt(count)))
    return columns, math.ceil(count / columns)


def storyboard(times: Sequence[float], image: Callable[[int], np.ndarray]):
    """A PIL image: ``image(k)`` (H, W, 3 uint8) for each keyframe k, in a grid, with its time
    as mm:ss under it."""
    from PIL import Image, ImageDraw, ImageFont

    count = len(times)
    columns, rows = grid_shape(count)
    first = image(0)
    height, width = first.shape[:2]
    scale = min(1.0, max(MIN_TILE_WIDTH, min(TILE_WIDTH, SHEET_WIDTH // columns)) / width)
    tile_w, tile_h = max(1, round(width * scale)), max(1, round(height * scale))
    sheet = Image.new("RGB", (columns * tile_w, rows * (tile_h + LABEL_HEIGHT)), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for k in range(count):
        picture = Image.fromarray(first if k == 0 else image(k))
        if scale != 1.0:
            picture = picture.resize((tile_w, tile_h), Image.Resampling.LANCZOS)
        x, y = (k % columns) * tile_w, (k // columns) * (tile_h + LABEL_HEIGHT)
        sheet.paste(picture, (x, y))
        draw.text((x + 2, y + tile_h + 1), mmss(times[k]), fill="black", font=font)
    return sheet
