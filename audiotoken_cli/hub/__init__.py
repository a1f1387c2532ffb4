"""Presets, component specs, downloads and the cache: the only package that touches the network.

A component option (``--sd``, ``--audio-encoder``, ``--embedder``, ``--lora``) takes a local path,
an ``https://`` URL or a hub id (``owner/name[@revision][/path]``, ``spaces/`` for a Space).

- ``specs``: what the user typed, parsed; presets (built in and user TOML).
- ``fetch``: a spec to a local path; hub downloads, sha256 verification, one-line errors.
- ``urls``: plain https downloads, resumed across runs.
- ``network``: offline mode, reachability and the network's errors, in one line each.
- ``progress``: the rich download bars.
- ``cache``: what is already here, without the network (``download --list``, offline runs).
"""

from audiotoken_cli.hub.cache import (
                                      ComponentStatus,
                                      cached_path,
                                      disk_size,
                                      preset_status,
)
from audiotoken_cli.hub.fetch import (
                                      choose_files,
                                      hub_cache_dir,
                                      resolve,
                                      resolve_components,
                                      verify_sha256,
)
from audiotoken_cli.hub.network import check_reachable, is_offline
from audiotoken_cli.hub.specs import (
                                      BUILTIN_PRESETS,
                                      DEFAULT_PRESET,
                                      PAPER_SPACE,
                                      ROLE_OPTIONS,
                                      ROLES,
                                      ChecksumError,
                                      FetchOptions,
                                      NetworkError,
                                      Preset,
                                      Spec,
                                      get_preset,
                                      load_presets,
                                      parse_spec,
                                      user_presets_file,
)
from audiotoken_cli.hub.urls import url_cache_path

__all__ = [
    "BUILTIN_PRESETS", "DEFAULT_PRESET", "PAPER_SPACE", "ROLES", "ROLE_OPTIONS", "ChecksumError",
    "ComponentStatus", "FetchOptions", "NetworkError", "Preset", "Spec", "cached_path",
    "check_reachable", "choose_files", "disk_size", "get_preset", "hub_cache_dir", "is_offline",
    "load_presets", "parse_spec", "preset_status", "resolve", "resolve_components",
    "url_cache_path", "user_presets_file", "verify_sha256",
]
