"""Safetensors copies of the paper's pickled weights, for fast and safe loading.

The BEATs ``.pt`` and the paper's embedder ``.bin`` are pickles: ``torch.load(weights_only=True)``
reads them safely but slowly (the whole file is unpickled and copied). After the first verified
load we keep a safetensors copy in the user cache, named by the source's sha256, and load that
from then on (memory-mapped, no unpickling). A copy is only ever written from a model that loaded
strictly, so it can be trusted as much as its source.

A copy can still go bad on disk (a full disk, a crash, a user's tool). Beside each copy we keep
its own sha256 (``<copy>.sha256``); a copy that fails to load or whose digest differs is deleted
and rebuilt from its source, with a one-line warning. The digest check costs nothing in the common
case: ``cached_sha256`` rehashes only when the copy's stat (size, times, inode) changed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import torch

from audiotoken_cli.config import EmbedderConfig, EmbedderInfo
from audiotoken_cli.errors import AudioTokenError
from audiotoken_cli.files import write_atomically
from audiotoken_cli.hashing import cached_sha256
from audiotoken_cli.models.beats import BEATs, load_beats, load_beats_state
from audiotoken_cli.models.embedder import LoadedEmbedder, build_embedder, load_embedder

copy_notice: Callable[[str], None] = lambda message: None
"""Told once per weight file, when its copy is made (the CLI prints it as a note)."""

log = logging.getLogger("audiotoken")


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

    def from_copy() -> BEATs:
        with _safe_open_metadata(copy) as metadata:
            cfg = json.loads(metadata["cfg"])
        return load_beats_state(cfg, load_file(copy), source=str(path), device=device, dtype=dtype)

    cached = _load_copy(copy, path, from_copy)
    if cached is not None:
        return cached
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

    def from_copy() -> LoadedEmbedder:
        with _safe_open_metadata(copy) as metadata:
            config = EmbedderConfig(**json.loads(metadata["sizes"]))
        model = build_embedder(path, config, load_file(copy))
        model.to(device).eval().requires_grad_(False)
        return LoadedEmbedder(model, EmbedderInfo(source=str(path)), path)

    cached = _load_copy(copy, path, from_copy)
    if cached is not None:
        return cached
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


def _digest_file(copy: Path) -> Path:
    return copy.with_name(copy.name + ".sha256")


def _load_copy(copy: Path, source: Path, load):
    """``load()`` the cached copy when it is intact; None when there is none or it was corrupt
    (then it is deleted, with a warning, and the caller rebuilds it from ``source``)."""
    from safetensors import SafetensorError

    if not copy.is_file():
        return None
    try:
        recorded = _digest_file(copy).read_text().strip()
    except OSError:
        recorded = None  # a copy from before digests were kept: loading it is the check
    try:
        if recorded is not None and cached_sha256(copy) != recorded:
            raise ValueError("its sha256 differs from the one recorded when it was written")
        model = load()
    except (SafetensorError, OSError, ValueError, KeyError, TypeError, RuntimeError,
            AudioTokenError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        log.warning("warning: the cached copy %s of %s is corrupt (%s); rebuilding it from the "
                    "source", copy, source, reason)
        for path in (copy, _digest_file(copy)):
            path.unlink(missing_ok=True)
        return None
    if recorded is None:
        _record_digest(copy)
    return model


def _record_digest(copy: Path) -> None:
    try:
        digest = cached_sha256(copy)
        write_atomically(_digest_file(copy), lambda tmp: tmp.write_text(digest + "\n"))
    except OSError:
        pass


def _write_copy(target: Path, write, source: Path) -> None:
    """A cache that cannot be written (read-only home, full disk) only costs speed."""
    try:
        write_atomically(target, write)
    except OSError:
        return
    _record_digest(target)
    size = target.stat().st_size / 1e6
    copy_notice(f"{source.name}: kept a safetensors copy in {target.parent} ({size:.1f} MB), "
                "which later runs load instead: faster, and no pickle")
