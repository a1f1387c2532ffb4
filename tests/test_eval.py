"""`audiotoken eval` against independent computations: transformers' CLIP called directly;
pairing rules; skip reasons; the feature cache. FID, KID and Wav2CLIP against the field's own
libraries: test_eval_reference.py."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from audiotoken_cli.cli.app import app
from eval_factories import (clip_image_embeddings, make_tiny_clip, make_tiny_wav2clip,
                            random_inception, save_png)
from factories import tone, write_audio
from media_factories import ramp_color, write_clip, write_image

runner = CliRunner()
SOUNDS = {"dog": 300.0, "rain": 900.0, "bell": 1500.0, "bird": 2500.0}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("eval")
    audio, real, out = root / "audio", root / "real", root / "images"
    for folder in (audio, real, out):
        folder.mkdir()
    for index, (name, freq) in enumerate(SOUNDS.items()):
        write_audio(audio / f"{name}.wav", tone(1.0, freq=freq, seed=index))
    write_image(real / "dog.png", color=(200, 30, 30))
    Image.fromarray(np.full((48, 64, 3), 90, np.uint8)).save(real / "rain.jpg")
    write_image(real / "bell.png", color=(30, 30, 200), middle=(240, 240, 0))
    write_clip(real / "bird.mp4", 2.0, color=ramp_color)  # only a video: its middle frame
    images = []
    for seed in range(3):
        images.append(save_png(out / f"dog_seed{seed}.png", seed))
        images.append(save_png(out / f"rain_seed{seed}_0a1b2c3d.png", 10 + seed))
        images.append(save_png(out / f"bird_seed{seed}.png", 20 + seed))
    images.append(save_png(out / "bell_seed0.png", 30))
    images.append(save_png(out / "bell_seed1.png", 31))
    # Renamed, but its metadata says which sound it was made from.
    images.append(save_png(out / "renamed.png", 32, {"audio_file": "bell.wav", "seed": 7}))
    orphan = save_png(out / "cat_seed0.png", 40)  # no cat.* sound: reported, not counted
    labels = root / "labels.csv"
    labels.write_text("file,label\n" + "".join(f"{n}.wav,{n}\n" for n in SOUNDS))
    models = root / "models"
    return {
        "root": root, "audio": audio, "real": real, "images": images, "orphan": orphan,
        "labels": labels, "folder": out,
        "b32": make_tiny_clip(models / "b32", projection=512, seed=3),
        "l14": make_tiny_clip(models / "l14", projection=48, seed=4),
        "wav2clip": make_tiny_wav2clip(root / "Wav2CLIP.pt"),
        "inception": random_inception(),
    }


def run_eval(data: dict, out: Path, *extra: str):
    args = ["eval", str(data["folder"]), "--audio", str(data["audio"]), "-o", str(out),
            "--clip-b32", str(data["b32"]), "--clip-l14", str(data["l14"]),
            "--wav2clip", str(data["wav2clip"]), "--inception", str(data["inception"]),
            "--offline", "--device", "cpu", "--batch-size", "5", *extra]
    return runner.invoke(app, args)


def sound_of(image: Path) -> str:
    return "bell" if image.name == "renamed.png" else image.name.split("_seed")[0]


def real_picture(data: dict, name: str) -> Image.Image:
    """The real picture of a sound, read here without eval's code: the video's middle frame is
    the first frame at or after half its duration."""
    for suffix in (".png", ".jpg"):
        if (data["real"] / f"{name}{suffix}").exists():
            return Image.open(data["real"] / f"{name}{suffix}").convert("RGB")
    with av.open(str(data["real"] / f"{name}.mp4")) as container:
        stream = container.streams.video[0]
        middle = float(stream.duration * stream.time_base) / 2
        frames = [f for f in container.decode(stream)]
    return next(f for f in frames if f.time >= middle - 1e-6).to_image()


def test_eval_figures_equal_independent_computations(data, tmp_path):
    result = run_eval(data, tmp_path, "--real", str(data["real"]), "--labels", str(data["labels"]))
    assert result.exit_code == 1, result.output  # the orphan image is a failure to report
    assert "0 features computed" not in result.output
    assert "cat_seed0.png: no sound named cat.*" in result.output
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["images"]["given"] == 13 and report["images"]["counted"] == 12
    assert [s["image"] for s in report["images"]["skipped"]] == [str(data["orphan"])]

    made = sorted(data["images"])  # eval takes a folder's images in sorted order
    generated = [Image.open(p).convert("RGB") for p in made]
    names = [sound_of(p) for p in made]
    reals = {name: real_picture(data, name) for name in SOUNDS}
    figures = report["figures"]  # FID and KID against torchmetrics: test_eval_reference.py
    assert figures["fid"]["value"] > 0 and figures["kid"]["std"] >= 0
    assert figures["kid"]["subset_size"] == 4 and figures["fid"]["real"] == 4

    for key, folder in (("iis_b32", data["b32"]), ("iis_l14", data["l14"])):
        made = clip_image_embeddings(folder, generated)
        real = clip_image_embeddings(folder, [reals[n] for n in names])
        expected = float((made * real).sum(-1).mean())
        assert figures[key]["value"] == pytest.approx(expected, abs=1e-5), key
        assert figures[key]["pairs"] == 12

    for name in ("ais", "ais_win_rate", "ais_z", "iis_b32", "iis_b32_z", "iis_l14",
                 "iis_l14_win_rate", "aic", "fid", "kid"):
        assert figures[name]["value"] is not None and "skipped" not in figures[name], name
    assert figures["ais"]["protocol"] == "MACS"
    assert figures["iis_l14"]["protocol"] == "SonicDiffusion"
    assert figures["aic"]["classes"] == 4 and figures["aic"]["prompt"] == "a photo of a {label}"
    assert 0.0 <= figures["aic"]["value"] <= 1.0
    assert report["seeds"] == [0, 1, 2, 7] and report["version"]
    for role in ("clip_b32", "clip_l14", "wav2clip", "inception"):
        assert len(report["models"][role]["sha256"]) == 64, role
    rows = (tmp_path / "eval.csv").read_text().splitlines()
    assert len(rows) == 14 and any("renamed.png" in r and "bell.wav" in r for r in rows)

    # A second run reads every feature back from the cache and gives the same figures.
    again = run_eval(data, tmp_path / "again", "--real", str(data["real"]), "--labels",
                     str(data["labels"]))
    assert "0 features computed" in again.output, again.output
    second = json.loads((tmp_path / "again" / "eval.json").read_text())["figures"]
    for name in ("fid", "kid", "iis_b32", "ais"):
        assert second[name]["value"] == pytest.approx(figures[name]["value"], rel=1e-6)


def test_ais_is_the_wav2clip_clip_cosine(data, tmp_path):
    from audiotoken_cli.eval.wav2clip import load_wav2clip

    result = run_eval(data, tmp_path)
    report = json.loads((tmp_path / "eval.json").read_text())
    model = load_wav2clip(data["wav2clip"])
    images = clip_image_embeddings(data["b32"], [Image.open(p).convert("RGB") for p in data["images"]])
    # The whole 1 s track (16-bit WAV at 16 kHz: the samples are known exactly), not looped.
    tracks = {name: torch.from_numpy(np.round(tone(1.0, freq=freq, seed=index)[0] * 32767)
                                     / 32768).float()
              for index, (name, freq) in enumerate(SOUNDS.items())}
    sounds = torch.stack([model.embed(tracks[sound_of(p)]) for p in data["images"]])
    sounds = torch.nn.functional.normalize(sounds, dim=-1)
    assert report["figures"]["ais"]["value"] == pytest.approx(
        float((sounds * images).sum(-1).mean()), abs=1e-5)
    # MACS' z-score: each sound's cosine to its image among its cosines to other sounds' images.
    names = np.array([sound_of(p) for p in data["images"]])
    scores = (sounds @ images.T).double().numpy()
    z = [(scores[i, i] - scores[i, names != names[i]].mean()) / scores[i, names != names[i]].std()
         for i in range(len(names))]
    assert report["figures"]["ais_z"]["value"] == pytest.approx(float(np.mean(z)), abs=1e-4)
    # SonicDiffusion's win rate: each image against the other sounds' audio embeddings.
    own = (images * sounds).sum(-1)
    references = {name: sounds[list(names).index(name)] for name in SOUNDS}
    wins = [np.mean([float(images[i] @ references[other]) < float(own[i])
                     for other in SOUNDS if other != names[i]]) for i in range(len(names))]
    assert report["figures"]["ais_win_rate"]["value"] == pytest.approx(float(np.mean(wins)))
    # Without --real and --labels those figures are skipped with the reason, never a number.
    figures = report["figures"]
    for name in ("iis_b32", "iis_b32_z", "iis_l14", "iis_l14_win_rate", "fid", "kid"):
        assert figures[name]["value"] is None
        assert figures[name]["skipped"] == "no --real folder given"
    assert figures["aic"]["value"] is None and figures["aic"]["skipped"] == "no --labels file given"
    assert "skipped" in result.output


def test_compare_prints_both_runs_and_the_difference(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"figures": {"fid": {"value": 100.0}, "ais": {"value": None}}}))
    b.write_text(json.dumps({"figures": {"fid": {"value": 90.5}, "ais": {"value": 0.05}}}))
    result = runner.invoke(app, ["eval", "--compare", str(a), str(b)])
    assert result.exit_code == 0, result.output
    assert "-9.5000" in result.output and "skipped" in result.output
    bad = runner.invoke(app, ["eval", "--compare", str(a), str(tmp_path / "missing.json")])
    assert bad.exit_code == 1 and "missing.json: not found" in bad.output


def test_pairing_rules(tmp_path):
    from audiotoken_cli.eval.pairing import Folder, pair_images

    audio = tmp_path / "audio"
    (audio / "sub").mkdir(parents=True)
    (audio / "sub" / "dog.flac").write_bytes(b"x")
    (audio / "owl.wav").write_bytes(b"x")
    (audio / "owl.mp3").write_bytes(b"x")
    images = [save_png(tmp_path / "dog_seed4_deadbeef.png", 0),
              save_png(tmp_path / "owl_seed0.png", 1),
              save_png(tmp_path / "photo.png", 2),
              save_png(tmp_path / "x.png", 3, {"audio_path": str(audio / "owl.wav"), "seed": 9})]
    dog, owl, photo, meta = pair_images(images, Folder(audio), Folder(None), None)
    assert dog.audio == audio / "sub" / "dog.flac" and dog.seed == 4 and dog.problem is None
    assert owl.audio is None and "several sounds named owl.*" in owl.problem
    assert photo.audio is None and "not <stem>_seed<N>.png" in photo.problem
    assert meta.audio == audio / "owl.wav" and meta.seed == 9


def test_clip_folder_and_inception_url_come_through_the_download_path(data, tmp_path,
                                                                      monkeypatch):
    from hub_server import FakeHub, repoint_huggingface_hub

    from audiotoken_cli.hub import FetchOptions
    from audiotoken_cli.hub.fetch import resolve

    folder = data["b32"]
    with FakeHub() as hub, repoint_huggingface_hub(hub.url, tmp_path / "hf"):
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
        for file in folder.iterdir():
            hub.add_file("openai/clip-tiny", file.name, file.read_bytes(),
                         lfs=file.suffix == ".safetensors")
        hub.add_file("openai/clip-tiny", "flax_model.msgpack", b"unused", lfs=True)
        hub.plain_file("/fid/pt_inception.pth", data["inception"].read_bytes())
        fetched = resolve("openai/clip-tiny", "clip_b32", FetchOptions())
        weights = resolve(hub.url + "/fid/pt_inception.pth", "inception", FetchOptions())
    assert (fetched / "model.safetensors").is_file() and (fetched / "vocab.json").is_file()
    assert not (fetched / "flax_model.msgpack").exists()
    assert weights.read_bytes() == data["inception"].read_bytes()
    # Offline, the cached folder is complete: no network needed.
    again = resolve("openai/clip-tiny", "clip_b32", FetchOptions(offline=True))
    assert again == fetched
