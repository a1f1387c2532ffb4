"""A local stand-in for the Hugging Face Hub, for tests.

`FakeHub` runs real HTTP servers (stdlib `ThreadingHTTPServer`, bound to 127.0.0.1 on ephemeral ports, each in a
background thread) that answer the requests huggingface_hub 2.4.0 makes for downloads, closely enough for its real
code paths (`hf_hub_download`, `snapshot_download`, `HfApi.model_info/space_info/list_repo_files/list_repo_tree/
get_paths_info/file_exists/repo_exists`) to work unchanged.

Usage (the client must be pointed at `hub.url` *before* huggingface_hub is imported, e.g. ``HF_ENDPOINT=hub.url`` in
a subprocess' environment; or in-process with `repoint_huggingface_hub`, see its docstring)::

    with FakeHub() as hub:
        hub.add_file("owner/model", "config.json", b"{}")
        hub.add_file("owner/model", "weights.bin", data, lfs=True)   # served through a 302 to a "CDN"
        hub.add_file("owner/demo", "emb.bin", data, repo_type="space")
        hub.gate("owner/gated")                                       # needs "Authorization: Bearer hf_test_token"
        hub.plain_file("/files/emb.bin", data)                        # non-Hub static file
        hub.break_once("weights.bin", after_bytes=1000)               # next GET of it drops the connection
        ... run code with HF_ENDPOINT=hub.url ...
        assert ("GET", "/owner/model/resolve/main/config.json") in hub.requests

What is served (``{t}`` = ``models`` | ``datasets`` | ``spaces``; ``{p}`` = ``""`` | ``datasets/`` | ``spaces/``):

* ``HEAD|GET /{p}{repo_id}/resolve/{revision}/{path}`` - the file. Headers: ``X-Repo-Commit``, ``ETag: "<sha256>"``
  (huggingface_hub names the cache blob after the etag, so ``blobs/<sha256 of content>``), ``Content-Length``,
  ``Accept-Ranges``; ``Range`` -> 206 + ``Content-Range`` (416 when unsatisfiable). For files added with ``lfs=True``
  the answer is a 302 to ``{cdn_url}/lfs/<sha256>?...`` carrying ``X-Linked-Etag``/``X-Linked-Size``, like LFS files on
  the real Hub; the CDN is a second server on another port (another origin), so huggingface_hub does not follow the
  HEAD redirect and drops the Authorization header when downloading from it, as it does in production.
* ``GET /api/{t}/{repo_id}`` and ``/api/{t}/{repo_id}/revision/{revision}`` - repo info JSON (``id``, ``sha``,
  ``siblings``; with ``?blobs=true`` the siblings carry ``size``, ``blobId`` and ``lfs``).
* ``GET /api/{t}/{repo_id}/tree/{revision}[/{path}]?recursive=..&expand=..`` - tree listing (one page, no pagination).
* ``POST /api/{t}/{repo_id}/paths-info/{revision}`` (form ``paths=..&expand=..``) - info on the listed paths.
* ``GET /api/agent-harnesses`` - an empty registry (fetched by huggingface_hub when telemetry is not disabled).
* Errors, as the Hub sends them (header ``X-Error-Code``, JSON body ``{"error": ...}``): unknown repo -> 401
  ``RepoNotFound``; gated repo without/with a wrong token -> 401/403 ``GatedRepo`` (repo info and listings stay public,
  like on the Hub; only file contents are gated); unknown revision -> 404 ``RevisionNotFound``; unknown file -> 404
  ``EntryNotFound`` (with ``X-Repo-Commit``). Unknown routes -> plain 404. A crash in the fake itself -> 501 (never 5xx
  codes that huggingface_hub retries with back-off) and the traceback lands in ``hub.errors``.
* No Xet header (``X-Xet-*``, ``Link: rel=xet-auth``) and no ``xetHash`` is ever sent, so plain HTTP downloads are used.

Commit SHAs are deterministic: sha1 of repo type, id, revision name and the (path, sha256, lfs) list of that revision's
files. Adding or changing a file therefore yields a new commit (as on the Hub), so cached snapshots are never stale;
`commit_sha()` returns the current one. A 40-hex revision in a URL resolves to the revision whose current SHA it is.
Revisions are independent file sets (a file added to "main" is not in "v1").
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import socket
import threading
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

__all__ = ["VALID_TOKEN", "FakeHub", "Request", "Stall", "repoint_huggingface_hub"]

VALID_TOKEN = "hf_test_token"

_PLURALS = {"model": "models", "dataset": "datasets", "space": "spaces"}
_TYPE_OF_PLURAL = {v: k for k, v in _PLURALS.items()}
_URL_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_API_ACTIONS = {"revision", "tree", "paths-info"}
_COMMIT_RE = re.compile(r"[0-9a-f]{40}")
_RANGE_RE = re.compile(r"bytes=(\d*)-(\d*)")
_FAKE_DATE = "2024-01-01T00:00:00.000Z"
_CHUNK = 64 * 1024
_STALL_LIMIT_S = 30.0  # a stalled response never waits longer than this


@dataclass(frozen=True)
class _File:
    data: bytes
    lfs: bool
    sha256: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha256", hashlib.sha256(self.data).hexdigest())

    @property
    def pointer(self) -> bytes:
        """The git-lfs pointer text git would store for this file."""
        return f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\nsize {len(self.data)}\n".encode()

    @property
    def git_oid(self) -> str:
        """Git blob id: of the content for a regular file, of the pointer for an LFS file."""
        content = self.pointer if self.lfs else self.data
        return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class _Repo:
    gated: bool = False
    revisions: dict[str, dict[str, _File]] = field(default_factory=dict)


@dataclass(frozen=True)
class Request:
    """One request as the fake saw it."""

    server: str  # "hub" or "cdn"
    method: str
    path: str  # percent-decoded, without the query string
    query: str  # raw query string
    headers: dict[str, str]  # lower-cased names


class Stall:
    """Handle returned by `FakeHub.stall_once`: `reached` is set once the bytes were sent; `release()` ends it."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self._release = threading.Event()

    def release(self) -> None:
        self._release.set()


@dataclass
class _Fault:
    target: str
    after_bytes: int
    times: int
    stall: Stall | None = None


class FakeHub:
    """A fake Hugging Face Hub on 127.0.0.1. See the module docstring for what it serves."""

    VALID_TOKEN = VALID_TOKEN

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._repos: dict[tuple[str, str], _Repo] = {}
        self._plain: dict[str, bytes] = {}
        self._lfs_blobs: dict[str, _File] = {}  # sha256 -> file, served by the CDN
        self._lfs_names: dict[str, set[str]] = {}  # sha256 -> repo paths having that content
        self._faults: list[_Fault] = []
        self._stalls: list[Stall] = []
        self._servers: list[_Server] = []
        self._threads: list[threading.Thread] = []
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, hub and CDN, in order
        self.log: list[Request] = []  # same requests with query and headers
        self.errors: list[str] = []  # tracebacks of crashes inside the fake (should stay empty)

    # ----------------------------------------------------------------- content
    def add_file(
        self,
        repo_id: str,
        path: str,
        data: bytes,
        repo_type: str = "model",
        revision: str = "main",
        *,
        lfs: bool = False,
    ) -> None:
        """Add (or replace) ``path`` in ``repo_id`` at ``revision``, creating the repo and revision if needed.

        ``lfs=True`` serves it like an LFS file (302 to the CDN server, ``X-Linked-Etag``/``X-Linked-Size``).
        """
        _check_repo_type(repo_type)
        path = path.strip("/")
        if not path or not isinstance(data, bytes):
            raise ValueError("path must be non-empty and data must be bytes")
        entry = _File(data=data, lfs=lfs)
        with self._lock:
            repo = self._repos.setdefault((repo_type, repo_id), _Repo())
            repo.revisions.setdefault(revision, {})[path] = entry
            if lfs:
                self._lfs_blobs[entry.sha256] = entry
                self._lfs_names.setdefault(entry.sha256, set()).add(path)

    def add_folder(
        self, repo_id: str, folder: Path, repo_type: str = "model", revision: str = "main", *, lfs: bool = False
    ) -> None:
        """Add every file under ``folder``, with its path relative to ``folder`` as the path in the repo."""
        folder = Path(folder)
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                name = file.relative_to(folder).as_posix()
                self.add_file(repo_id, name, file.read_bytes(), repo_type, revision, lfs=lfs)

    def gate(self, repo_id: str, repo_type: str = "model") -> None:
        """Make file downloads of the repo require ``Authorization: Bearer hf_test_token`` (repo info stays public)."""
        _check_repo_type(repo_type)
        with self._lock:
            self._repos.setdefault((repo_type, repo_id), _Repo()).gated = True

    def plain_file(self, url_path: str, data: bytes) -> None:
        """Serve ``data`` at ``url_path`` (e.g. "/files/emb.bin") as a plain static file: ETag (quoted sha256),
        Content-Length, Range (206/416), If-None-Match (304). No Hub headers."""
        if not url_path.startswith("/"):
            raise ValueError("url_path must start with '/'")
        with self._lock:
            self._plain[url_path] = data

    def commit_sha(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> str:
        """The commit SHA the fake currently reports for ``revision`` (it changes when the revision's files change)."""
        with self._lock:
            files = self._repos[(repo_type, repo_id)].revisions[revision]
            return _commit_sha(repo_type, repo_id, revision, files)

    # ------------------------------------------------------------ faults
    def break_once(self, target: str, after_bytes: int, *, times: int = 1) -> None:
        """Make the next ``times`` GETs serving ``target`` send ``after_bytes`` bytes of the body and then close the
        connection (the client sees a body shorter than Content-Length).

        ``target`` is either a URL path starting with "/" (matched exactly against the percent-decoded request path,
        on the hub or CDN server), or a path inside a repo (e.g. "weights.bin"), which matches any GET serving that
        repo file: its /resolve/ URL or, for LFS files, its CDN URL.

        huggingface_hub 2.4 retries such a failure inside the same call (after sleeping 1 s) with
        ``Range: bytes=<n>-``, where n counts only whole 10 MiB chunks it had received (httpx's chunker hands out
        10 MiB at a time): a break in the first 10 MiB is retried from byte 0 without a Range header. Nothing is
        resumed across calls (see `stall_once`)."""
        with self._lock:
            self._faults.append(_Fault(target, after_bytes, times))

    def stall_once(self, target: str, after_bytes: int) -> Stall:
        """Like `break_once`, but after sending ``after_bytes`` the response hangs until ``Stall.release()`` (or
        `stop()`, or 30 s) and then drops the connection. Use it to kill a client in the middle of a download.

        (huggingface_hub 2.4 writes to ``blobs/<etag>.<random>.incomplete``; a killed process leaves that file behind
        and the next call ignores it and downloads from byte 0.)"""
        stall = Stall()
        with self._lock:
            self._faults.append(_Fault(target, after_bytes, 1, stall))
            self._stalls.append(stall)
        return stall

    # ------------------------------------------------------------- log
    def clear_log(self) -> None:
        with self._lock:
            self.requests.clear()
            self.log.clear()

    # ------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        """Base URL of the Hub server, "http://127.0.0.1:PORT" (use as HF_ENDPOINT)."""
        return self._server_url(0)

    @property
    def cdn_url(self) -> str:
        """Base URL of the second server that LFS files are redirected to."""
        return self._server_url(1)

    def _server_url(self, index: int) -> str:
        if not self._servers:
            raise RuntimeError("FakeHub is not started")
        host, port = self._servers[index].server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeHub:
        if self._servers:
            raise RuntimeError("FakeHub already started")
        for role in ("hub", "cdn"):
            server = _Server(self, role)
            thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"fakehub-{role}", daemon=True
            )
            thread.start()
            self._servers.append(server)
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop both servers, drop open connections and release stalled responses. Safe to call twice."""
        with self._lock:
            for stall in self._stalls:
                stall.release()
        for server in self._servers:
            server.shutdown()
            server.close_connections()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers.clear()
        self._threads.clear()

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ----------------------------------------------------- used by the handler
    def _record(self, request: Request) -> None:
        with self._lock:
            self.requests.append((request.method, request.path))
            self.log.append(request)

    def _take_fault(self, keys: set[str]) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.target in keys:
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _lookup(self, repo_type: str, repo_id: str, revision: str) -> tuple[_Repo | None, dict[str, _File] | None, str]:
        """(repo, files at revision, commit sha) - repo/files None when unknown."""
        with self._lock:
            repo = self._repos.get((repo_type, repo_id))
            if repo is None:
                return None, None, ""
            files = repo.revisions.get(revision)
            if files is not None:
                return repo, dict(files), _commit_sha(repo_type, repo_id, revision, files)
            if _COMMIT_RE.fullmatch(revision):
                for name, candidate in repo.revisions.items():
                    if _commit_sha(repo_type, repo_id, name, candidate) == revision:
                        return repo, dict(candidate), revision
            return repo, None, ""


def _check_repo_type(repo_type: str) -> None:
    if repo_type not in _PLURALS:
        raise ValueError(f"repo_type must be one of {sorted(_PLURALS)}, got {repo_type!r}")


def _commit_sha(repo_type: str, repo_id: str, revision: str, files: dict[str, _File]) -> str:
    digest = hashlib.sha1(f"{repo_type}\0{repo_id}\0{revision}\0".encode())
    for path in sorted(files):
        digest.update(f"{path}\0{files[path].sha256}\0{int(files[path].lfs)}\n".encode())
    return digest.hexdigest()


def _is_true(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes"}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, hub: FakeHub, role: str) -> None:
        self.hub = hub
        self.role = role
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def process_request(self, request, client_address):  # type: ignore[no-untyped-def]
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):  # type: ignore[no-untyped-def]
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Unblock handler threads waiting on idle keep-alive connections."""
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as huggingface_hub's pooled client expects
    server_version = "FakeHub/1.0"
    timeout = 30  # idle keep-alive connections are closed after this (httpx drops its own after 5 s)
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - silence stderr logging
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    # --------------------------------------------------------------- plumbing
    def _dispatch(self, method: str) -> None:
        split = urlsplit(self.path)
        self.raw_path = split.path
        self.decoded_path = unquote(split.path)
        self.query = parse_qs(split.query)
        body = b""
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            body = self.rfile.read(length)
        hub = self.server.hub
        hub._record(
            Request(
                server=self.server.role,
                method=method,
                path=self.decoded_path,
                query=split.query,
                headers={k.lower(): v for k, v in self.headers.items()},
            )
        )
        self.head_only = method == "HEAD"
        try:
            if self.server.role == "cdn":
                self._route_cdn(method)
            else:
                self._route_hub(method, body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception:
            hub.errors.append(traceback.format_exc())
            with contextlib.suppress(Exception):
                self._send(501, b"fake hub crashed, see FakeHub.errors\n", {"Content-Type": "text/plain"})
            self.close_connection = True

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not self.head_only and body:
            self.wfile.write(body)

    def _json(self, payload: object, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), {"Content-Type": "application/json", **(headers or {})})

    def _hub_error(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        self._json(
            {"error": message}, status, {"X-Error-Code": code, "X-Error-Message": message, **(headers or {})}
        )

    def _not_found(self) -> None:
        self._send(404, b"Not Found\n", {"Content-Type": "text/plain"})

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization") or ""
        return auth[len("Bearer ") :].strip() if auth.startswith("Bearer ") else None

    def _serve_bytes(self, data: bytes, etag: str, fault_keys: set[str], headers: dict[str, str]) -> None:
        """Serve ``data`` with Range / If-None-Match support and the configured faults."""
        size = len(data)
        headers = {"ETag": etag, "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream", **headers}
        if etag in (self.headers.get("If-None-Match") or ""):
            self._send(304, b"", headers)
            return
        status, start, end = 200, 0, size  # end exclusive
        range_header = self.headers.get("Range")
        if range_header:
            match = _RANGE_RE.fullmatch(range_header.strip())
            if match and (match[1] or match[2]):
                if match[1]:
                    start = int(match[1])
                    end = min(int(match[2]) + 1, size) if match[2] else size
                else:
                    start = max(size - int(match[2]), 0) if int(match[2]) > 0 else size
                if start >= size or start >= end:
                    self._send(416, b"", {**headers, "Content-Range": f"bytes */{size}"})
                    return
                status = 206
                headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
            # anything else (multiple ranges, bad syntax) is ignored: full 200 answer, as RFC 9110 allows
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(end - start))
        self.end_headers()
        if self.head_only:
            return
        body = memoryview(data)[start:end]
        fault = self.server.hub._take_fault(fault_keys)
        if fault is not None:
            body = body[: fault.after_bytes]
        for offset in range(0, len(body), _CHUNK):
            self.wfile.write(body[offset : offset + _CHUNK])
        if fault is not None:
            self.wfile.flush()
            if fault.stall is not None:
                fault.stall.reached.set()
                fault.stall._release.wait(_STALL_LIMIT_S)
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

    # ------------------------------------------------------------------ routes
    def _route_cdn(self, method: str) -> None:
        parts = self.decoded_path.split("/")
        entry = None
        if method in ("GET", "HEAD") and len(parts) == 3 and parts[1] == "lfs":
            with self.server.hub._lock:
                entry = self.server.hub._lfs_blobs.get(parts[2])
                names = set(self.server.hub._lfs_names.get(parts[2], ()))
        if entry is None:
            self._not_found()
            return
        name = (self.query.get("filename") or [entry.sha256])[0]
        self._serve_bytes(
            entry.data,
            f'"{entry.sha256}"',
            {self.decoded_path, *names},
            {"Content-Disposition": f'inline; filename="{name}";'},
        )

    def _route_hub(self, method: str, body: bytes) -> None:
        hub = self.server.hub
        with hub._lock:
            plain = hub._plain.get(self.decoded_path)
        if plain is not None and method in ("GET", "HEAD"):
            self._serve_bytes(plain, f'"{hashlib.sha256(plain).hexdigest()}"', {self.decoded_path}, {})
            return
        segments = self.raw_path.split("/")[1:]  # still percent-encoded: "%2F" inside a segment is not a separator
        if segments[:2] == ["api", "agent-harnesses"] and method == "GET":
            self._json({"standardEnvVars": [], "harnesses": {}})
            return
        if len(segments) >= 3 and segments[0] == "api" and segments[1] in _TYPE_OF_PLURAL:
            self._route_api(method, _TYPE_OF_PLURAL[segments[1]], segments[2:], body)
            return
        if method in ("GET", "HEAD") and "resolve" in segments:
            index = segments.index("resolve")
            prefix, repo_type = segments[:index], "model"
            if prefix and prefix[0] in ("datasets", "spaces"):
                repo_type = _TYPE_OF_PLURAL[prefix[0]]
                prefix = prefix[1:]
            if 1 <= len(prefix) <= 2 and len(segments) >= index + 3:
                self._route_resolve(
                    repo_type,
                    "/".join(unquote(s) for s in prefix),
                    unquote(segments[index + 1]),
                    unquote("/".join(segments[index + 2 :])),
                )
                return
        self._not_found()

    def _repo_or_error(self, repo_type: str, repo_id: str, revision: str) -> tuple[_Repo, dict[str, _File], str] | None:
        repo, files, sha = self.server.hub._lookup(repo_type, repo_id, revision)
        if repo is None:
            self._hub_error(401, "RepoNotFound", "Repository not found")
            return None
        if files is None:
            self._hub_error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return None
        return repo, files, sha

    def _route_resolve(self, repo_type: str, repo_id: str, revision: str, path: str) -> None:
        repo, _, _ = self.server.hub._lookup(repo_type, repo_id, revision)
        if repo is not None and repo.gated and self._token() != VALID_TOKEN:
            token = self._token()
            message = (
                f"Access to {repo_type} {repo_id} is restricted. You must have access to it and be authenticated."
                if token is None
                else f"Access to {repo_type} {repo_id} is restricted and you are not in the authorized list."
            )
            self._hub_error(401 if token is None else 403, "GatedRepo", message)
            return
        found = self._repo_or_error(repo_type, repo_id, revision)
        if found is None:
            return
        _, files, sha = found
        entry = files.get(path)
        if entry is None:
            self._hub_error(404, "EntryNotFound", f"{path} does not exist on \"{revision}\"", {"X-Repo-Commit": sha})
            return
        if entry.lfs:
            name = quote(path.rsplit("/", 1)[-1])
            location = f"{self.server.hub.cdn_url}/lfs/{entry.sha256}?filename={name}&sig=fake"
            self._send(
                302,
                b"",
                {
                    "Location": location,
                    "X-Repo-Commit": sha,
                    "X-Linked-Etag": f'"{entry.sha256}"',
                    "X-Linked-Size": str(len(entry.data)),
                    "ETag": f'"{entry.git_oid}"',
                },
            )
            return
        self._serve_bytes(entry.data, f'"{entry.sha256}"', {self.decoded_path, path}, {"X-Repo-Commit": sha})

    def _route_api(self, method: str, repo_type: str, segments: list[str], body: bytes) -> None:
        # /api/{t}/{owner}/{name}/... or /api/{t}/{name}/... (legacy ids without owner)
        n_id = 2 if len(segments) >= 2 and segments[1] not in _API_ACTIONS else 1
        repo_id = "/".join(unquote(s) for s in segments[:n_id])
        rest = segments[n_id:]
        action = rest[0] if rest else None
        revision = unquote(rest[1]) if len(rest) >= 2 else "main"
        if method == "GET" and (action is None or (action == "revision" and len(rest) == 2)):
            self._api_info(repo_type, repo_id, revision)
        elif method == "GET" and action == "tree" and len(rest) >= 2:
            self._api_tree(repo_type, repo_id, revision, unquote("/".join(rest[2:])).strip("/"))
        elif method == "POST" and action == "paths-info" and len(rest) == 2:
            form = parse_qs(body.decode())
            expand = _is_true((form.get("expand") or [""])[0])
            self._api_paths_info(repo_type, repo_id, revision, form.get("paths", []), expand)
        else:
            self._not_found()

    def _api_info(self, repo_type: str, repo_id: str, revision: str) -> None:
        found = self._repo_or_error(repo_type, repo_id, revision)
        if found is None:
            return
        repo, files, sha = found
        blobs = _is_true((self.query.get("blobs") or [""])[0])
        siblings = []
        for path in sorted(files):
            sibling: dict[str, object] = {"rfilename": path}
            if blobs:
                entry = files[path]
                sibling.update(size=len(entry.data), blobId=entry.git_oid)
                if entry.lfs:
                    sibling["lfs"] = {
                        "size": len(entry.data),
                        "sha256": entry.sha256,
                        "pointerSize": len(entry.pointer),
                    }
            siblings.append(sibling)
        info: dict[str, object] = {
            "_id": sha[:24],
            "id": repo_id,
            "author": repo_id.split("/")[0] if "/" in repo_id else None,
            "sha": sha,
            "lastModified": _FAKE_DATE,
            "createdAt": _FAKE_DATE,
            "private": False,
            "gated": "auto" if repo.gated else False,
            "disabled": False,
            "tags": [],
            "siblings": siblings,
        }
        if repo_type == "space":
            info["sdk"] = "static"
        self._json(info)

    def _entries(self, files: dict[str, _File], sha: str, expand: bool) -> dict[str, dict[str, object]]:
        """Tree entries by path, folders included."""
        entries: dict[str, dict[str, object]] = {}
        last_commit = {"id": sha, "title": "Upload files", "date": _FAKE_DATE}
        for path, entry in files.items():
            item: dict[str, object] = {"type": "file", "oid": entry.git_oid, "size": len(entry.data), "path": path}
            if entry.lfs:
                item["lfs"] = {"oid": entry.sha256, "size": len(entry.data), "pointerSize": len(entry.pointer)}
            if expand:
                item["lastCommit"] = last_commit
                item["securityFileStatus"] = {"status": "safe", "avScan": None, "pickleImportScan": None}
            entries[path] = item
            parts = path.split("/")
            for depth in range(1, len(parts)):
                folder = "/".join(parts[:depth])
                oid = hashlib.sha1(f"tree\0{sha}\0{folder}".encode()).hexdigest()
                entries.setdefault(folder, {"type": "directory", "oid": oid, "size": 0, "path": folder})
                if expand:
                    entries[folder]["lastCommit"] = last_commit
        return entries

    def _api_tree(self, repo_type: str, repo_id: str, revision: str, folder: str) -> None:
        found = self._repo_or_error(repo_type, repo_id, revision)
        if found is None:
            return
        _, files, sha = found
        entries = self._entries(files, sha, _is_true((self.query.get("expand") or [""])[0]))
        if folder and entries.get(folder, {}).get("type") != "directory":
            self._hub_error(404, "EntryNotFound", f"{folder} does not exist on \"{revision}\"", {"X-Repo-Commit": sha})
            return
        recursive = _is_true((self.query.get("recursive") or [""])[0])
        prefix = f"{folder}/" if folder else ""
        listing = [
            entries[path]
            for path in sorted(entries)
            if path.startswith(prefix) and (recursive or "/" not in path[len(prefix) :])
        ]
        self._json(listing)

    def _api_paths_info(self, repo_type: str, repo_id: str, revision: str, paths: list[str], expand: bool) -> None:
        found = self._repo_or_error(repo_type, repo_id, revision)
        if found is None:
            return
        _, files, sha = found
        entries = self._entries(files, sha, expand)
        self._json([entries[p.strip("/")] for p in paths if p.strip("/") in entries])


@contextlib.contextmanager
def repoint_huggingface_hub(url: str, hf_home: Path) -> Iterator[None]:
    """Point an *already imported* huggingface_hub at ``url`` and at a cache under ``hf_home``, in-process; undone on
    exit.

    huggingface_hub reads HF_ENDPOINT, HF_HOME, HF_HUB_CACHE, telemetry settings... once, into
    ``huggingface_hub.constants``, at import. The download code reads them back from that module at call time
    (``constants.ENDPOINT`` / ``constants.HUGGINGFACE_CO_URL_TEMPLATE`` for /resolve/ URLs, ``constants.HF_HUB_CACHE``
    for the default cache dir), so patching the module attributes re-points ``hf_hub_download``,
    ``snapshot_download`` and every ``HfApi()`` created afterwards. Also patched: the module-level ``HfApi`` singleton
    behind ``huggingface_hub.model_info`` & co (its endpoint was frozen at import), the set of "Hub origins" used to
    decide which redirects keep the Authorization header, the token file paths (so a developer's own login is not
    used) and telemetry (off: with it on, huggingface_hub fetches ``/api/agent-harnesses`` and caches it in HF_HOME).

    Caveats: ``HfApi`` objects created before entering keep their old endpoint; modules that copied a constant with
    ``from huggingface_hub.constants import X`` (the ``hf`` CLI's auth commands, git credential helpers) are not
    affected; ``HF_TOKEN`` in ``os.environ`` is read at call time and still applies; the shared HTTP client is closed
    on exit. Not thread-safe with respect to other code using huggingface_hub at the same time.
    """
    from huggingface_hub import constants, hf_api
    from huggingface_hub.utils import _http

    url = url.rstrip("/")
    hf_home = Path(hf_home)
    patches: list[tuple[object, str, object]] = [
        (constants, "ENDPOINT", url),
        (constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}"),
        (constants, "HF_HOME", str(hf_home)),
        (constants, "HF_HUB_CACHE", str(hf_home / "hub")),
        (constants, "HF_TOKEN_PATH", str(hf_home / "token")),
        (constants, "HF_STORED_TOKENS_PATH", str(hf_home / "stored_tokens")),
        (constants, "AGENT_HARNESSES_PATH", str(hf_home / ".agent_harnesses.json")),
        (constants, "HF_HUB_DISABLE_TELEMETRY", True),
        (constants, "HF_HUB_OFFLINE", False),
        (hf_api.api, "endpoint", url),
    ]
    if hasattr(_http, "_HUB_ORIGINS"):  # huggingface_hub >= 2.2 keeps auth on redirects to these
        patches.append((_http, "_HUB_ORIGINS", _http._HUB_ORIGINS | {_http._url_origin(url)}))
    saved = [(obj, name, getattr(obj, name)) for obj, name, _ in patches]
    try:
        for obj, name, value in patches:
            setattr(obj, name, value)
        yield
    finally:
        for obj, name, value in saved:
            setattr(obj, name, value)
        _http.close_session()
