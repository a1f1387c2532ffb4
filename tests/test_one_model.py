"""The one loaded model under the API, generate and video: load-time settings (--fast's weights)
through load(), the per-call / load-time split, the API's metadata, save_token, video() and
its events, video --fast against generate --fast, and video -o mirroring subfolders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from factories import make_paper_embedder, make_tiny_sd, tone, write_audio
from fast_factories import make_lcm_lora, make_tiny_taesd
from PIL import Image
from safetensors import safe_open
from typer.testing import CliRunner

import audiotoken_cli as audiotoken
from audiotoken_cli.cli import app

pytest.importorskip("peft")

DATA = Path(__file__).parent / "data"
TINY_BEATS = DATA / "tiny_beats.pt"
SIZE = 32
runner = CliRunner()


@pytest.fixture(scope="module")
def parts(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    sd = make_tiny_sd(folder / "sd", text_width=32)
    return {"sd": sd, "audio_encoder": TINY_BEATS,
            "embedder": make_paper_embedder(folder / "emb.bin", input_dim=96, token_dim=32, seed=5),
            "lcm_lora": make_lcm_lora(folder / "lcm" / "pytorch_lora_weights.safetensors", sd),
            "taesd": make_tiny_taesd(folder / "taesd")}


def load(parts, **extra):
    return audiotoken.load(device="cpu", dtype="float32", sd=str(parts["sd"]),
                           audio_encoder=str(parts["audio_encoder"]),
                           embedder=str(parts["embedder"]), offline=True, **extra)


@pytest.fixture(scope="module")
def plain(parts):
    return load(parts)


@pytest.fixture(scope="module")
def fast(parts):
    return load(parts, lcm_lora=str(parts["lcm_lora"]), taesd=str(parts["taesd"]))


def invoke(*args) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def model_args(parts, fast_weights: bool = False) -> list:
    args = ["--sd", parts["sd"], "--audio-encoder", parts["audio_encoder"], "--embedder",
            parts["embedder"], "--device", "cpu", "--dtype", "float32", "-W", SIZE, "-H", SIZE]
    if fast_weights:
        args += ["--fast", "--lcm-lora", parts["lcm_lora"], "--taesd", parts["taesd"]]
    return args


def rgb(image) -> np.ndarray:
    image = Image.open(image) if isinstance(image, Path) else image
    return np.asarray(image.convert("RGB"), dtype=np.float32)


def test_load_with_the_fast_weights_equals_generate_fast(parts, fast, tmp_path):
    clip = write_audio(tmp_path / "a.wav", tone(2.0, freq=350, seed=2))
    images = fast.generate(clip, n=2, seed=5, width=SIZE, height=SIZE)
    invoke("generate", clip, "-n", 2, "--seed", 5, "-o", tmp_path / "cli",
           *model_args(parts, fast_weights=True))
    for offset, image in enumerate(images):
        written = tmp_path / "cli" / f"a_seed{5 + offset}.png"
        assert np.array_equal(rgb(image), rgb(written))
        ours, theirs = json.loads(image.info["audiotoken"]), json.loads(
            Image.open(written).text["audiotoken"])
        assert ours == theirs and ours["scheduler"] == "lcm" and ours["steps"] == 4
        assert ours["lcm_lora_sha256"] and ours["taesd_sha256"]


def test_metadata_names_only_what_was_loaded_and_no_invented_audio_path(plain, tmp_path,
                                                                        monkeypatch):
    monkeypatch.chdir(tmp_path)
    samples = tone(1.5, freq=500, seed=8)[0]
    [image] = plain.generate(samples, n=1, seed=1, scheduler="pndm", steps=1, width=SIZE,
                             height=SIZE)
    info = json.loads(image.info["audiotoken"])
    assert info["lcm_lora"] is None and info["taesd"] is None
    assert "lcm_lora_sha256" not in info and info["scheduler"] == "pndm"
    assert info["audio_path"] is None and info["audio_file"] == "<array>"
    [from_token] = plain.generate_from_token(plain.embed(samples), n=1, seed=1,
                                             scheduler="pndm", steps=1, width=SIZE, height=SIZE)
    assert json.loads(from_token.info["audiotoken"])["audio_path"] is None
    assert np.array_equal(rgb(from_token), rgb(image))


@pytest.mark.parametrize("name", ["lcm_lora", "taesd", "compile", "safety_checker", "low_vram",
                                  "device", "dtype", "sd", "lora", "fast"])
def test_load_time_settings_are_refused_per_call(plain, name):
    with pytest.raises(audiotoken.UsageError, match=f"'{name}' is chosen in load\\(\\)"):
        plain.generate(np.ones(16_000, np.float32) * 0.1, n=1, **{name: None})


def test_an_unknown_setting_names_itself_and_the_valid_ones(plain):
    with pytest.raises(audiotoken.UsageError) as error:
        plain.generate(np.ones(16_000, np.float32) * 0.1, n=1, stpes=3)
    message = str(error.value)
    assert "'stpes'" in message and "steps" in message and "guidance" in message
    assert "\n" not in message


def test_the_lcm_scheduler_belongs_to_the_fast_model(plain, fast):
    sound = tone(1.0, seed=3)[0]
    with pytest.raises(audiotoken.UsageError, match="lcm"):
        plain.generate(sound, n=1, scheduler="lcm", steps=1, width=SIZE, height=SIZE)
    with pytest.raises(audiotoken.UsageError, match="LCM-LoRA"):
        fast.generate(sound, n=1, scheduler="ddim", steps=1, width=SIZE, height=SIZE)


def test_on_step_counts_image_steps_to_the_total(plain):
    seen = []
    plain.generate(tone(1.0, seed=4)[0], n=3, seed=2, scheduler="ddim", steps=2, width=SIZE,
                   height=SIZE, batch_size=2, on_step=lambda done, total: seen.append((done, total)))
    assert seen == [(done, 6) for done in range(1, 7)]


def test_save_token_writes_the_file_embed_writes(parts, plain, tmp_path):
    clip = write_audio(tmp_path / "s.wav", tone(3.0, freq=800, seed=6))
    invoke("embed", clip, "--start", 0.5, "--duration", 2, "-o", tmp_path / "cli",
           "--audio-encoder", parts["audio_encoder"], "--embedder", parts["embedder"],
           "--device", "cpu", "--dtype", "float32")
    ours = plain.save_token(clip, tmp_path / "api.safetensors", start=0.5, duration=2)
    with safe_open(str(ours), "pt") as a, safe_open(str(tmp_path / "cli" / "s.safetensors"),
                                                    "pt") as b:
        assert a.metadata() == b.metadata()
        torch.testing.assert_close(a.get_tensor("emb_params"), b.get_tensor("emb_params"))
        assert a.get_tensor("emb_params").shape == (1, 32)


def test_video_returns_its_outputs_and_shows_the_storyboard_before_the_frames(plain, tmp_path):
    clip = write_audio(tmp_path / "v.wav", tone(3.0, freq=300, seed=9))
    order = []
    events = audiotoken.VideoEvents(on_storyboard=lambda path: order.append(("storyboard", path)),
                                    on_frame=lambda: order.append(("frame", None)))
    result = plain.video(clip, tmp_path / "out", seed=3, hop=1.0, window=2.0, fps=2,
                         storyboard=True, events=events, steps=1, scheduler="pndm",
                         width=SIZE, height=SIZE)
    assert isinstance(result, audiotoken.VideoResult)
    assert result.mp4 == tmp_path / "out" / "v.audiotoken.mp4" and result.mp4.is_file()
    assert result.storyboard.is_file() and result.sidecar.is_file() and result.tokens.is_file()
    assert result.keyframes is None
    assert order[0] == ("storyboard", result.storyboard) and len(order) == 1 + 6
    with pytest.raises(audiotoken.InputError, match="broken.wav"):
        (tmp_path / "broken.wav").write_bytes(b"no audio here")
        plain.video(tmp_path / "broken.wav", seed=1, steps=1, width=SIZE, height=SIZE)
    with pytest.raises(audiotoken.UsageError, match="chosen in load"):
        plain.video(clip, seed=1, low_vram=True)


def test_video_fast_keyframes_equal_generate_fast(parts, tmp_path):
    clip = write_audio(tmp_path / "song.wav", np.concatenate(
        [tone(2.0, freq=f, seed=i) for i, f in enumerate((250, 1200))], axis=1))
    invoke("video", clip, "--hop", 2, "--window", 2, "--fps", 2, "--seed", 7, "--save-keyframes",
           "--keyframes-only", *model_args(parts, fast_weights=True))
    sidecar = json.loads((tmp_path / "song.audiotoken.json").read_text())
    assert sidecar["settings"]["scheduler"] == "lcm" and sidecar["settings"]["steps"] == 4
    assert sidecar["settings"]["lcm_lora_sha256"] and sidecar["settings"]["taesd_sha256"]
    for key in sidecar["keyframes"][:2]:
        out = tmp_path / f"gen{key['index']}"
        invoke("generate", clip, "--start", key["start"], "--duration", key["duration"],
               "--seed", key["seed"], "-o", out, *model_args(parts, fast_weights=True))
        generated = out / f"song_seed{key['seed']}.png"
        keyframe = tmp_path / "song.audiotoken.keyframes" / f"keyframe_{key['index']:04d}.png"
        assert np.abs(rgb(keyframe) - rgb(generated)).max() <= 1.5
        assert json.loads(Image.open(keyframe).text["audiotoken"]) == json.loads(
            Image.open(generated).text["audiotoken"])


def test_video_output_folder_mirrors_subfolders(parts, tmp_path):
    for folder, freq in (("rain", 300), ("wind", 900)):
        (tmp_path / "in" / folder).mkdir(parents=True)
        write_audio(tmp_path / "in" / folder / "clip.wav", tone(1.0, freq=freq, seed=freq))
    invoke("video", tmp_path / "in", "-o", tmp_path / "out", "--keyframes-only", "--hop", 1,
           "--window", 1, "--fps", 2, "--seed", 1, "--steps", 1, "--scheduler", "pndm",
           *model_args(parts))
    made = sorted(p.relative_to(tmp_path / "out").as_posix()
                  for p in (tmp_path / "out").rglob("*.mp4"))
    assert made == ["rain/clip.audiotoken.mp4", "wind/clip.audiotoken.mp4"]
    sidecars = [json.loads((tmp_path / "out" / f / "clip.audiotoken.json").read_text())
                for f in ("rain", "wind")]
    assert sidecars[0]["settings"]["audio_sha256"] != sidecars[1]["settings"]["audio_sha256"]


def test_inference_loads_only_in_model_py():
    """generate, embed, video and the API load through model.py alone: no other module calls a
    loader (training keeps its own, trainable, models; download only warms the caches)."""
    import ast

    loaders = {"load_pipeline", "apply_paper_lora", "fuse_lcm_lora", "use_taesd",
               "tune_for_device", "load", "load_beats_fast", "load_embedder_fast"}
    package = Path(__file__).parent.parent / "audiotoken_cli"
    callers = {}
    for path in package.rglob("*.py"):
        relative = path.relative_to(package).as_posix()
        if relative.startswith("training/") or relative == "cli/download.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(
                func.value, ast.Name) else None
            if name in loaders - {"load"} or (name == "load" and owner == "AudioTokenizer"):
                callers.setdefault(relative, set()).add(name)
    assert set(callers) == {"model.py"}, callers


def test_an_unknown_train_setting_names_itself_and_the_valid_ones(tmp_path):
    with pytest.raises(audiotoken.UsageError) as error:
        audiotoken.train(tmp_path, tmp_path / "run", max_stepz=3, offline=True)
    message = str(error.value)
    assert "'max_stepz'" in message and "max_steps" in message and "\n" not in message
    with pytest.raises(audiotoken.UsageError, match="unknown setting 'runtime'"):
        audiotoken.train(tmp_path, tmp_path / "run", offline=True, runtime=None)
