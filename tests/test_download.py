"""`audiotoken download`, presets and first-use fetching, against a stand-in hub on 127.0.0.1.

The CLI runs in a subprocess with HF_ENDPOINT pointing at the stand-in, as a user's shell would run
it. The stand-in serves tiny models under the preset's real ids; nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from audiotoken_cli.hub import choose_files, parse_spec
from factories import tone, write_audio
from hub_server import VALID_TOKEN, FakeHub

DATA = Path(__file__).parent / "data"
TINY_BEATS = DATA / "tiny_beats.pt"
SD_ID = "CompVis/stable-diffusion-v1-4"
SPACE = "GuyYariv/AudioToken"
BEATS_PATH = "models/BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt"
EMBEDDER_PATH = "models/embedder_learned_embeds.bin"


@pytest.fixture
def hub(tiny):
    """The preset's real ids, served with tiny weights, plus files download must not fetch."""
    with FakeHub() as server:
        server.add_folder(SD_ID, tiny["sd"], lfs=True)
        unet = (tiny["sd"] / "unet" / "diffusion_pytorch_model.safetensors").read_bytes()
        server.add_file(SD_ID, "sd-v1-4.ckpt", b"a 4 GB single-file checkpoint" * 100)
        server.add_file(SD_ID, "unet/diffusion_pytorch_model.bin", unet[:1000])  # a duplicate
        server.add_file(SD_ID, "unet/diffusion_flax_model.msgpack", b"flax")
        server.add_file(SPACE, BEATS_PATH, TINY_BEATS.read_bytes(), repo_type="space", lfs=True)
        server.add_file(SPACE, EMBEDDER_PATH, tiny["embedder"].read_bytes(), repo_type="space")
        yield server
        assert server.errors == []


def run(home: Path, hub: FakeHub | None, *args: str, env: dict | None = None, cwd=None):
    """The installed command, as a user runs it, with its own HOME-like folders."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "XDG_"))}
    environment.update({"XDG_CACHE_HOME": str(home / "cache"),
                        "XDG_CONFIG_HOME": str(home / "config"), "HF_HOME": str(home / "hf"),
                        "NO_PROXY": "127.0.0.1", "COLUMNS": "200"})
    if hub is not None:
        environment["HF_ENDPOINT"] = hub.url
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", "audiotoken_cli", *args], capture_output=True,
                          text=True, env=environment, cwd=cwd, timeout=300)


def user_preset(home: Path, text: str) -> None:
    folder = home / "config" / "audiotoken"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "presets.toml").write_text(text)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def gets(hub: FakeHub) -> list[str]:
    """File contents served (LFS files come from the stand-in CDN, named by hash)."""
    return [path for method, path in hub.requests
            if method == "GET" and ("/resolve/" in path or path.startswith("/lfs/"))]


def asked_for(hub: FakeHub) -> str:
    """Every repository file asked about (HEAD or GET), by name."""
    return " ".join(path for _, path in hub.requests if "/resolve/" in path)


TEST_PRESET = f"""
[tiny]
description = "the paper's components, with the tiny BEATs' checksum"
sd = "{SD_ID}"
audio_encoder = "spaces/{SPACE}/{BEATS_PATH}"
audio_encoder_sha256 = "{sha256(TINY_BEATS)}"
embedder = "spaces/{SPACE}/{EMBEDDER_PATH}"
"""


def test_the_vggsound_preset_refuses_a_beats_file_with_the_wrong_checksum(hub, tmp_path):
    done = run(tmp_path, hub, "download")
    assert done.returncode == 1
    assert "checksum mismatch for the audio encoder" in done.stderr
    assert "removed from the cache" in done.stderr
    cached = list((tmp_path / "hf" / "hub").rglob("BEATs_iter3*"))
    assert all(not p.exists() for p in cached)  # neither the snapshot link nor its blob


def test_first_download_fetches_only_what_is_needed_then_nothing(hub, tmp_path, tiny):
    user_preset(tmp_path, TEST_PRESET)
    first = run(tmp_path, hub, "download", "--model", "tiny")
    assert first.returncode == 0, first.stderr
    assert "tiny: ready" in first.stdout
    fetched = asked_for(hub)
    assert "model_index.json" in fetched and "unet/diffusion_pytorch_model.safetensors" in fetched
    for unwanted in ("sd-v1-4.ckpt", "diffusion_pytorch_model.bin", "flax"):
        assert unwanted not in fetched
    # The pickled weights got safetensors copies for fast loads.
    copies = sorted(p.name.split("-")[0] for p in (tmp_path / "cache").rglob("*.safetensors"))
    assert copies == ["beats", "embedder"]

    hub.clear_log()
    second = run(tmp_path, hub, "download", "--model", "tiny")
    assert second.returncode == 0, second.stderr
    assert gets(hub) == []


def test_download_list_shows_presets_sizes_and_cache_state(hub, tmp_path):
    user_preset(tmp_path, TEST_PRESET)
    before = run(tmp_path, None, "download", "--list")
    assert before.returncode == 0, before.stderr
    assert "vggsound" in before.stdout and "tiny" in before.stdout
    assert "363.1 MB" in before.stdout  # the paper's BEATs, size known in advance
    assert "cached" not in before.stdout.replace("not cached", "")
    run(tmp_path, hub, "download", "--model", "tiny")
    after = run(tmp_path, None, "download", "--list")
    tiny_block = after.stdout.split("tiny", 1)[1]
    assert tiny_block.count("not cached") == 0 and tiny_block.count("cached") == 3


def test_newcomer_generates_with_no_component_options_then_offline(hub, tmp_path, tiny):
    sound = write_audio(tmp_path / "x.wav", tone(2.0))
    args = ("generate", str(sound), "--audio-encoder", str(TINY_BEATS), "-W", "64", "-H", "64",
            "--steps", "2", "--device", "cpu", "--seed", "5")
    first = run(tmp_path, hub, *args)
    assert first.returncode == 0, first.stderr
    assert "note: downloading" in first.stderr
    assert (tmp_path / "x_seed5.png").exists()

    hub.stop()
    (tmp_path / "x_seed5.png").unlink()
    again = run(tmp_path, None, *args, env={"HF_HUB_OFFLINE": "1",
                                            "HF_ENDPOINT": "http://127.0.0.1:9"})
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "x_seed5.png").exists()


def test_offline_without_a_cache_names_what_is_missing(tmp_path):
    sound = write_audio(tmp_path / "x.wav", tone(2.0))
    done = run(tmp_path, None, "generate", str(sound), "--offline", "--device", "cpu")
    assert done.returncode == 1
    assert f"{SD_ID}: the sd is not in the cache" in done.stderr
    assert "pass --sd PATH" in done.stderr and "Traceback" not in done.stderr


def test_no_network_is_one_clear_line_that_does_not_send_users_in_circles(tmp_path):
    done = run(tmp_path, None, "download", env={"HF_ENDPOINT": "http://127.0.0.1:9"})
    assert done.returncode == 1
    assert "cannot reach 127.0.0.1" in done.stderr
    # What a first run can do instead, and what a download costs.
    assert "--audio-encoder" in done.stderr and "HF_ENDPOINT" in done.stderr
    assert "about 5.9 GB" in done.stderr
    assert "HF_ENDPOINT" in done.stderr and "copy the files onto this machine" in done.stderr
    assert "run `audiotoken download`" not in done.stderr and "Traceback" not in done.stderr


def test_download_while_offline_says_what_to_do_instead(tmp_path):
    done = run(tmp_path, None, "download", env={"HF_HUB_OFFLINE": "1"})
    assert done.returncode == 1
    assert "not in the cache and downloads are off" in done.stderr
    assert "unset HF_HUB_OFFLINE" in done.stderr and "HF_ENDPOINT" in done.stderr
    assert "pass --audio-encoder PATH" in done.stderr  # the first component download fetches
    assert "run `audiotoken download`" not in done.stderr
    assert len([line for line in done.stderr.splitlines() if line.strip()]) == 1


def test_gated_repo_explains_how_to_log_in(hub, tmp_path, tiny):
    hub.add_file("team/private-embedder", "emb.bin", tiny["embedder"].read_bytes())
    hub.gate("team/private-embedder")
    sound = write_audio(tmp_path / "x.wav", tone(2.0))
    args = ("embed", str(sound), "--audio-encoder", str(TINY_BEATS), "--embedder",
            "team/private-embedder/emb.bin", "--device", "cpu")
    refused = run(tmp_path, hub, *args)
    assert refused.returncode == 1
    assert "gated or private" in refused.stderr and "HF_TOKEN" in refused.stderr
    allowed = run(tmp_path, hub, *args, env={"HF_TOKEN": VALID_TOKEN})
    assert allowed.returncode == 0, allowed.stderr
    assert (tmp_path / "x.safetensors").exists()


def test_missing_repo_and_file_name_the_component(hub, tmp_path):
    sound = write_audio(tmp_path / "x.wav", tone(2.0))
    base = ("embed", str(sound), "--audio-encoder", str(TINY_BEATS), "--device", "cpu")
    no_repo = run(tmp_path, hub, *base, "--embedder", "nobody/nothing/emb.bin")
    assert no_repo.returncode == 1
    assert "nobody/nothing, file emb.bin (--embedder): no such repository" in no_repo.stderr
    no_file = run(tmp_path, hub, *base, "--embedder", f"spaces/{SPACE}/models/missing.bin")
    assert no_file.returncode == 1
    assert "no file 'models/missing.bin'" in no_file.stderr


def test_url_download_resumes_after_an_interruption_and_is_verified(hub, tmp_path, tiny):
    data = tiny["embedder"].read_bytes()
    hub.plain_file("/files/emb.bin", data)
    hub.break_once("/files/emb.bin", after_bytes=len(data) // 2)
    url = f"{hub.url}/files/emb.bin"
    user_preset(tmp_path, f"""
[viaurl]
sd = "{SD_ID}"
audio_encoder = "{TINY_BEATS}"
embedder = "{url}"
embedder_sha256 = "{hashlib.sha256(data).hexdigest()}"
""")
    broken = run(tmp_path, hub, "download", "--model", "viaurl")
    assert broken.returncode == 1 and "error:" in broken.stderr
    partial = list((tmp_path / "cache").rglob("*.partial"))
    assert len(partial) == 1 and 0 < partial[0].stat().st_size < len(data)
    assert not [p for p in (tmp_path / "cache").rglob("emb.bin")]  # never taken for whole

    kept = partial[0].stat().st_size
    hub.clear_log()
    resumed = run(tmp_path, hub, "download", "--model", "viaurl")
    assert resumed.returncode == 0, resumed.stderr
    ranges = [r.headers.get("range") for r in hub.log if r.path == "/files/emb.bin"]
    assert ranges == [f"bytes={kept}-"]  # one request, for the rest only
    whole = next((tmp_path / "cache").rglob("emb.bin"))
    assert whole.read_bytes() == data


def test_url_checksum_mismatch_is_removed(hub, tmp_path):
    hub.plain_file("/files/beats.pt", TINY_BEATS.read_bytes())
    user_preset(tmp_path, f"""
[bad]
sd = "{SD_ID}"
audio_encoder = "{hub.url}/files/beats.pt"
audio_encoder_sha256 = "{'0' * 64}"
embedder = "spaces/{SPACE}/{EMBEDDER_PATH}"
""")
    done = run(tmp_path, hub, "download", "--model", "bad")
    assert done.returncode == 1 and "checksum mismatch" in done.stderr
    assert not list((tmp_path / "cache").rglob("beats.pt"))


def test_a_user_preset_drives_generate(hub, tmp_path):
    user_preset(tmp_path, TEST_PRESET)
    sound = write_audio(tmp_path / "x.wav", tone(2.0))
    done = run(tmp_path, hub, "generate", str(sound), "--model", "tiny", "-W", "64", "-H", "64",
               "--steps", "2", "--device", "cpu", "--seed", "1", "--quiet")
    assert done.returncode == 0, done.stderr
    assert "note:" not in done.stderr  # --quiet
    assert (tmp_path / "x_seed1.png").exists()


def test_unknown_preset_lists_the_choices(tmp_path):
    done = run(tmp_path, None, "download", "--model", "nope")
    assert done.returncode == 2 and "choose one of vggsound" in done.stderr


# ---------------------------------------------------------------------------------------------
# The syntax of component specs and the choice of files, without a server.


@pytest.mark.parametrize("text, kind, repo, repo_type, revision, path", [
    ("CompVis/stable-diffusion-v1-4", "hub", "CompVis/stable-diffusion-v1-4", "model", None, ""),
    ("CompVis/stable-diffusion-v1-4@fp16", "hub", "CompVis/stable-diffusion-v1-4", "model",
     "fp16", ""),
    ("spaces/GuyYariv/AudioToken/models/x.pt", "hub", "GuyYariv/AudioToken", "space", None,
     "models/x.pt"),
    ("spaces/GuyYariv/AudioToken@abc123/models/x.pt", "hub", "GuyYariv/AudioToken", "space",
     "abc123", "models/x.pt"),
    ("team/embedders@v2/birds", "hub", "team/embedders", "model", "v2", "birds"),
    ("https://example.org/files/emb.bin", "url", "", "model", None, ""),
    ("./local/emb.bin", "local", "", "model", None, ""),
])
def test_spec_syntax(text, kind, repo, repo_type, revision, path):
    spec = parse_spec(text)
    assert (spec.kind, spec.repo_id, spec.repo_type, spec.revision, spec.path) == \
        (kind, repo, repo_type, revision, path)


def test_choose_files_prefers_one_fp16_safetensors_copy():
    files = ["model_index.json", "sd-v1-4.ckpt", "scheduler/scheduler_config.json",
             "tokenizer/vocab.json", "tokenizer/merges.txt", "unet/config.json",
             "unet/diffusion_pytorch_model.bin", "unet/diffusion_pytorch_model.safetensors",
             "unet/diffusion_pytorch_model.fp16.safetensors", "unet/diffusion_flax_model.msgpack",
             "vae/config.json", "vae/diffusion_pytorch_model.fp16.safetensors",
             "vae/diffusion_pytorch_model.safetensors", "text_encoder/config.json",
             "text_encoder/model.fp16.safetensors", "text_encoder/model.safetensors",
             "text_encoder/pytorch_model.bin"]
    chosen = choose_files(files, "sd")
    assert chosen == sorted(["model_index.json", "scheduler/scheduler_config.json",
                             "tokenizer/vocab.json", "tokenizer/merges.txt", "unet/config.json",
                             "unet/diffusion_pytorch_model.fp16.safetensors", "vae/config.json",
                             "vae/diffusion_pytorch_model.fp16.safetensors",
                             "text_encoder/config.json", "text_encoder/model.fp16.safetensors"])
    # Without fp16 copies everywhere, the full-precision safetensors, never the .bin.
    no_fp16 = [f for f in files if f != "text_encoder/model.fp16.safetensors"]
    assert "unet/diffusion_pytorch_model.safetensors" in choose_files(no_fp16, "sd")
    assert not [f for f in choose_files(no_fp16, "sd") if f.endswith((".bin", ".ckpt"))]


def test_a_download_killed_mid_transfer_leaves_nothing_behind_the_next_run(hub, tmp_path):
    import signal

    user_preset(tmp_path, TEST_PRESET)
    stall = hub.stall_once(BEATS_PATH, after_bytes=4096)
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "XDG_"))}
    environment.update({"XDG_CACHE_HOME": str(tmp_path / "cache"), "HF_HOME": str(tmp_path / "hf"),
                        "XDG_CONFIG_HOME": str(tmp_path / "config"), "HF_ENDPOINT": hub.url,
                        "NO_PROXY": "127.0.0.1"})
    killed = subprocess.Popen([sys.executable, "-m", "audiotoken_cli", "download", "--model", "tiny"],
                              env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert stall.reached.wait(120), "the download never reached the stall"
        left = lambda: list((tmp_path / "hf").rglob("*.incomplete"))  # noqa: E731
        for _ in range(100):  # the client may still be writing what it received
            if left():
                break
            stall.reached.wait(0.05)
        killed.send_signal(signal.SIGKILL)
        assert killed.wait(30) == -signal.SIGKILL
    finally:
        stall.release()
        killed.kill()
    assert len(left()) == 1  # what a killed huggingface_hub leaves
    again = run(tmp_path, hub, "download", "--model", "tiny")
    assert again.returncode == 0, again.stderr
    assert left() == []
    assert "removed 1 unfinished download(s) of Space GuyYariv/AudioToken" in " ".join(again.stderr.split())
    beats = next((tmp_path / "hf").rglob("BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt"))
    assert sha256(beats) == sha256(TINY_BEATS)
