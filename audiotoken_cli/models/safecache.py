"""Safetensors copies of the paper's pickled weights, for fast and safe loading.

The BEATs ``.pt`` and the paper's embedder ``.bin`` are pickles: ``torch.load(weights_only=True)``
reads them safely but slowly (the whole file is unpickled and copied). After the first verified
load we keep a safetensors copy in the user cache, named by the source's sha256, and load that
from then on (memory-mapped, no unpickling). A copy is only ever written from a model that loaded
strictly, so it can be trusted as much as its source.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch

from audiotoken_cli.config import EmbedderConfig, EmbedderInfo
from audiotoken_cli.files import cached_sha256, write_atomically
from audiotoken_cli.models.beats import BEATs, load_beats, load_beats_state
from audiotoken_cli.models.embedder import LoadedEmbedder, build_embedder, load_embedder

copy_notice: Callable[[str], None] = lambda message: None
"""Told once per weight file, when its copy is made (the CLI prints it as a note)."""


def cache_folder() -> Path:
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("audiotoken")) / "safetensors"


def load_beats_fast(path: Path, device: torch.device | str = "cpu",
                    dtype: torch.dtype = torch.float32) -> BEATs:
    """Like ``beats.load_beats``, through a safetensors copy after the first load."""
    from safetensors.torch import load_file, save_file

    path = Path(path)
    if not path.is_file():
        return load_beats(path, device=device, dtype=dtype)  # raises the usual error
    copy = cache_folder() / f"beats-{cached_sha256(path)}.safetensors"
    if copy.is_file():
        with _safe_open_metadata(copy) as metadata:
            cfg = json.loads(metadata["cfg"])
        return load_beats_state(cfg, load_file(copy), source=str(path), device=device, dtype=dtype)
    model = load_beats(path, device="cpu", dtype=torch.float32)
    # Layers share one relative-position table; safetensors stores no shared tensors, so each
    # key gets its own copy (a few kB).
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    metadata = {"cfg": json.dumps(model.cfg.to_dict()), "source": path.name}
    _write_copy(copy, lambda tmp: save_file(state, str(tmp), metadata=metadata), path)
    return model.to(device=device, dtype=dtype)


def load_embedder_fast(path: Path, device: torch.device | str = "cpu") -> LoadedEmbedder:
    """Like ``embedder.load_embedder``; the paper's pickled format goes through a copy."""
    from safetensors.torch import load_file, save_file

    path = Path(path)
    if path.is_dir() or path.suffix == ".safetensors" or not path.is_file():
        return load_embedder(path, device=device)  # already safetensors (or an error)
    copy = cache_folder() / f"embedder-{cached_sha256(path)}.safetensors"
    if copy.is_file():
        with _safe_open_metadata(copy) as metadata:
            config = EmbedderConfig(**json.loads(metadata["sizes"]))
        model = build_embedder(path, config, load_file(copy))
        model.to(device).eval().requires_grad_(False)
        return LoadedEmbedder(model, EmbedderInfo(source=str(path)), path)
    loaded = load_embedder(path, device="cpu")
    state = {k: v.detach().contiguous() for k, v in loaded.model.state_dict().items()}
    metadata = {"sizes": json.dumps(loaded.model.config.to_dict()), "source": path.name}
    _write_copy(copy, lambda tmp: save_file(state, str(tmp), metadata=metadata), path)
    loaded.model.to(device)
    return loaded


class _safe_open_metadata:
    def __init__(self, path: Path):
        self.path = path

    def __enter__(self) -> dict[str, str]:
        from safetensors import safe_open

        with safe_open(str(self.path), "pt") as handle:
            return handle.metadata() or {}

    def __exit__(self, *exc):
        return False


def _write_copy(target: Path, write, source: Path) -> None:
    """A cache that cannot be written (read-only home, full disk) only costs speed."""
    try:
        write_atomically(target, write)
    except OSError:
        return
    size = target.stat().st_size / 1e6
    copy_notice(f"{source.name}: kept a safetensors copy in {target.parent} ({size:.1f} MB), "
                "which later runs load instead: faster, and no pickle")
