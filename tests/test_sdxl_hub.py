"""The sdxl preset: listed with its size, fetched without an embedder, refused without one."""

from __future__ import annotations

from factories import tone, write_audio
from hub_server import FakeHub
from sdxl_factories import make_tiny_sdxl
from test_download import TINY_BEATS, run

SDXL_ID = "stabilityai/stable-diffusion-xl-base-1.0"


def test_download_list_shows_the_sdxl_preset_and_its_size(tmp_path):
    listed = run(tmp_path, None, "download", "--list")
    assert listed.returncode == 0, listed.stderr
    block = listed.stdout.split("sdxl", 1)[1]
    assert SDXL_ID in block and "~7.1 GB" in block  # the SDXL base folder, fp16 files
    assert "latent-consistency/lcm-lora-sdxl" in block and "madebyollin/taesdxl" in block
    assert "embedder" not in block.split("\n", 1)[1]  # no published embedder to list


def test_sdxl_without_an_embedder_is_a_one_line_error(tmp_path):
    sound = write_audio(tmp_path / "x.wav", tone(1.0))
    for command in (("generate", str(sound)), ("embed", str(sound))):
        done = run(tmp_path, None, *command, "--model", "sdxl", "--offline")
        assert done.returncode == 2, done.stderr
        lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and "Traceback" not in done.stderr
        assert ("model preset 'sdxl' has no embedder: none is published for "
                f"{SDXL_ID}; pass --embedder RUN") in lines[0]


def test_download_of_sdxl_fetches_the_model_and_audio_encoder_only(tmp_path):
    sdxl = make_tiny_sdxl(tmp_path / "tiny-xl")
    with FakeHub() as server:
        server.add_folder(SDXL_ID, sdxl, lfs=True)
        # (the preset's real BEATs has a known sha256; the tiny one is passed as a local file)
        done = run(tmp_path, server, "download", "--model", "sdxl", "--quiet",
                   "--audio-encoder", str(TINY_BEATS))
        assert server.errors == []
    assert done.returncode == 0, done.stderr
    assert "text_encoder_2" not in done.stdout  # a summary per component, not per file
    listed = run(tmp_path, None, "download", "--list").stdout.split("sdxl", 1)[1]
    sd_line = next(line for line in listed.splitlines() if line.strip().startswith("sd "))
    assert " cached" in sd_line and "not cached" not in sd_line
    snapshots = list((tmp_path / "hf" / "hub").glob("models--stabilityai--stable-diffusion-xl-"
                                                    "base-1.0/snapshots/*"))
    assert len(snapshots) == 1
    for part in ("text_encoder_2", "tokenizer_2", "unet", "vae"):
        assert (snapshots[0] / part).is_dir(), part
