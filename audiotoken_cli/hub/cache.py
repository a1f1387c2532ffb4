"""What is cached already (for ``download --list`` and offline runs); never touches the network."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from audiotoken_cli.errors import UsageError
from audiotoken_cli.hub.fetch import _folder_complete, cached_snapshot, hub_cache_dir
from audiotoken_cli.hub.specs import ROLES, Preset, load_presets, parse_spec
from audiotoken_cli.hub.urls import url_cache_path

# ---------------------------------------------------------------------------------------------
# What is cached (for `download --list`); never touches the network.


@dataclass(frozen=True)
class ComponentStatus:
    role: str
    spec: str
    cached: bool
    size: int | None  # bytes on disk, or the preset's known size, or None


def preset_status() -> list[tuple[Preset, list[ComponentStatus]]]:
    rows = []
    for preset in load_presets().values():
        components = []
        for role in ROLES:
            text = preset.component(role)
            if text:
                path = cached_path(text, role)
                size = disk_size(path) if path else preset.sizes.get(role)
                components.append(ComponentStatus(role, text, path is not None, size))
        rows.append((preset, components))
    return rows


def cached_path(text: str, role: str) -> Path | None:
    """The component's local path if it is already here, else None."""
    try:
        spec = parse_spec(text)
    except UsageError:
        return None
    if spec.kind == "local":
        return Path(spec.text) if Path(spec.text).exists() else None
    if spec.kind == "url":
        path = url_cache_path(spec.text)
        return path if path.is_file() else None
    from huggingface_hub import try_to_load_from_cache

    if spec.is_file:
        found = try_to_load_from_cache(spec.repo_id, spec.path, revision=spec.revision,
                                       repo_type=spec.repo_type, cache_dir=str(hub_cache_dir()))
        return Path(found) if isinstance(found, str) else None
    snapshot = cached_snapshot(spec)
    if snapshot is None:
        return None
    return snapshot / spec.path if _folder_complete(snapshot / spec.path, role) else None


def disk_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
