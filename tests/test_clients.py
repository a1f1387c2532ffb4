"""What real clients read from our outputs: A1111's parser on the PNG ``parameters`` chunk, and
an embedding name that ComfyUI's ``embedding:NAME`` can say.

``data/a1111_reference.json`` holds A1111's own ``parse_generation_parameters`` output for the
chunks our writer makes (``data/make_a1111_reference.py``, run against a stable-diffusion-webui
checkout; A1111's code is not in this repository). With ``AUDIOTOKEN_A1111_INFOTEXT`` pointing at
webui's ``modules/infotext_utils.py``, the live tests run A1111's parser itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from a1111_reader import a1111_parser, infotext_file
from factories import make_paper_embedder, make_tiny_sd, tone, write_audio
from PIL import Image
from safetensors.torch import load_file
from typer.testing import CliRunner

from audiotoken_cli.cli import app
from audiotoken_cli.pipeline.metadata import a1111_parameters, save_png
from audiotoken_cli.render.diffusion import SAMPLER_NAMES

DATA = Path(__file__).parent / "data"
TINY_BEATS = DATA / "tiny_beats.pt"
REFERENCE = json.loads((DATA / "a1111_reference.json").read_text(encoding="utf-8"))
CASES = {case["name"]: case for case in REFERENCE["cases"]}
runner = CliRunner()
live = pytest.mark.skipif(infotext_file() is None, reason="AUDIOTOKEN_A1111_INFOTEXT is not set")
# A1111's prompt_parser.py imports lark; the live tests need it beside the webui files.


def fields_we_wrote(info: dict) -> dict[str, str]:
    """Every field of our chunk, as A1111's parser names and returns it (strings)."""
    fields = {"Prompt": info["prompt"], "Negative prompt": info["negative_prompt"],
              "Steps": str(info["steps"]), "Sampler": SAMPLER_NAMES[info["scheduler"]],
              "CFG scale": str(info["guidance"]), "Seed": str(info["seed"]),
              "Size-1": str(info["width"]), "Size-2": str(info["height"]),
              "Model": Path(info["sd"]).name, "Audio": info["audio_file"],
              "Version": f"audiotoken-cli {info['version']}"}
    if info["sd_unet_sha256"]:
        fields["Model hash"] = info["sd_unet_sha256"][:10]
    return fields


def a1111_defaults() -> set[str]:
    """The keys A1111's parser adds on its own: every other key came from our chunk."""
    plain = CASES["plain"]
    return set(plain["a1111"]) - set(fields_we_wrote(plain["info"]))


def test_the_reference_covers_the_hostile_values():
    assert len(REFERENCE["webui_commit"]) == 40 and len(REFERENCE["infotext_utils_blob"]) == 40
    values = [case["info"]["audio_file"] + case["info"]["sd"] for case in CASES.values()]
    for mark in (",", ":", '"', "\n", "\\"):
        assert any(mark in value for value in values), mark


@pytest.mark.parametrize("name", sorted(CASES))
def test_our_writer_makes_the_chunk_a1111_read(name):
    case = CASES[name]
    assert a1111_parameters(case["info"]) == case["chunk"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_a1111_read_back_every_field_and_nothing_bogus(name):
    case = CASES[name]
    parsed, expected = case["a1111"], fields_we_wrote(case["info"])
    assert {key: parsed.get(key) for key in expected} == expected
    assert set(parsed) - set(expected) <= a1111_defaults()  # no field split off another


def test_the_png_carries_the_chunk_byte_for_byte(tmp_path):
    case = CASES["commas and colons"]
    target = tmp_path / "x.png"
    save_png(target, Image.new("RGB", (8, 8)), case["info"])
    with Image.open(target) as image:
        assert image.text["parameters"] == case["chunk"]


@live
@pytest.mark.parametrize("name", sorted(CASES))
def test_a1111s_own_parser_live(name):
    pytest.importorskip("lark")
    case = CASES[name]
    with a1111_parser(infotext_file()) as parse:
        assert parse(a1111_parameters(case["info"])) == case["a1111"]


@live
def test_a1111s_own_parser_reads_a_generated_png(tmp_path):
    pytest.importorskip("lark")
    folder = tmp_path / "a, b: c"
    folder.mkdir()
    source = write_audio(folder / 'dog, barking: "loud".wav', tone(1.0, seed=2))
    sd = make_tiny_sd(folder / "sd, v1: tiny", text_width=32)
    embedder = make_paper_embedder(tmp_path / "emb.bin", input_dim=96, token_dim=32)
    result = runner.invoke(app, ["generate", str(source), "-o", str(tmp_path / "out"), "--sd", str(sd),
                                 "--audio-encoder", str(TINY_BEATS), "--embedder", str(embedder),
                                 "--scheduler", "pndm", "--steps", "1", "-W", "32", "-H", "32",
                                 "--seed", "5", "--prompt", "a photo of <*>, at dusk",
                                 "--device", "cpu", "--dtype", "float32"])
    assert result.exit_code == 0, result.output
    [png] = (tmp_path / "out").iterdir()
    with Image.open(png) as image, a1111_parser(infotext_file()) as parse:
        parsed = parse(image.text["parameters"])
        info = json.loads(image.text["audiotoken"])
    assert {key: parsed.get(key) for key in fields_we_wrote(info)} == fields_we_wrote(info)
    assert parsed["Audio"] == source.name and parsed["Model"] == "sd, v1: tiny"


@pytest.fixture(scope="module")
def embedder(tmp_path_factory) -> Path:
    return make_paper_embedder(tmp_path_factory.mktemp("emb") / "emb.bin", input_dim=96,
                               token_dim=32)


def embed(embedder, *args):
    return runner.invoke(app, ["embed", *map(str, args), "--audio-encoder", str(TINY_BEATS),
                               "--embedder", str(embedder), "--device", "cpu"])


def test_spaces_in_the_stem_become_underscores_and_the_name_is_reported(embedder, tmp_path):
    source = write_audio(tmp_path / "my  dog\tbarks.wav", tone(1.0, seed=1))
    result = embed(embedder, source, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["my_dog_barks.safetensors"]
    assert "embedding name my_dog_barks" in " ".join(result.output.split())
    token = load_file(str(tmp_path / "out" / "my_dog_barks.safetensors"))
    assert list(token) == ["emb_params"] and token["emb_params"].shape == (1, 32)


def test_name_chooses_the_embedding_name(embedder, tmp_path):
    source = write_audio(tmp_path / "recording 3.wav", tone(1.0, seed=1))
    result = embed(embedder, source, "--name", "dog")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "dog.safetensors").is_file() and not (tmp_path / "recording_3.safetensors").exists()


@pytest.mark.parametrize("bad", ["my dog", "", "a/b", ".."])
def test_a_name_comfyui_cannot_say_is_a_usage_error(embedder, tmp_path, bad):
    source = write_audio(tmp_path / "a.wav", tone(1.0, seed=1))
    result = embed(embedder, source, "--name", bad)
    assert result.exit_code == 2 and "--name" in result.output and "Traceback" not in result.output
    assert not list(tmp_path.glob("*.safetensors"))


def test_one_name_for_two_inputs_fails_the_second_alone(embedder, tmp_path):
    first = write_audio(tmp_path / "a.wav", tone(1.0, seed=1))
    second = write_audio(tmp_path / "b.wav", tone(1.0, seed=2))
    result = embed(embedder, first, second, "--name", "dog", "-o", tmp_path / "out")
    assert result.exit_code == 1
    assert f"{second}: its output dog.safetensors would overwrite the one for {first}" in \
        " ".join(result.output.split())
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["dog.safetensors"]
