"""The embedder: parity with the paper's code, its file format, our own format, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from audiotoken_cli.config import EmbedderConfig, EmbedderInfo
from audiotoken_cli.models.embedder import PAPER_KEYS, AudioEmbedder, load_embedder, save_embedder
from audiotoken_cli.errors import ModelError
from factories import make_paper_embedder

DATA = Path(__file__).parent / "data"


def test_paper_weights_give_the_reference_codes_tokens():
    # tiny_paper_embedder.bin was saved by the reference FGAEmbedder (input 96, token 32) and the
    # tokens below computed by it with its inference-time dropout switched off.
    loaded = load_embedder(DATA / "tiny_paper_embedder.bin")
    reference = load_file(DATA / "tiny_paper_embedder_reference.safetensors")
    with torch.no_grad():
        tokens = loaded.model(reference["features"])
    assert loaded.model.config == EmbedderConfig(input_dim=96, hidden_dim=96, token_dim=32)
    error = (tokens - reference["tokens"]).abs().max() / reference["tokens"].abs().max()
    assert error < 1e-5


def test_paper_file_has_exactly_the_papers_key_names():
    state = torch.load(DATA / "tiny_paper_embedder.bin", weights_only=True)
    assert set(state) == set(PAPER_KEYS.values())
    assert state["fga.un_models.0.embed.weight"].shape == (32, 32, 1)
    assert state["fga.reduce_potentials.0.weight"].shape == (1, 2, 1)


def test_inference_is_deterministic_and_batch_independent():
    model = load_embedder(DATA / "tiny_paper_embedder.bin").model
    features = torch.randn(4, 25, 96)
    with torch.no_grad():
        first, second = model(features), model(features)
        alone = model(features[2:3])
    assert torch.equal(first, second)
    torch.testing.assert_close(alone[0], first[2], rtol=1e-5, atol=1e-6)


def test_pairwise_term_equals_mean_of_the_cosine_matrix():
    pool = AudioEmbedder(EmbedderConfig(8, 8, 6)).pool
    h = torch.randn(2, 7, 6)
    x = torch.nn.functional.normalize(pool.pair_x(h), dim=-1)
    y = torch.nn.functional.normalize(pool.pair_y(h), dim=-1)
    matrix = x @ y.transpose(1, 2)  # (B, N, N) cosines, the reference's form
    torch.testing.assert_close(pool._mean_cosine(h)[..., 0], matrix.mean(dim=2))


def test_own_format_round_trip(tmp_path):
    source = load_embedder(make_paper_embedder(tmp_path / "p.bin", input_dim=24, token_dim=16))
    info = EmbedderInfo(audio_encoder="beats-tiny", prompt="a sketch of <*>", source="unit test",
                        extra={"steps": 3})
    folder = save_embedder(source.model, tmp_path / "run", info)
    meta = json.loads((folder / "config.json").read_text())
    assert meta["sizes"] == {"input_dim": 24, "hidden_dim": 24, "token_dim": 16}
    assert meta["text_width"] == 16 and meta["prompt"] == "a sketch of <*>"
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "embedder.safetensors"]

    for spec in (folder, folder / "embedder.safetensors"):
        again = load_embedder(spec)
        assert again.info.prompt == "a sketch of <*>"
        assert again.info.audio_encoder == "beats-tiny"
        assert again.info.extra == {"steps": 3}
        features = torch.randn(2, 5, 24)
        with torch.no_grad():
            assert torch.equal(again.model(features), source.model(features))


@pytest.mark.parametrize("problem, expected", [
    ("missing", "embedder not found"),
    ("garbage", "not a readable torch state dict"),
    ("not_a_dict", "expected a state dict"),
    ("missing_key", "missing fga.reduce_potentials.0.weight"),
    ("extra_key", "unexpected keys in embedder: extra.weight"),
    ("empty_folder", "no embedder.safetensors"),
])
def test_bad_embedder_files_name_the_file_and_the_problem(tmp_path, problem, expected):
    path = tmp_path / "emb.bin"
    if problem == "garbage":
        path.write_bytes(b"\x00not a pickle at all")
    elif problem == "not_a_dict":
        torch.save([torch.zeros(2)], path)
    elif problem in ("missing_key", "extra_key"):
        make_paper_embedder(path, 12, 8)
        state = torch.load(path, weights_only=True)
        if problem == "missing_key":
            del state["fga.reduce_potentials.0.weight"]
        else:
            state["extra.weight"] = torch.zeros(1)
        torch.save(state, path)
    elif problem == "empty_folder":
        path = tmp_path / "run"
        path.mkdir()
    with pytest.raises(ModelError) as caught:
        load_embedder(path)
    message = str(caught.value)
    assert message.startswith(str(path)) and expected in message
    assert "\n" not in message


def test_weights_that_do_not_fit_the_recorded_sizes(tmp_path):
    source = load_embedder(make_paper_embedder(tmp_path / "p.bin", 24, 16))
    folder = save_embedder(source.model, tmp_path / "run", EmbedderInfo())
    meta = json.loads((folder / "config.json").read_text())
    meta["sizes"]["token_dim"] = 32
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError) as caught:
        load_embedder(folder)
    assert str(caught.value) == (f"{folder / 'embedder.safetensors'}: tensor 'fc2.weight' has "
                                 "shape (16, 24) but the embedder's sizes need (32, 24)")


@pytest.mark.parametrize("key, shape, expected", [
    ("fga.pp_models.0.embed_X.weight", (12, 10, 1),
     "tensor 'pool.pair_x.weight' has shape (12, 10) but the embedder's sizes need (8, 8)"),
    ("fga.un_models.0.embed.weight", (12, 12, 3),
     "tensor 'pool.unary_embed.weight' has shape (12, 12, 3) but the embedder's sizes need (8, 8)"),
    ("fc2.bias", (5,), "tensor 'fc2.bias' has shape (5,) but the embedder's sizes need (8,)"),
    ("fc1.weight", (12,), "tensor 'fc1.weight' has shape (12,); an embedder's linear weights"),
])
def test_paper_weights_of_the_wrong_shape_name_the_key_and_both_shapes(tmp_path, key, shape,
                                                                       expected):
    path = make_paper_embedder(tmp_path / "emb.bin", 12, 8)
    state = torch.load(path, weights_only=True)
    state[key] = torch.zeros(shape)
    torch.save(state, path)
    with pytest.raises(ModelError) as caught:
        load_embedder(path)
    assert str(caught.value).startswith(f"{path}: {expected}")


def test_paper_loader_refuses_to_run_pickled_code(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    path = tmp_path / "evil.bin"
    torch.save({"fc1.weight": Payload()}, path)
    with pytest.raises(ModelError, match="not a readable torch state dict"):
        load_embedder(path)


def test_an_sdxl_embedder_records_one_width_per_text_encoder(tmp_path):
    """Sizes saved with the weights and rebuilt from them: (768, 1280)-style per-encoder widths
    survive the round trip, and the token is their concatenation."""
    config = EmbedderConfig(input_dim=24, hidden_dim=24, token_dim=80, encoder_dims=(32, 48))
    torch.manual_seed(0)
    model = AudioEmbedder(config).eval()
    folder = save_embedder(model, tmp_path / "run", EmbedderInfo(source="unit test"))
    meta = json.loads((folder / "config.json").read_text())
    assert meta["sizes"] == {"input_dim": 24, "hidden_dim": 24, "token_dim": 80,
                             "encoder_dims": [32, 48]}
    loaded = load_embedder(folder)
    assert loaded.model.config == config and loaded.model.config.encoder_dims == (32, 48)
    features = torch.randn(2, 7, 24)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(features), model(features), rtol=0, atol=0)
    assert loaded.model(features).shape == (2, 80)
    meta["sizes"]["encoder_dims"] = [32, 40]
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match=r"config.json: bad or missing 'sizes' \(encoder_dims "
                                         r"\[32, 40\] do not add up to token_dim 80\)"):
        load_embedder(folder)
