"""BEATs: parity with the official implementation, and strict loading of its checkpoint format.

tests/data/tiny_beats.pt is a 12-layer, 32-wide BEATs built and randomised with Microsoft's code
(AudioToken's copy), saved as the official code saves checkpoints; its reference outputs
(`extract_features(...)[1]`, the layers 4/8/12 concatenation) on fixed normalised fbanks are in
tests/data/tiny_beats_reference.safetensors.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from factories import TINY_BEATS_CFG, make_tiny_beats_checkpoint
from safetensors.torch import load_file

from audiotoken_cli.models.beats import BEATs, BEATsConfig, load_beats, load_beats_state
from audiotoken_cli.errors import ModelError

DATA = Path(__file__).parent / "data"
TINY = DATA / "tiny_beats.pt"


@pytest.fixture(scope="module")
def reference() -> dict[str, torch.Tensor]:
    return load_file(str(DATA / "tiny_beats_reference.safetensors"))


@pytest.fixture(scope="module")
def official() -> dict:
    return torch.load(TINY, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def model() -> BEATs:
    return load_beats(TINY)


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got.float() - want).abs().max() / want.abs().max()).item()


@pytest.mark.parametrize("name", ["", "_ragged"])
def test_matches_official_outputs(model, reference, name):
    # "_ragged" has T = 170: the 10 frames past the last whole patch must be dropped.
    with torch.no_grad():
        got = model(reference[f"fbank{name}"])
    want = reference[f"layers_cat{name}"]
    assert got.shape == want.shape
    assert relative_error(got, want) <= 1e-4
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4)


def test_output_shape_and_frozen(model):
    fbank = torch.zeros(3, 16 * 5, 128)
    assert model(fbank).shape == (3, 5 * 8, model.cfg.output_dim)
    assert model.cfg.output_dim == 3 * TINY_BEATS_CFG["encoder_embed_dim"]
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())


def test_batch_equals_items_alone(model, reference):
    fbank = reference["fbank"]
    with torch.no_grad():
        together = model(fbank)
        alone = torch.cat([model(fbank[i:i + 1]) for i in range(len(fbank))])
    torch.testing.assert_close(together, alone, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("dtype, tolerance", [(torch.float16, 1e-2), (torch.bfloat16, 5e-2)])
def test_half_precision_stays_close(reference, dtype, tolerance):
    model = load_beats(TINY, dtype=dtype)
    with torch.no_grad():
        got = model(reference["fbank"])  # float32 input is cast to the model's dtype
    assert got.dtype == dtype
    assert torch.isfinite(got).all()
    assert relative_error(got, reference["layers_cat"]) <= tolerance


def test_forward_rejects_bad_shapes(model):
    with pytest.raises(ValueError):
        model(torch.zeros(2, 128))
    with pytest.raises(ValueError):
        model(torch.zeros(1, 8, 128))  # shorter than one patch


def test_load_beats_state_equals_load_beats(model, official, reference):
    again = load_beats_state(official["cfg"], official["model"])
    with torch.no_grad():
        torch.testing.assert_close(again(reference["fbank"]), model(reference["fbank"]))


def test_predictor_keys_are_optional(tmp_path, official, model, reference):
    assert any(k.startswith("predictor.") for k in official["model"])
    state = {k: v for k, v in official["model"].items() if not k.startswith("predictor.")}
    path = tmp_path / "no_predictor.pt"
    torch.save({"cfg": official["cfg"], "model": state}, path)
    with torch.no_grad():
        torch.testing.assert_close(load_beats(path)(reference["fbank"]), model(reference["fbank"]))


def test_factory_matches_official_format(tmp_path, official):
    ours = torch.load(make_tiny_beats_checkpoint(tmp_path / "t.pt"), weights_only=True)
    assert ours["cfg"] == official["cfg"]
    assert ours["model"].keys() == official["model"].keys()
    for key, value in official["model"].items():
        assert ours["model"][key].shape == value.shape, key


@pytest.mark.parametrize("overrides", [
    {},
    {"conv_bias": True},
    {"gru_rel_pos": False},
    {"relative_position_embedding": False, "gru_rel_pos": False},
    {"embed_dim": 32},  # equal to encoder_embed_dim: no post_extract_proj
    {"deep_norm": False, "finetuned_model": False, "encoder_layers": 13},
])
def test_factory_variants_load_and_run(tmp_path, overrides):
    model = load_beats(make_tiny_beats_checkpoint(tmp_path / "t.pt", seed=3, **overrides))
    with torch.no_grad():
        out = model(torch.randn(2, 40, 128))
    assert out.shape == (2, 2 * 8, 96)
    assert torch.isfinite(out).all()


def test_config_from_official_cfg(official):
    cfg = BEATsConfig.from_dict(official["cfg"])
    assert cfg.encoder_embed_dim == 32 and cfg.head_dim == 8
    assert BEATsConfig.from_dict(cfg.to_dict()) == cfg


# --- strict loading: every failure is a one-line ModelError that starts with the file path ---

def _save(path: Path, checkpoint: object) -> Path:
    torch.save(checkpoint, path)
    return path


def _edited(official: dict, *, cfg: dict | None = None, edit=None) -> dict:
    state = dict(official["model"])
    if edit is not None:
        edit(state)
    return {"cfg": {**official["cfg"], **(cfg or {})}, "model": state}


def _missing(state):
    del state["encoder.layers.3.fc1.weight"]


def _unexpected(state):
    state["encoder.layers.12.fc1.weight"] = torch.zeros(48, 32)


def _wrong_shape(state):
    state["encoder.pos_conv.0.weight_g"] = torch.ones(1, 1, 15)


def _not_tensor(state):
    state["layer_norm.bias"] = [0.0] * 24


def _different_tables(state):
    key = "encoder.layers.5.self_attn.relative_attention_bias.weight"
    state[key] = state[key] + 1


@pytest.mark.parametrize("make, words", [
    (lambda p, o: p / "absent.pt", "no such file"),
    (lambda p, o: p, "not a file"),
    (lambda p, o: _write_bytes(p / "junk.pt", b"not a checkpoint at all"), "not a readable"),
    (lambda p, o: _truncate(_save(p / "cut.pt", o)), "not a readable"),
    (lambda p, o: _save(p / "list.pt", [1, 2]), "not a BEATs checkpoint"),
    (lambda p, o: _save(p / "bare.pt", o["model"]), "not a BEATs checkpoint"),
    (lambda p, o: _save(p / "m.pt", _edited(o, edit=_missing)), "encoder.layers.3.fc1.weight"),
    (lambda p, o: _save(p / "u.pt", _edited(o, edit=_unexpected)), "encoder.layers.12.fc1.weight"),
    (lambda p, o: _save(p / "s.pt", _edited(o, edit=_wrong_shape)), "shape [1, 1, 15]"),
    (lambda p, o: _save(p / "t.pt", _edited(o, edit=_not_tensor)), "layer_norm.bias"),
    (lambda p, o: _save(p / "r.pt", _edited(o, edit=_different_tables)), "shares one"),
    (lambda p, o: _save(p / "c.pt", _edited(o, cfg={"encoder_layers": 11})), "at least 12"),
    (lambda p, o: _save(p / "w.pt", _edited(o, cfg={"encoder_embed_dim": "32"})), "should be int"),
    (lambda p, o: _save(p / "l.pt", _edited(o, cfg={"layer_norm_first": True})), "not supported"),
    (lambda p, o: _save(p / "h.pt", _edited(o, cfg={"encoder_attention_heads": 5})), "divisible"),
    (lambda p, o: _save(p / "k.pt", {"cfg": {"embed_dim": 24}, "model": o["model"]}), "lacks"),
])
def test_unusable_checkpoints_raise_model_error(tmp_path, official, make, words):
    path = make(tmp_path, official)
    with pytest.raises(ModelError) as caught:
        load_beats(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert words in message
    assert "\n" not in message


def test_model_error_for_shape_mismatch_from_cfg(tmp_path, official):
    # A cfg that disagrees with the weights (wider FFN) is caught as a shape mismatch.
    path = _save(tmp_path / "ffn.pt", _edited(official, cfg={"encoder_ffn_embed_dim": 64}))
    with pytest.raises(ModelError, match=r"fc1.weight has shape \[48, 32\], the cfg implies"):
        load_beats(path)


def _write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path
