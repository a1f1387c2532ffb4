"""The fake Hub (tests/hub_server.py) against huggingface_hub's real download code.

Most tests run huggingface_hub in a subprocess whose environment has HF_ENDPOINT=<fake hub url>, HF_HOME=<tmp> and
HF_HUB_DISABLE_TELEMETRY=1, because huggingface_hub reads those once, at import. The last tests use
`repoint_huggingface_hub` to do the same in-process. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from http.client import IncompleteRead
from pathlib import Path

import pytest

from hub_server import VALID_TOKEN, FakeHub, repoint_huggingface_hub

MIB = 1024 * 1024
_PRELUDE = """\
import json, sys
from huggingface_hub import HfApi, hf_hub_download, snapshot_download

def attempt(fn, *args, **kwargs):
    try:
        return {"ok": fn(*args, **kwargs)}
    except Exception as exc:
        return {"error": type(exc).__name__, "classes": [c.__name__ for c in type(exc).__mro__]}
"""
_RESULT_MARK = "@@RESULT@@"


@pytest.fixture
def hub():
    with FakeHub() as fake:
        yield fake
        assert fake.errors == [], "\n".join(fake.errors)


def _env(hub: FakeHub, home: Path, token: str | None = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HF_", "HUGGING")) and k.lower() not in {"http_proxy", "https_proxy", "all_proxy"}
    }
    env.update(
        HF_ENDPOINT=hub.url,
        HF_HOME=str(home),
        HF_HUB_DISABLE_TELEMETRY="1",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    if token is not None:
        env["HF_TOKEN"] = token
    return env


def _script(code: str) -> list[str]:
    body = _PRELUDE + textwrap.dedent(code) + f"\nprint({_RESULT_MARK!r} + json.dumps(out))\n"
    return [sys.executable, "-c", body]


def run_hf(hub: FakeHub, home: Path, code: str, token: str | None = None):
    """Run ``code`` (which must set ``out`` to something JSON-able) against the fake hub in a fresh interpreter."""
    proc = subprocess.run(
        _script(code), env=_env(hub, home, token), capture_output=True, text=True, timeout=120, cwd=home.parent
    )
    assert proc.returncode == 0, proc.stderr
    line = [x for x in proc.stdout.splitlines() if x.startswith(_RESULT_MARK)][-1]
    return json.loads(line[len(_RESULT_MARK) :])


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _methods(hub: FakeHub, path: str) -> list[str]:
    return [method for method, p in hub.requests if p == path]


# --------------------------------------------------------------------------------------------- hf_hub_download
def test_download_model_file_into_hf_cache_layout(hub, tmp_path):
    data = b'{"sample_rate": 16000}'
    hub.add_file("owner/model", "config.json", data)
    hub.add_file("owner/model", "sub/dir/weights.bin", os.urandom(4096))
    home = tmp_path / "home"

    out = run_hf(hub, home, 'out = hf_hub_download("owner/model", "config.json", revision="main")')

    commit = hub.commit_sha("owner/model")
    repo_dir = home / "hub" / "models--owner--model"
    assert out == str(repo_dir / "snapshots" / commit / "config.json")
    assert Path(out).read_bytes() == data
    assert Path(out).resolve() == (repo_dir / "blobs" / _sha256(data)).resolve()  # blob named by the sha256 ETag
    assert (repo_dir / "refs" / "main").read_text() == commit
    resolve = "/owner/model/resolve/main/config.json"
    assert hub.requests == [("HEAD", resolve), ("GET", resolve)]

    nested = run_hf(hub, home, 'out = hf_hub_download("owner/model", "sub/dir/weights.bin")')
    assert nested == str(repo_dir / "snapshots" / commit / "sub" / "dir" / "weights.bin")


def test_download_space_file(hub, tmp_path):
    data = os.urandom(10_000)
    hub.add_file("owner/demo", "emb/codebook.bin", data, repo_type="space")
    home = tmp_path / "home"

    out = run_hf(hub, home, 'out = hf_hub_download("owner/demo", "emb/codebook.bin", repo_type="space")')

    commit = hub.commit_sha("owner/demo", repo_type="space")
    assert out == str(home / "hub" / "spaces--owner--demo" / "snapshots" / commit / "emb" / "codebook.bin")
    assert Path(out).read_bytes() == data
    assert ("GET", "/spaces/owner/demo/resolve/main/emb/codebook.bin") in hub.requests
    # the same repo id as a model does not exist
    err = run_hf(hub, home, 'out = attempt(hf_hub_download, "owner/demo", "emb/codebook.bin")')
    assert err["error"] == "RepositoryNotFoundError"


def test_lfs_file_is_redirected_to_cdn_without_auth_header(hub, tmp_path):
    data = os.urandom(50_000)
    hub.add_file("owner/model", "model.safetensors", data, lfs=True)
    home = tmp_path / "home"

    out = run_hf(hub, home, 'out = hf_hub_download("owner/model", "model.safetensors")', token=VALID_TOKEN)

    assert Path(out).read_bytes() == data
    assert Path(out).resolve().name == _sha256(data)  # X-Linked-Etag wins over the (git oid) ETag
    head, get = hub.log
    assert (head.server, head.method, head.headers["authorization"]) == ("hub", "HEAD", f"Bearer {VALID_TOKEN}")
    assert (get.server, get.method, get.path) == ("cdn", "GET", f"/lfs/{_sha256(data)}")
    assert "authorization" not in get.headers  # huggingface_hub strips auth when leaving the Hub's origin


def test_cached_file_is_not_downloaded_again(hub, tmp_path):
    hub.add_file("owner/model", "config.json", b"{}")
    home = tmp_path / "home"
    path = "/owner/model/resolve/main/config.json"
    run_hf(hub, home, 'out = hf_hub_download("owner/model", "config.json")')
    assert _methods(hub, path) == ["HEAD", "GET"]

    hub.clear_log()
    run_hf(hub, home, 'out = hf_hub_download("owner/model", "config.json")')
    assert hub.requests == [("HEAD", path)]  # a branch name is re-checked with a HEAD, nothing is fetched

    hub.clear_log()
    commit = hub.commit_sha("owner/model")
    run_hf(hub, home, f'out = [hf_hub_download("owner/model", "config.json", local_files_only=True),'
                      f' hf_hub_download("owner/model", "config.json", revision="{commit}")]')
    assert hub.requests == []  # cache-only and pinned-commit lookups make no request at all


def test_changed_file_gets_new_commit_and_is_downloaded_again(hub, tmp_path):
    hub.add_file("owner/model", "config.json", b"v1")
    home = tmp_path / "home"
    first = run_hf(hub, home, 'out = hf_hub_download("owner/model", "config.json")')
    old_commit = hub.commit_sha("owner/model")
    hub.add_file("owner/model", "config.json", b"v2")
    second = run_hf(hub, home, 'out = hf_hub_download("owner/model", "config.json")')
    assert hub.commit_sha("owner/model") != old_commit
    assert (Path(first).read_bytes(), Path(second).read_bytes()) == (b"v1", b"v2")


# ------------------------------------------------------------------------------------------ snapshot_download
def test_snapshot_download_allow_patterns_fetches_only_matching_files(hub, tmp_path):
    files = {
        "config.json": b"{}",
        "tokenizer/vocab.json": b"[]",
        "model.safetensors": os.urandom(3000),
        "README.md": b"# readme",
    }
    src = tmp_path / "src"
    for name, data in files.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(data)
    hub.add_folder("owner/model", src)
    home = tmp_path / "home"

    out = run_hf(hub, home, 'out = snapshot_download("owner/model", revision="main", allow_patterns=["*.json"])')

    commit = hub.commit_sha("owner/model")
    snapshot = Path(out)
    assert snapshot == home / "hub" / "models--owner--model" / "snapshots" / commit
    got = sorted(p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file())
    assert got == ["config.json", "tokenizer/vocab.json"]
    assert (snapshot / "tokenizer" / "vocab.json").read_bytes() == b"[]"
    gets = sorted(p for m, p in hub.requests if m == "GET" and "/resolve/" in p)
    assert gets == [f"/owner/model/resolve/{commit}/config.json", f"/owner/model/resolve/{commit}/tokenizer/vocab.json"]
    assert ("GET", "/api/models/owner/model/revision/main") in hub.requests
    assert ("GET", f"/api/models/owner/model/tree/{commit}") in hub.requests

    hub.clear_log()
    again = run_hf(hub, home, 'out = snapshot_download("owner/model", allow_patterns=["*.json"])')
    assert again == out
    assert hub.requests == [("GET", "/api/models/owner/model/revision/main")]  # tree listing is cached on disk


# ------------------------------------------------------------------------------------------------------ errors
def test_gated_repo_needs_the_token(hub, tmp_path):
    hub.add_file("owner/gated", "weights.bin", b"secret")
    hub.gate("owner/gated")
    home = tmp_path / "home"
    code = 'out = attempt(hf_hub_download, "owner/gated", "weights.bin")'

    anonymous = run_hf(hub, home, code)
    assert anonymous["error"] == "GatedRepoError"
    wrong = run_hf(hub, home, code, token="hf_wrong")
    assert wrong["error"] == "GatedRepoError"
    snapshot = run_hf(hub, home, 'out = attempt(snapshot_download, "owner/gated")')
    assert snapshot["error"] == "GatedRepoError"  # repo info / listing are public, the file HEAD is not
    assert [r.headers.get("authorization") for r in hub.log if r.method == "HEAD"] == [None, "Bearer hf_wrong", None]

    ok = run_hf(hub, home, code, token=VALID_TOKEN)
    assert Path(ok["ok"]).read_bytes() == b"secret"


def test_missing_repo_file_and_revision_raise_hub_errors(hub, tmp_path):
    hub.add_file("owner/model", "config.json", b"{}")
    home = tmp_path / "home"
    out = run_hf(
        hub,
        home,
        """
        out = {
            "repo": attempt(hf_hub_download, "owner/missing", "config.json"),
            "file": attempt(hf_hub_download, "owner/model", "missing.json"),
            "revision": attempt(hf_hub_download, "owner/model", "config.json", revision="v9"),
            "info_repo": attempt(lambda: HfApi().model_info("owner/missing")),
            "info_revision": attempt(lambda: HfApi().model_info("owner/model", revision="v9")),
            "snapshot_revision": attempt(snapshot_download, "owner/model", revision="v9"),
            "list_files": attempt(lambda: HfApi().list_repo_files("owner/missing")),
        }
        """,
    )
    assert out["repo"]["error"] == "RepositoryNotFoundError"
    assert "GatedRepoError" not in out["repo"]["classes"]
    assert out["file"]["error"] == "RemoteEntryNotFoundError"
    assert "EntryNotFoundError" in out["file"]["classes"]
    assert out["revision"]["error"] == "RevisionNotFoundError"
    assert out["info_repo"]["error"] == "RepositoryNotFoundError"
    assert out["info_revision"]["error"] == "RevisionNotFoundError"
    assert out["snapshot_revision"]["error"] == "RevisionNotFoundError"
    assert out["list_files"]["error"] == "RepositoryNotFoundError"
    # EntryNotFound carries X-Repo-Commit, so huggingface_hub caches the file's absence
    commit = hub.commit_sha("owner/model")
    assert (home / "hub" / "models--owner--model" / ".no_exist" / commit / "missing.json").exists()


def test_local_files_only_with_empty_cache(hub, tmp_path):
    hub.add_file("owner/model", "config.json", b"{}")
    out = run_hf(
        hub,
        tmp_path / "home",
        """
        out = [attempt(hf_hub_download, "owner/model", "config.json", local_files_only=True),
               attempt(snapshot_download, "owner/model", local_files_only=True)]
        """,
    )
    assert [o["error"] for o in out] == ["LocalEntryNotFoundError", "LocalEntryNotFoundError"]
    assert hub.requests == []


# ------------------------------------------------------------------------------------------------------ resume
@pytest.mark.parametrize("lfs", [False, True], ids=["resolve", "lfs-cdn"])
def test_broken_download_is_resumed_with_range_in_the_same_call(hub, tmp_path, lfs):
    # huggingface_hub only counts bytes it has handed out of httpx's 10 MiB chunker, so the break must come after
    # the first 10 MiB for the retry to carry a Range header (earlier breaks are retried from byte 0).
    data = os.urandom(12 * MIB)
    hub.add_file("owner/model", "big.bin", data, lfs=lfs)
    hub.break_once("big.bin", after_bytes=10 * MIB + 12345)

    out = run_hf(hub, tmp_path / "home", 'out = hf_hub_download("owner/model", "big.bin")')

    assert Path(out).read_bytes() == data
    gets = [r for r in hub.log if r.method == "GET"]
    assert [r.headers.get("range") for r in gets] == [None, f"bytes={10 * MIB}-"]
    assert {r.server for r in gets} == {"cdn" if lfs else "hub"}


def test_killed_download_is_restarted_from_scratch_by_the_next_call(hub, tmp_path):
    # huggingface_hub 2.4 downloads into a process-unique "<etag>.<uuid>.incomplete" file that is deleted on error
    # and never picked up by another call: there is no resume across calls, the next call starts over.
    data = os.urandom(2 * MIB)
    hub.add_file("owner/model", "big.bin", data)
    stall = hub.stall_once("big.bin", after_bytes=MIB)
    home = tmp_path / "home"
    proc = subprocess.Popen(
        _script('out = hf_hub_download("owner/model", "big.bin")'),
        env=_env(hub, home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert stall.reached.wait(60)
    finally:
        proc.kill()
        proc.wait(30)
        stall.release()
    blobs = home / "hub" / "models--owner--model" / "blobs"
    leftovers = list(blobs.glob("*.incomplete"))
    assert len(leftovers) == 1 and leftovers[0].name.startswith(_sha256(data) + ".")

    hub.clear_log()
    out = run_hf(hub, home, 'out = hf_hub_download("owner/model", "big.bin")')

    assert Path(out).read_bytes() == data
    assert [(r.method, r.headers.get("range")) for r in hub.log] == [("HEAD", None), ("GET", None)]


# -------------------------------------------------------------------------------------------------- plain files
def _fetch(url: str, headers: dict[str, str] | None = None, method: str = "GET"):
    request = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def test_plain_file_with_range_etag_and_break(hub):
    data = bytes(range(256)) * 40
    hub.plain_file("/files/emb.bin", data)
    url = hub.url + "/files/emb.bin"
    etag = f'"{_sha256(data)}"'

    status, headers, body = _fetch(url)
    assert (status, body, headers["ETag"], headers["Content-Length"]) == (200, data, etag, str(len(data)))
    assert "X-Repo-Commit" not in headers
    status, headers, body = _fetch(url, method="HEAD")
    assert (status, body, headers["Content-Length"]) == (200, b"", str(len(data)))
    status, headers, body = _fetch(url, {"Range": "bytes=100-199"})
    assert (status, body, headers["Content-Range"]) == (206, data[100:200], f"bytes 100-199/{len(data)}")
    status, headers, body = _fetch(url, {"Range": "bytes=10000-"})
    assert (status, body, headers["Content-Range"]) == (206, data[10000:], f"bytes 10000-{len(data) - 1}/{len(data)}")
    status, _, body = _fetch(url, {"Range": "bytes=-16"})
    assert (status, body) == (206, data[-16:])
    status, headers, _ = _fetch(url, {"Range": f"bytes={len(data)}-"})
    assert (status, headers["Content-Range"]) == (416, f"bytes */{len(data)}")
    status, _, body = _fetch(url, {"If-None-Match": etag})
    assert (status, body) == (304, b"")
    assert _fetch(hub.url + "/files/other.bin")[0] == 404

    hub.break_once("/files/emb.bin", after_bytes=1000)
    with urllib.request.urlopen(url, timeout=10) as response, pytest.raises(IncompleteRead) as err:
        response.read()
    assert len(err.value.partial) == 1000
    assert _fetch(url)[2] == data  # only once
    assert hub.requests.count(("GET", "/files/emb.bin")) == 8


def test_stop_closes_the_port():
    hub = FakeHub().start()
    url = hub.url
    hub.add_file("owner/model", "a.txt", b"a")
    assert _fetch(url + "/owner/model/resolve/main/a.txt")[2] == b"a"
    hub.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url + "/owner/model/resolve/main/a.txt", timeout=5)
    hub.stop()  # idempotent


# ------------------------------------------------------------------------------------------------- in-process
def test_in_process_repoint(hub, tmp_path):
    import huggingface_hub
    from huggingface_hub import HfApi, constants, hf_hub_download, snapshot_download
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    hub.add_file("owner/model", "config.json", b"{}")
    hub.add_file("owner/model", "weights/model.bin", os.urandom(1000), lfs=True)
    hub.add_file("owner/gated", "x.bin", b"x")
    hub.gate("owner/gated")
    home = tmp_path / "home"
    endpoint_before = constants.ENDPOINT

    with repoint_huggingface_hub(hub.url, home):
        path = hf_hub_download("owner/model", "config.json")
        assert Path(path).is_relative_to(home / "hub") and Path(path).read_bytes() == b"{}"
        api = HfApi()
        assert api.list_repo_files("owner/model") == ["config.json", "weights/model.bin"]
        info = huggingface_hub.model_info("owner/model", files_metadata=True)  # module-level singleton HfApi
        assert info.sha == hub.commit_sha("owner/model")
        sizes = {s.rfilename: (s.size, s.lfs.sha256 if s.lfs else None) for s in info.siblings}
        assert sizes["weights/model.bin"][0] == 1000 and sizes["weights/model.bin"][1] is not None
        paths = api.get_paths_info("owner/model", ["weights", "config.json", "nope.txt"])
        kinds = sorted((type(p).__name__, p.path) for p in paths)
        assert kinds == [("RepoFile", "config.json"), ("RepoFolder", "weights")]
        assert snapshot_download("owner/model", allow_patterns=["weights/*"]).startswith(str(home / "hub"))
        assert api.file_exists("owner/model", "config.json") and not api.file_exists("owner/model", "nope.txt")
        with pytest.raises(GatedRepoError):
            hf_hub_download("owner/gated", "x.bin")
        assert Path(hf_hub_download("owner/gated", "x.bin", token=VALID_TOKEN)).read_bytes() == b"x"
        with pytest.raises(RepositoryNotFoundError):
            api.model_info("owner/nope")

    assert constants.ENDPOINT == endpoint_before
    assert not any(p.startswith("/api/agent-harnesses") for _, p in hub.requests)


def test_in_process_revisions_and_odd_names(hub, tmp_path):
    from huggingface_hub import HfApi, hf_hub_download

    hub.add_file("owner/model", "dir with space/ü.txt", b"pr", revision="refs/pr/1")
    hub.add_file("owner/model", "x.txt", b"v1", revision="v1.0")
    hub.add_file("legacy", "x.txt", b"no owner")

    with repoint_huggingface_hub(hub.url, tmp_path / "home"):
        assert Path(hf_hub_download("owner/model", "dir with space/ü.txt", revision="refs/pr/1")).read_bytes() == b"pr"
        assert Path(hf_hub_download("owner/model", "x.txt", revision="v1.0")).read_bytes() == b"v1"
        assert Path(hf_hub_download("legacy", "x.txt")).read_bytes() == b"no owner"
        commit = hub.commit_sha("owner/model", revision="v1.0")
        assert HfApi().list_repo_files("owner/model", revision=commit) == ["x.txt"]  # a commit SHA is a revision too
        assert HfApi().resolve_revision("owner/model", revision="v1.0").resolved == commit

    assert ("HEAD", "/owner/model/resolve/refs/pr/1/dir with space/ü.txt") in hub.requests  # paths are decoded
