"""Device and dtype choice: CUDA, then MPS, then CPU; half precision only where it pays off."""

from __future__ import annotations

import torch

from audiotoken_cli.config import DEVICE_CHOICES, DTYPE_CHOICES
from audiotoken_cli.errors import UsageError


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then MPS, then CPU; an explicit name must be available."""
    if name not in DEVICE_CHOICES:
        raise UsageError(f"unknown device {name!r}; choose one of {', '.join(DEVICE_CHOICES)}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA GPU is available to this torch build")
    if name == "mps" and not _mps_available():
        raise UsageError("--device mps: Apple's MPS backend is not available on this machine")
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """``auto`` is float16 on CUDA and MPS (half the memory, tensor cores) and float32 on CPU,
    where half precision is slow and lossy."""
    if name not in DTYPE_CHOICES:
        raise UsageError(f"unknown dtype {name!r}; choose one of {', '.join(DTYPE_CHOICES)}")
    if name == "auto":
        return torch.float32 if device.type == "cpu" else torch.float16
    return getattr(torch, name)
