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

import os
import re
from pathlib import Path

from audiotoken_cli.errors import ModelError
from audiotoken_cli.hub.network import (
    _explained,
    _missing_offline,
    check_reachable,
    is_offline,
)
from audiotoken_cli.hub.progress import _progress
from audiotoken_cli.hub.specs import (
    ROLE_OPTIONS,
    ChecksumError,
    FetchOptions,
    Spec,
    get_preset,
    missing_embedder,
    parse_spec,
)
from audiotoken_cli.hub.urls import _fetch_url

# ---------------------------------------------------------------------------------------------
# Resolving a component to a local path

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
    from audiotoken_cli.hashing import cached_sha256

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
    remove_killed_downloads(spec, options)
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
        remove_killed_downloads(spec, options)
        options.notice(f"downloading the {role.replace('_', ' ')}: {spec.describe()}")
        patterns = choose_files(_list_files(spec, kwargs), role, spec.path)
        with _progress(options) as bars:
            folder = Path(snapshot_download(spec.repo_id, allow_patterns=patterns,
                                            tqdm_class=bars, **kwargs))
    return folder / spec.path


KILLED_DOWNLOAD = re.compile(r"^([0-9a-f]+)\.[0-9a-f]{8}\.incomplete$")
"""huggingface_hub (2.2 on, all this project takes) downloads a blob to
``<etag>.<8 hex>.incomplete``, a name of its own per download, and deletes it when a download
fails: only a killed process leaves one, and no later download ever resumes it (an older
``<etag>.incomplete``, which older versions do resume, is left alone)."""


def remove_killed_downloads(spec: Spec, options: FetchOptions) -> list[Path]:
    """Remove what a killed download of ``spec``'s repository left in the hub cache (up to the
    whole file's size each), so it does not stay behind for ever beside the next, fresh download.

    A download in progress holds the lock huggingface_hub takes per blob
    (``.locks/<repo>/<etag>.lock``); its file is kept. Returns the removed files."""
    from huggingface_hub.file_download import repo_folder_name
    from huggingface_hub.utils import WeakFileLock

    cache = hub_cache_dir()
    repo = repo_folder_name(repo_id=spec.repo_id, repo_type=spec.repo_type)
    removed, freed = [], 0
    for partial in sorted((cache / repo / "blobs").glob("*.incomplete")):
        match = KILLED_DOWNLOAD.match(partial.name)
        if match is None:
            continue
        try:
            size = partial.stat().st_size
            with WeakFileLock(cache / ".locks" / repo / f"{match[1]}.lock", timeout=0.1):
                partial.unlink()
        except (TimeoutError, OSError):  # being downloaded right now, or gone already
            continue
        removed.append(partial)
        freed += size
    if removed:
        options.notice(f"removed {len(removed)} unfinished download(s) of {spec.describe()} that "
                       f"a stopped run left ({freed / 1e6:.1f} MB); downloading afresh")
    return removed


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
    if role == "taesd":
        return (folder / "config.json").is_file() and any(
            folder.glob("diffusion_pytorch_model*.safetensors"))
    if role in ("clip_b32", "clip_l14"):  # a transformers folder: config and weights
        return (folder / "config.json").is_file() and any(
            (folder / name).is_file() for name in ("model.safetensors", "pytorch_model.bin"))
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
    if role == "taesd":  # the diffusers folder only, not the repo's .pth / encoder copies
        return [f for f, rel in relative.items() if rel in (
            "config.json", "diffusion_pytorch_model.safetensors")]
    if role != "sd":
        chosen = [f for f in inside if Path(f).suffix in (".json", ".safetensors", ".txt")]
        if role.startswith("clip_") and not any(f.endswith(".safetensors") for f in chosen):
            chosen += [f for f in inside if Path(f).name == "pytorch_model.bin"]
        return chosen
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


def resolve_components(preset_name: str, overrides: dict[str, str | None], roles: tuple[str, ...],
                       options: FetchOptions) -> dict[str, Path | None]:
    """Each role's local path: the user's option if given, else the preset's component,
    fetched now if it is not cached. Known hashes are checked on every source."""
    preset = get_preset(preset_name)
    if "embedder" in roles and not (overrides.get("embedder") or preset.embedder):
        raise missing_embedder(preset)  # before gigabytes of other parts are fetched
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

