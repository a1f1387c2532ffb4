"""Messages that name the folder at fault (issue 8 §7); the embedder's shapes and `download`'s
offline advice are pinned in test_embedder.py and test_download.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from audiotoken_cli.cli import app
from audiotoken_cli.errors import ModelError
from audiotoken_cli.render.diffusion import load_pipeline
from factories import make_paper_embedder, tone, write_audio

TINY_BEATS = Path(__file__).parent / "data" / "tiny_beats.pt"


@pytest.mark.parametrize("part", ["unet", "vae", "text_encoder", "tokenizer", "scheduler"])
def test_an_sd_folder_without_a_part_names_the_folder_and_the_part(tiny_sd, tmp_path, part):
    broken = tmp_path / "sd"
    shutil.copytree(tiny_sd, broken)
    shutil.rmtree(broken / part)
    with pytest.raises(ModelError) as caught:
        load_pipeline(broken, torch.device("cpu"), torch.float32)
    message = str(caught.value)
    assert message.startswith(f"{broken}: no {part}/ folder") and "\n" not in message


def test_generate_with_an_sd_folder_without_unet_is_one_line(tiny_sd, tmp_path):
    broken = tmp_path / "sd"
    shutil.copytree(tiny_sd, broken)
    shutil.rmtree(broken / "unet")
    sound = write_audio(tmp_path / "dog.wav", tone(1.0))
    embedder = make_paper_embedder(tmp_path / "emb.bin", input_dim=96, token_dim=32)
    result = CliRunner().invoke(app, ["generate", str(sound), "--sd", str(broken),
                                      "--audio-encoder", str(TINY_BEATS), "--embedder",
                                      str(embedder), "--device", "cpu", "--steps", "1"])
    assert result.exit_code == 1, result.output
    assert f"{broken}: no unet/ folder" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "dog_seed0.png").exists()
