"""Between two keyframes: spherical interpolation of prompt embeddings, and pixel cross-fades.

Prompt embeddings are slerped row by row (each of the 77 rows is one position's vector in CLIP's
output space). Rows the two keyframes share — every row before the placeholder, since CLIP's
attention is causal — are equal in both and stay exactly equal; a row whose two ends are nearly
parallel falls back to a linear blend, where slerp's division by sin θ would lose precision.
"""

from __future__ import annotations

import numpy as np
import torch

PARALLEL_DOT = 0.9995
"""Above this cosine the two vectors are treated as parallel and blended linearly."""


def slerp(a: torch.Tensor, b: torch.Tensor, weight: float) -> torch.Tensor:
    """Spherical interpolation of (..., d) vectors, row by row, computed in float32.

    ``weight`` 0 returns ``a`` and 1 returns ``b`` exactly. Norms are blended linearly, so rows
    of different lengths move smoothly between their lengths.
    """
    if weight == 0.0:
        return a.clone()
    if weight == 1.0:
        return b.clone()
    a32, b32 = a.float(), b.float()
    norm_a = a32.norm(dim=-1, keepdim=True)  # (..., 1)
    norm_b = b32.norm(dim=-1, keepdim=True)
    unit_a = a32 / norm_a.clamp_min(1e-12)
    unit_b = b32 / norm_b.clamp_min(1e-12)
    dot = (unit_a * unit_b).sum(dim=-1, keepdim=True).clamp(-1.0, 1.0)  # (..., 1)
    theta = torch.arccos(dot)
    sin_theta = torch.sin(theta).clamp_min(1e-12)
    spherical = (torch.sin((1 - weight) * theta) * unit_a + torch.sin(weight * theta) * unit_b) / sin_theta
    spherical = spherical * ((1 - weight) * norm_a + weight * norm_b)
    linear = (1 - weight) * a32 + weight * b32
    out = torch.where(dot.abs() > PARALLEL_DOT, linear, spherical)
    return out.to(a.dtype)


def crossfade(a: np.ndarray, b: np.ndarray, weight: float) -> np.ndarray:
    """Pixel blend of two (H, W, 3) uint8 images: (1 − weight)·a + weight·b, rounded."""
    if weight == 0.0:
        return a
    mixed = (1.0 - weight) * a.astype(np.float32) + weight * b.astype(np.float32)
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
