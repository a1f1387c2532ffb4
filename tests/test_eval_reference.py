"""`audiotoken eval` against the field's own code, end to end on the same files:

- FID and KID with ``--fid-protocol torchmetrics`` equal torchmetrics' own
  ``FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=FILE)`` and
  ``KernelInceptionDistance`` (torch-fidelity's Inception inside), on the same uint8 pictures;
- with ``--fid-protocol clean`` they equal clean-fid's own resize and Inception wrapper;
- AIS and its win rate are the cosines of the ``wav2clip`` package's own embeddings, from a
  checkpoint its own loader reads.

Pictures come in several sizes (64, 256 and 512 px squares and non-square ones), so every resize
path is exercised. The reference packages are installed with --no-deps (tests/reference-packages.txt).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from audiotoken_cli.cli.app import app
from eval_factories import (Features, as_uint8, clip_image_embeddings, make_tiny_clip,
                            random_inception, require_reference, save_png)
from factories import tone, write_audio

runner = CliRunner()
SOUNDS = {"dog": 300.0, "rain": 900.0, "bell": 1500.0, "bird": 2500.0}
# Generated pictures, (width, height): eval reads a folder in sorted order.
GENERATED = {"bell_seed0.png": (512, 512), "bird_seed0.png": (160, 96), "dog_seed0.png": (64, 64),
             "dog_seed1.png": (96, 200), "rain_seed0.png": (256, 256)}
REAL = {"bell.png": (64, 64), "bird.png": (200, 120), "dog.jpg": (512, 512), "rain.png": (256, 256)}
TORCHAUDIO_REFERENCE = Path(os.environ.get("AUDIOTOKEN_TORCHAUDIO_REFERENCE",
                                           Path(sys.prefix) / "torchaudio-reference"))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("reference")
    audio, real, images = root / "audio", root / "real", root / "images"
    for folder in (audio, real, images):
        folder.mkdir()
    for index, (name, freq) in enumerate(SOUNDS.items()):
        write_audio(audio / f"{name}.wav", tone(1.0, freq=freq, seed=index))
    for index, (name, size) in enumerate(GENERATED.items()):
        save_png(images / name, index, size=size)
    for index, (name, size) in enumerate(REAL.items()):
        pixels = np.random.default_rng(50 + index).integers(0, 256, (size[1], size[0], 3),
                                                            dtype=np.uint8)
        Image.fromarray(pixels).save(real / name)
    return {"root": root, "audio": audio, "real": real, "images": images,
            "b32": make_tiny_clip(root / "b32", projection=512, seed=3),
            "inception": random_inception()}


def run_eval(data: dict, out: Path, *extra: str):
    args = ["eval", str(data["images"]), "--audio", str(data["audio"]), "--real", str(data["real"]),
            "-o", str(out),
            "--clip-b32", str(data["b32"]), "--clip-l14", str(data["b32"]),
            "--inception", str(data["inception"]), "--offline", "--device", "cpu", *extra]
    result = runner.invoke(app, args)
    assert (out / "eval.json").is_file(), (result.output, repr(result.exception))
    return result, json.loads((out / "eval.json").read_text())


def pictures(data: dict) -> tuple[list[Path], list[Path]]:
    """(real, generated) files in the order eval feeds them to FID and KID: generated images in
    sorted order, each real picture once, where it is first needed."""
    generated = sorted(data["images"].iterdir())
    real = []
    for image in generated:
        stem = image.name.split("_seed")[0]
        found = next(data["real"].glob(f"{stem}.*"))
        if found not in real:
            real.append(found)
    return real, generated


def kid_of(kid) -> tuple[float, float]:
    torch.manual_seed(0)  # eval records seed 0 for KID's random subsets
    mean, std = kid.compute()
    return float(mean), float(std)


def test_torchmetrics_protocol_equals_torchmetrics_own_extractor(data, tmp_path):
    require_reference("torch_fidelity")
    from audiotoken_cli.eval.metrics import register_torch_fidelity

    register_torch_fidelity()  # torch-fidelity's __init__ imports torchvision: see the helper
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    # No --fid-protocol: the default is torchmetrics'.
    result, report = run_eval(data, tmp_path, "--wav2clip", str(tmp_path / "none.pt"))
    real, generated = pictures(data)
    fid = FrechetInceptionDistance(feature=2048,
                                   feature_extractor_weights_path=str(data["inception"]))
    kid = KernelInceptionDistance(feature=fid.inception, subsets=100, subset_size=len(real))
    for paths, is_real in ((real, True), (generated, False)):
        for path in paths:  # one at a time: the pictures differ in size
            pixels = as_uint8(Image.open(path))
            fid.update(pixels, real=is_real)
            kid.update(pixels, real=is_real)
    figures = report["figures"]
    assert figures["fid"]["protocol"] == "torchmetrics", result.output
    assert figures["fid"]["value"] == pytest.approx(float(fid.compute()), rel=1e-4), result.output
    kid_mean, kid_std = kid_of(kid)
    assert figures["kid"]["value"] == pytest.approx(kid_mean, rel=1e-4)
    assert figures["kid"]["std"] == pytest.approx(kid_std, rel=1e-4)
    assert report["inputs"]["fid_protocol"] == "torchmetrics"
    assert figures["fid"]["real"] == 4 and figures["fid"]["generated"] == 5


def clean_fid_torchscript(folder: Path, weights: Path) -> Path:
    """clean-fid's Inception file (``inception-2015-12-05.pt``, TorchScript, a ``layers`` module
    that takes normalised 299×299 pictures) with the random weights: torch-fidelity's Inception
    modules loaded from the pytorch-fid file, run in its forward's order."""
    from audiotoken_cli.eval.metrics import register_torch_fidelity

    register_torch_fidelity()
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                      feature_extractor_weights_path=str(weights))

    class Layers(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x):
            n = self.net
            x = n.MaxPool_1(n.Conv2d_2b_3x3(n.Conv2d_2a_3x3(n.Conv2d_1a_3x3(x))))
            x = n.MaxPool_2(n.Conv2d_4a_3x3(n.Conv2d_3b_1x1(x)))
            for block in (n.Mixed_5b, n.Mixed_5c, n.Mixed_5d, n.Mixed_6a, n.Mixed_6b, n.Mixed_6c,
                          n.Mixed_6d, n.Mixed_6e, n.Mixed_7a, n.Mixed_7b, n.Mixed_7c):
                x = block(x)
            return n.AvgPool(x)

    class Graph(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = Layers()

        def forward(self, x):
            return self.layers(x)

    path = folder / "inception-2015-12-05.pt"
    with torch.no_grad():
        torch.jit.save(torch.jit.trace(Graph().eval(), torch.zeros(1, 3, 299, 299)), str(path))
    return path


def test_clean_protocol_equals_clean_fid_resize_and_features(data, tmp_path):
    require_reference("cleanfid")
    require_reference("torch_fidelity")
    from cleanfid.inception_torchscript import InceptionV3W
    from cleanfid.resize import build_resizer
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    result, report = run_eval(data, tmp_path, "--fid-protocol", "clean", "--wav2clip",
                              str(tmp_path / "none.pt"))
    assert report["figures"]["fid"]["protocol"] == "clean", result.output

    clean_fid_torchscript(tmp_path, data["inception"])
    inception = InceptionV3W(str(tmp_path), download=False)  # clean-fid's mode="clean" model
    resize = build_resizer("clean")  # make_resizer("PIL", False, "bicubic", (299, 299))

    def features(paths: list[Path]) -> torch.Tensor:
        # As clean-fid's ResizeDataset: RGB uint8 array → resize → float32 tensor, unscaled.
        batch = torch.stack([torch.from_numpy(resize(np.array(Image.open(p).convert("RGB"))))
                             .permute(2, 0, 1) for p in paths])
        with torch.no_grad():
            return inception(batch)

    real, generated = pictures(data)
    real_features, fake_features = features(real), features(generated)
    fid = FrechetInceptionDistance(feature=Features())
    kid = KernelInceptionDistance(feature=Features(), subsets=100, subset_size=len(real))
    for metric in (fid, kid):
        metric.update(real_features, real=True)
        metric.update(fake_features, real=False)
    figures = report["figures"]
    assert figures["fid"]["value"] == pytest.approx(float(fid.compute()), rel=1e-4), result.output
    kid_mean, kid_std = kid_of(kid)
    assert figures["kid"]["value"] == pytest.approx(kid_mean, rel=1e-4)
    assert figures["kid"]["std"] == pytest.approx(kid_std, rel=1e-4)
    assert "PIL bicubic" in figures["fid"]["resize"]


def package_embeddings(data: dict, torch_home: Path) -> dict[str, np.ndarray]:
    """The wav2clip package's own embeddings of each sound, from its own random checkpoint,
    computed in a child process (see tests/wav2clip_reference.py)."""
    require_reference("wav2clip")
    if not (TORCHAUDIO_REFERENCE / "torchaudio").is_dir():
        pytest.skip(f"torchaudio's Python code is not at {TORCHAUDIO_REFERENCE} (pip install "
                    f"--no-deps --target {TORCHAUDIO_REFERENCE} torchaudio==2.11.1)")
    out = torch_home / "embeddings.npz"
    sounds = [str(data["audio"] / f"{name}.wav") for name in SOUNDS]
    env = {**os.environ, "PYTHONPATH": str(TORCHAUDIO_REFERENCE), "OMP_NUM_THREADS": "1"}
    script = Path(__file__).parent / "wav2clip_reference.py"
    done = subprocess.run([sys.executable, str(script), str(torch_home), str(out), *sounds],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    with np.load(out) as found:
        return {name: found[name] for name in found.files}


def test_ais_is_the_wav2clip_package_cosine(data, tmp_path):
    from audiotoken_cli.eval.wav2clip import load_wav2clip

    expected = package_embeddings(data, tmp_path / "torch")
    released = tmp_path / "torch" / "hub" / "checkpoints" / "Wav2CLIP.pt"

    # Our module on the same samples, from the package's flat file and from a Lightning file.
    lightning = tmp_path / "lightning.ckpt"
    torch.save({"epoch": 1, "state_dict": torch.load(released, weights_only=True)}, lightning)
    for checkpoint in (released, lightning):
        model = load_wav2clip(checkpoint)
        for index, (name, freq) in enumerate(SOUNDS.items()):
            samples = np.round(tone(1.0, freq=freq, seed=index)[0] * 32767) / 32768
            ours = model.embed(torch.from_numpy(samples).float())
            np.testing.assert_allclose(ours.numpy(), expected[name], rtol=1e-5, atol=1e-5)

    result, report = run_eval(data, tmp_path / "eval", "--wav2clip", str(released))
    assert result.exit_code == 0, result.output
    generated = sorted(data["images"].iterdir())
    names = [p.name.split("_seed")[0] for p in generated]
    images = clip_image_embeddings(data["b32"], [Image.open(p) for p in generated])
    sounds = torch.nn.functional.normalize(
        torch.stack([torch.from_numpy(expected[n]) for n in names]).float(), dim=-1)
    cosines = (sounds * images).sum(-1)
    figures = report["figures"]
    assert figures["ais"]["value"] == pytest.approx(float(cosines.mean()), abs=1e-5)
    with open(tmp_path / "eval" / "eval.csv", newline="") as handle:
        per_image = [float(row["ais"]) for row in csv.DictReader(handle)]
    np.testing.assert_allclose(per_image, cosines.numpy(), atol=2e-6)
    # SonicDiffusion's win rate: each image against the other sounds' package embeddings.
    wins = [np.mean([float(images[i] @ torch.nn.functional.normalize(
        torch.from_numpy(expected[other]).float(), dim=0)) < float(cosines[i])
        for other in SOUNDS if other != names[i]]) for i in range(len(names))]
    assert figures["ais_win_rate"]["value"] == pytest.approx(float(np.mean(wins)))
