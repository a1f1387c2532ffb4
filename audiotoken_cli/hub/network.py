"""The network's failures in one line each, and the checks that fail fast: offline mode, a
server that cannot be reached, huggingface_hub's exceptions explained. Below both ``fetch`` (hub
downloads) and ``urls`` (plain https), which share them."""

from __future__ import annotations

import errno
import os

from audiotoken_cli.errors import AudioTokenError, ModelError
from audiotoken_cli.hub.specs import (
    ROLE_OPTIONS,
    FetchOptions,
    NetworkError,
    Spec,
    download_advice,
)


def is_offline(flag: bool = False) -> bool:
    return flag or os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


_REACHABLE: dict[str, bool] = {}


def check_reachable(url: str, spec: Spec, role: str) -> None:
    """Fail in seconds, with one clear line, when the server cannot be reached at all.

    huggingface_hub retries a dead connection with back-off for half a minute and logs each try;
    one TCP connect tells us sooner and says it better.
    """
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    if _REACHABLE.get(f"{host}:{port}"):
        return
    try:
        socket.create_connection((host, port), timeout=10).close()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise NetworkError(f"{spec.describe()} ({ROLE_OPTIONS[role]}): cannot reach {host} "
                           f"({reason}); {download_advice(role)}") from error
    _REACHABLE[f"{host}:{port}"] = True


def _is_transport_error(error: BaseException) -> bool:
    """httpx (under huggingface_hub) raises its own connection errors, not OSError."""
    return any(cls.__name__ in ("TransportError", "ConnectError", "TimeoutException",
                                "RemoteProtocolError", "ReadError")
               for cls in type(error).__mro__)


def _missing_offline(spec: Spec, role: str) -> ModelError:
    return ModelError(f"{spec.describe()}: the {role.replace('_', ' ')} is not in the cache and "
                      "downloads are off (--offline or HF_HUB_OFFLINE=1); "
                      f"{download_advice(role)}")


class _explained:
    """Turns huggingface_hub's and the network's exceptions into one-line, actionable errors."""

    def __init__(self, spec: Spec, role: str, options: FetchOptions):
        self.spec, self.role, self.options = spec, role, options

    def __enter__(self):
        return self

    def __exit__(self, kind, error, _traceback):
        if error is None or isinstance(error, (AudioTokenError, KeyboardInterrupt)):
            return False
        raise _explain(error, self.spec, self.role, is_offline(self.options.offline)) from error


def _explain(error: BaseException, spec: Spec, role: str, offline: bool) -> AudioTokenError:
    from huggingface_hub import errors as hub_errors

    what = f"{spec.describe()} ({ROLE_OPTIONS[role]})"
    if isinstance(error, hub_errors.GatedRepoError):
        return ModelError(f"{what}: this repository is gated or private; accept its terms on the "
                          "hub, then log in with `hf auth login` or set HF_TOKEN")
    if isinstance(error, hub_errors.RevisionNotFoundError):
        return ModelError(f"{what}: no revision {spec.revision!r} in this repository")
    if isinstance(error, hub_errors.RepositoryNotFoundError):
        return ModelError(f"{what}: no such repository (or it is private: set HF_TOKEN)")
    if isinstance(error, hub_errors.LocalEntryNotFoundError):
        if offline:
            return _missing_offline(spec, role)
        return NetworkError(f"{what}: not in the cache and the hub cannot be reached; "
                            f"{download_advice(role)}")
    if isinstance(error, hub_errors.EntryNotFoundError):
        return ModelError(f"{what}: no file {spec.path!r} in this repository")
    if isinstance(error, hub_errors.OfflineModeIsEnabled):
        return _missing_offline(spec, role)
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return AudioTokenError(f"{what}: the disk is full; free some space (the partial download "
                               "was removed) and run again")
    if _is_transport_error(error) or isinstance(error, (ConnectionError, TimeoutError, OSError)):
        return NetworkError(f"{what}: cannot reach the server ({type(error).__name__}); "
                            f"{download_advice(role)}")
    return ModelError(f"{what}: download failed ({type(error).__name__}: {error})")
