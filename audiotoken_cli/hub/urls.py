"""Plain https downloads (resumed across runs) and the rich progress bars every download draws."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

from audiotoken_cli.errors import ModelError
from audiotoken_cli.hub.network import (
    _explained,
    _missing_offline,
    check_reachable,
    is_offline,
)
from audiotoken_cli.hub.progress import _progress
from audiotoken_cli.hub.specs import FetchOptions, Spec

# ---------------------------------------------------------------------------------------------
# Plain URLs


def url_cache_path(url: str) -> Path:
    from platformdirs import user_cache_dir

    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    name = Path(url.split("?")[0].rstrip("/")).name or "download"
    return Path(user_cache_dir("audiotoken")) / "urls" / digest / name


def _fetch_url(spec: Spec, role: str, options: FetchOptions) -> Path:
    """Download to ``<cache>/urls/<hash>/<name>``, resuming a ``.partial`` file left by an
    interrupted run, and rename into place only when complete."""
    target = url_cache_path(spec.text)
    if target.is_file():
        return target
    if is_offline(options.offline):
        raise _missing_offline(spec, role)
    check_reachable(spec.text, spec, role)
    options.notice(f"downloading the {role.replace('_', ' ')}: {spec.text}")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    with _explained(spec, role, options):
        try:
            _http_download(spec.text, partial, options)
        except OSError as error:
            if error.errno == errno.ENOSPC:
                partial.unlink(missing_ok=True)
            raise
    os.replace(partial, target)
    return target


def _http_download(url: str, partial: Path, options: FetchOptions) -> None:
    import http.client
    import urllib.error
    import urllib.request

    have = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=30)
    except urllib.error.HTTPError as error:
        if error.code == 416 and have:  # the partial file is already whole
            return
        raise ModelError(f"{url}: the server answered {error.code} {error.reason}") from error
    except urllib.error.URLError as error:
        raise ConnectionError(str(error.reason)) from error
    with response:
        resumed = response.status == 206
        total = int(response.headers.get("Content-Length") or 0) + (have if resumed else 0)
        with open(partial, "ab" if resumed else "wb") as out, _progress(options) as bars:
            bar = bars(desc=Path(partial.name).stem, total=total or None,
                       initial=have if resumed else 0, unit="B")
            try:
                for chunk in iter(lambda: response.read(1 << 16), b""):
                    out.write(chunk)
                    bar.update(len(chunk))
            except http.client.IncompleteRead as error:
                out.write(error.partial)  # keep what arrived: the next run resumes after it
                raise ConnectionError("the connection closed mid-download") from error
            finally:
                bar.close()
    if total and partial.stat().st_size != total:
        raise ConnectionError(f"connection closed after {partial.stat().st_size} of {total} bytes")
