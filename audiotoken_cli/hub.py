"""Presets, component specs, downloads and the cache. The only module that touches the network.

A component option (``--sd``, ``--audio-encoder``, ``--embedder``, ``--lora``) takes one of:

- a local path: ``~/models/BEATs.pt``, ``./run/``;
- an ``https://`` URL: cached in the user cache folder, resumed when interrupted;
- a hub id: ``owner/name`` (a whole repository, e.g. a Stable Diffusion folder), with an optional
  ``@revision`` and a file or folder path: ``owner/name@v1/models/x.pt``. A Space is marked by the
  prefix ``spaces/``: ``spaces/GuyYariv/AudioToken/models/embedder_learned_embeds.bin``.

Hub files go through huggingface_hub into the standard hub cache (``HF_HOME``, ``HF_HUB_CACHE``),
so weights the user already has are reused. Every file whose sha256 is known is verified after
download, whatever its source; a file that fails is removed from the cache.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from audiotoken_cli.errors import AudioTokenError, ModelError, UsageError

DEFAULT_PRESET = "vggsound"
ROLES = ("sd", "audio_encoder", "embedder", "lora")
ROLE_OPTIONS = {"sd": "--sd", "audio_encoder": "--audio-encoder", "embedder": "--embedder",
                "lora": "--lora"}
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")
FILE_SUFFIXES = WEIGHT_SUFFIXES + (".json", ".txt", ".toml", ".npz")
_HUB_ID = re.compile(
    r"^(?P<space>spaces/)?(?P<owner>[A-Za-z0-9][\w.-]*)/(?P<name>[\w.-]+)"
    r"(?:@(?P<revision>[\w./-]+?))?(?:/(?P<path>.+))?$"
)


class NetworkError(AudioTokenError):
    """A download could not reach its server."""


class ChecksumError(ModelError):
    """A downloaded file is not the file its preset or spec names."""


# ---------------------------------------------------------------------------------------------
# Component specs


@dataclass(frozen=True)
class Spec:
    """Where a component comes from, parsed from what the user typed."""

    text: str
    kind: str  # "local" | "url" | "hub"
    repo_id: str = ""
    repo_type: str = "model"
    revision: str | None = None
    path: str = ""  # a file or folder inside the repository; "" for the whole repository

    @property
    def is_file(self) -> bool:
        return self.kind == "url" or Path(self.path).suffix in FILE_SUFFIXES

    def describe(self) -> str:
        if self.kind != "hub":
            return self.text
        where = ("Space " if self.repo_type == "space" else "") + self.repo_id
        revision = f"@{self.revision}" if self.revision else ""
        return f"{where}{revision}" + (f", file {self.path}" if self.path else "")


def parse_spec(text: str) -> Spec:
    """Local path, URL or hub id; see the module docstring for the syntax."""
    text = text.strip()
    if text.startswith(("https://", "http://")):
        return Spec(text, "url")
    expanded = Path(text).expanduser()
    looks_local = text.startswith(("/", "./", "../", "~", ".\\")) or re.match(r"^[A-Za-z]:[\\/]", text)
    if expanded.exists() or looks_local:
        return Spec(str(expanded), "local")
    match = _HUB_ID.match(text)
    if match is None:
        raise UsageError(f"{text!r} is not an existing file, an https:// URL or a hub id "
                         "(owner/name[@revision][/path], spaces/owner/name/... for a Space)")
    return Spec(text, "hub", repo_id=f"{match['owner']}/{match['name']}",
                repo_type="space" if match["space"] else "model",
                revision=match["revision"], path=(match["path"] or "").strip("/"))


# ---------------------------------------------------------------------------------------------
# Presets


@dataclass(frozen=True)
class Preset:
    """A named bundle of the components; ``sha256`` maps a role to its file's known hash."""

    name: str
    sd: str
    audio_encoder: str
    embedder: str
    lora: str | None = None
    description: str = ""
    sha256: dict[str, str] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    source: str = "built in"

    def component(self, role: str) -> str | None:
        return getattr(self, role)


PAPER_SPACE = "spaces/GuyYariv/AudioToken"
BUILTIN_PRESETS = {
    "vggsound": Preset(
        name="vggsound",
        description="AudioToken trained on VGGSound (the paper's published weights), SD 1.4",
        sd="CompVis/stable-diffusion-v1-4",
        audio_encoder=f"{PAPER_SPACE}/models/BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt",
        embedder=f"{PAPER_SPACE}/models/embedder_learned_embeds.bin",
        sha256={"audio_encoder":
                "e5815275a04b6885e7b8af63d120b29bffae2cd2225cf4915e1ec6d819d3022c"},
        sizes={"audio_encoder": 363_145_291},
    ),
}


def user_presets_file() -> Path:
    from platformdirs import user_config_dir

    return Path(user_config_dir("audiotoken")) / "presets.toml"


def load_presets() -> dict[str, Preset]:
    """The built-in presets plus the user's ``presets.toml`` (which may override them)."""
    presets = dict(BUILTIN_PRESETS)
    path = user_presets_file()
    if not path.is_file():
        return presets
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UsageError(f"{path}: not valid TOML ({error})") from error
    for name, table in data.items():
        presets[name] = _preset_from_table(path, name, table)
    return presets


def _preset_from_table(path: Path, name: str, table: object) -> Preset:
    if not isinstance(table, dict):
        raise UsageError(f"{path}: [{name}] must be a table of components")
    missing = [key for key in ("sd", "audio_encoder", "embedder") if not table.get(key)]
    if missing:
        raise UsageError(f"{path}: preset [{name}] needs {', '.join(missing)}")
    hashes = {role: str(table[f"{role}_sha256"]).lower() for role in ROLES
              if table.get(f"{role}_sha256")}
    return Preset(name=name, sd=str(table["sd"]), audio_encoder=str(table["audio_encoder"]),
                  embedder=str(table["embedder"]), lora=table.get("lora"),
                  description=str(table.get("description", "")), sha256=hashes,
                  source=str(path))


def get_preset(name: str) -> Preset:
    presets = load_presets()
    if name not in presets:
        raise UsageError(f"unknown model preset {name!r}; choose one of {', '.join(presets)} "
                         f"(add your own in {user_presets_file()})")
    return presets[name]


# ---------------------------------------------------------------------------------------------
# Resolving a component to a local path


@dataclass(frozen=True)
class FetchOptions:
    offline: bool = False
    quiet: bool = False
    notice: Callable[[str], None] = lambda message: None


def is_offline(flag: bool = False) -> bool:
    return flag or os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def resolve(text: str, role: str, options: FetchOptions, sha256: str | None = None) -> Path:
    """A local path for the component: as given, from the cache, or downloaded now."""
    spec = parse_spec(text)
    if spec.kind == "local":
        path = Path(spec.text)
        if not path.exists():
            raise ModelError(f"{path}: not found ({ROLE_OPTIONS[role]})")
        return path
    if spec.kind == "url":
        path = _fetch_url(spec, role, options)
    elif spec.is_file:
        path = _fetch_hub_file(spec, role, options)
    else:
        path = _fetch_hub_folder(spec, role, options)
    if sha256 and path.is_file():
        verify_sha256(path, sha256, spec, role)
    return path


def verify_sha256(path: Path, expected: str, spec: Spec, role: str) -> None:
    """Compare, and on a mismatch remove the cached file (and its blob) so it is fetched anew."""
    from audiotoken_cli.files import cached_sha256

    actual = cached_sha256(path)
    if actual == expected.lower():
        return
    removed = _remove_cached(path)
    raise ChecksumError(
        f"{spec.describe()}: checksum mismatch for the {role.replace('_', ' ')} "
        f"(expected sha256 {expected[:12]}…, got {actual[:12]}…); "
        + ("the bad file was removed from the cache" if removed else f"check {path}")
    )


def _remove_cached(path: Path) -> bool:
    """Remove a cached download: the hub's snapshot link and its blob, or our URL file."""
    try:
        target = path.resolve()
        path.unlink(missing_ok=True)
        if target != path:
            target.unlink(missing_ok=True)
        return True
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------
# Hub


def hub_cache_dir() -> Path:
    """The standard hub cache: HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub.

    Read at call time (huggingface_hub reads it once, at import), so it always follows the
    environment of the moment.
    """
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "huggingface" / "hub"


def _quiet_hub_logs() -> None:
    """huggingface_hub logs retries and advice as warnings; our errors say it in one line."""
    from huggingface_hub.utils import logging as hub_logging

    hub_logging.set_verbosity_error()


def _hub_kwargs(spec: Spec, options: FetchOptions) -> dict:
    _quiet_hub_logs()
    # Endpoint and cache are read at call time, like hub_cache_dir, so HF_ENDPOINT and HF_HOME
    # set after import still count.
    endpoint = os.environ.get("HF_ENDPOINT")
    kwargs = {"repo_type": spec.repo_type, "revision": spec.revision,
              "cache_dir": str(hub_cache_dir()), "local_files_only": is_offline(options.offline)}
    if endpoint:
        kwargs["endpoint"] = endpoint.rstrip("/")
    return kwargs


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
                           f"({reason}); check the network, or use --offline with a cache that "
                           "has it") from error
    _REACHABLE[f"{host}:{port}"] = True


def _hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def _fetch_hub_file(spec: Spec, role: str, options: FetchOptions) -> Path:
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    cached = try_to_load_from_cache(spec.repo_id, spec.path, revision=spec.revision,
                                    repo_type=spec.repo_type, cache_dir=str(hub_cache_dir()))
    if isinstance(cached, str) and Path(cached).is_file():
        return Path(cached)  # no network at all when the cache has it
    if is_offline(options.offline):
        raise _missing_offline(spec, role)
    check_reachable(_hub_endpoint(), spec, role)
    options.notice(f"downloading the {role.replace('_', ' ')}: {spec.describe()}")
    with _progress(options) as bars:
        with _explained(spec, role, options):
            return Path(hf_hub_download(spec.repo_id, spec.path, tqdm_class=bars,
                                        **_hub_kwargs(spec, options)))


def _fetch_hub_folder(spec: Spec, role: str, options: FetchOptions) -> Path:
    """A repository (or a folder in one): only the files a diffusers pipeline or an embedder
    needs — configs, tokenizer, one copy of each weight, fp16 safetensors when offered."""
    from huggingface_hub import snapshot_download

    kwargs = _hub_kwargs(spec, options)
    with _explained(spec, role, options):
        # A warm cache needs no network, not even a HEAD.
        folder = cached_snapshot(spec)
        if folder is not None and _folder_complete(folder / spec.path, role):
            return folder / spec.path
        if kwargs["local_files_only"]:
            raise _missing_offline(spec, role)
        check_reachable(_hub_endpoint(), spec, role)
        options.notice(f"downloading the {role.replace('_', ' ')}: {spec.describe()}")
        patterns = choose_files(_list_files(spec, kwargs), role, spec.path)
        with _progress(options) as bars:
            folder = Path(snapshot_download(spec.repo_id, allow_patterns=patterns,
                                            tqdm_class=bars, **kwargs))
    return folder / spec.path


def cached_snapshot(spec: Spec) -> Path | None:
    """The cached snapshot folder of the spec's revision, or None; no network.

    We look it up ourselves: huggingface_hub's offline lookup also wants every file of the
    repository's listing, and we fetch only the few a pipeline needs.
    """
    prefix = "spaces" if spec.repo_type == "space" else "models"
    repo = hub_cache_dir() / f"{prefix}--{spec.repo_id.replace('/', '--')}"
    revision = spec.revision or "main"
    if re.fullmatch(r"[0-9a-f]{40}", revision):
        commit = revision
    else:
        ref = repo / "refs" / revision
        if not ref.is_file():
            return None
        commit = ref.read_text().strip()
    folder = repo / "snapshots" / commit
    return folder if folder.is_dir() else None


def _list_files(spec: Spec, kwargs: dict) -> list[str]:
    from huggingface_hub import HfApi

    api = HfApi(endpoint=kwargs.get("endpoint"))
    return api.list_repo_files(spec.repo_id, repo_type=spec.repo_type, revision=spec.revision)


def _folder_complete(folder: Path, role: str) -> bool:
    if role == "sd":
        return (folder / "model_index.json").is_file() and any(
            p.suffix in (".safetensors", ".bin") for p in (folder / "unet").glob("*"))
    return (folder / "config.json").is_file() and (folder / "embedder.safetensors").is_file()


def choose_files(files: list[str], role: str, prefix: str = "") -> list[str]:
    """The files to fetch from a repository listing.

    For a Stable Diffusion folder: model_index.json, every component's configs and tokenizer
    files, and for each component one weight file: fp16 safetensors if every component offers
    them, else safetensors, else .bin. Never .ckpt checkpoints, Flax/ONNX copies or
    root-level single-file checkpoints (several GB each, unused by diffusers).
    """
    inside = [f for f in files if not prefix or f.startswith(prefix.rstrip("/") + "/")]
    relative = {f: f[len(prefix.rstrip("/")) + 1:] if prefix else f for f in inside}
    if role != "sd":
        return [f for f in inside if Path(f).suffix in (".json", ".safetensors", ".txt")]
    chosen = [f for f, rel in relative.items()
              if rel == "model_index.json" or ("/" in rel and Path(rel).suffix in (".json", ".txt"))]
    weights: dict[str, list[str]] = {}
    for f, rel in relative.items():
        if "/" in rel and rel.endswith((".safetensors", ".bin")) and not rel.endswith(
                ("flax_model.msgpack", ".onnx")):
            weights.setdefault(rel.split("/")[0], []).append(f)
    all_fp16 = weights and all(any(w.endswith(".fp16.safetensors") for w in ws)
                               for ws in weights.values())
    for candidates in weights.values():
        chosen.append(_best_weight(candidates, prefer_fp16=bool(all_fp16)))
    return sorted(chosen)


def _best_weight(candidates: list[str], prefer_fp16: bool) -> str:
    def rank(name: str) -> tuple:
        fp16 = ".fp16." in name
        return (not name.endswith(".safetensors"), fp16 != prefer_fp16, "-of-" in name, name)

    best = min(candidates, key=rank)
    # A sharded checkpoint ("-00001-of-00002") needs all its shards (its index is a .json,
    # already chosen): fetch every shard of the same name.
    return re.sub(r"-\d{5}-of-\d{5}", "-*-of-*", best)


def _is_transport_error(error: BaseException) -> bool:
    """httpx (under huggingface_hub) raises its own connection errors, not OSError."""
    return any(cls.__name__ in ("TransportError", "ConnectError", "TimeoutException",
                                "RemoteProtocolError", "ReadError")
               for cls in type(error).__mro__)


def _missing_offline(spec: Spec, role: str) -> ModelError:
    return ModelError(f"{spec.describe()}: the {role.replace('_', ' ')} is not in the cache and "
                      "downloads are off (--offline or HF_HUB_OFFLINE=1); fetch it first with "
                      "`audiotoken download`")


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
        return NetworkError(f"{what}: not in the cache and the hub cannot be reached; check the "
                            "network, or use --offline with a cache that has it")
    if isinstance(error, hub_errors.EntryNotFoundError):
        return ModelError(f"{what}: no file {spec.path!r} in this repository")
    if isinstance(error, hub_errors.OfflineModeIsEnabled):
        return _missing_offline(spec, role)
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return AudioTokenError(f"{what}: the disk is full; free some space (the partial download "
                               "was removed) and run again")
    if _is_transport_error(error) or isinstance(error, (ConnectionError, TimeoutError, OSError)):
        return NetworkError(f"{what}: cannot reach the server ({type(error).__name__}); check the "
                            "network, or use --offline with a warm cache")
    return ModelError(f"{what}: download failed ({type(error).__name__}: {error})")


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


# ---------------------------------------------------------------------------------------------
# Progress: huggingface_hub takes any tqdm-like class; ours draws with rich.


class _progress:
    """Context manager giving a tqdm-like class whose bars are rich progress bars (bytes,
    speed, ETA) on stderr, or nothing with ``--quiet``."""

    def __init__(self, options: FetchOptions):
        self.options = options
        self.progress = None

    def __enter__(self):
        if self.options.quiet:
            return _SilentBar
        from rich.console import Console
        from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn,
                                   TimeRemainingColumn, TransferSpeedColumn)

        console = Console(stderr=True)
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                 TransferSpeedColumn(), TimeRemainingColumn(),
                                 console=console, transient=True, disable=not console.is_terminal)
        self.progress.start()
        progress = self.progress

        class RichBar(_SilentBar):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                self._task = None
                if kwargs.get("unit", "B") == "B":
                    self._task = progress.add_task(self._label(), total=self._total or None,
                                                   completed=kwargs.get("initial", 0) or 0,
                                                   visible=False)

            def _label(self) -> str:
                desc = self.desc or "download"
                return "download" if desc.startswith(("Reconstructing", "Downloading bytes")) else desc

            def _sync(self) -> None:
                if self._task is not None:
                    progress.update(self._task, total=self._total or None, completed=self.n,
                                    visible=self.n > 0)

        return RichBar

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.stop()
        return False


class _SilentBar:
    """The part of tqdm's interface huggingface_hub uses; it draws nothing."""

    def __init__(self, *args, total=None, initial=0, desc=None, **kwargs):
        self._total = total
        self.n = initial or 0
        self.desc = desc

    @property
    def total(self):
        return self._total

    @total.setter
    def total(self, value):
        self._total = value
        self._sync()

    def update(self, n=1):
        self.n += n or 0
        self._sync()

    def _sync(self) -> None:
        pass

    def refresh(self, *args, **kwargs):
        self._sync()

    def close(self):
        pass

    def set_postfix_str(self, *args, **kwargs):
        pass

    def set_description(self, desc=None, *args, **kwargs):
        self.desc = desc

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __getattr__(self, name):  # any other tqdm method: accept and ignore
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *args, **kwargs: None


def resolve_components(preset_name: str, overrides: dict[str, str | None], roles: tuple[str, ...],
                       options: FetchOptions) -> dict[str, Path | None]:
    """Each role's local path: the user's option if given, else the preset's component,
    fetched now if it is not cached. Known hashes are checked on every source."""
    preset = get_preset(preset_name)
    paths: dict[str, Path | None] = {}
    for role in roles:
        given = overrides.get(role)
        text = given or preset.component(role)
        if not text:
            paths[role] = None
            continue
        known = preset.sha256.get(role) if text == preset.component(role) else None
        paths[role] = resolve(text, role, options, sha256=known)
    return paths


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
                size = _disk_size(path) if path else preset.sizes.get(role)
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


def _disk_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
