"""The CLI in a real virtual environment that lacks the optional extras (and the test-only
reference packages), as after the README's plain `pip install .`.

The environment is cheap: ``python -m venv --without-pip`` plus a .pth file that exposes a copy of
this interpreter's site-packages made of symbolic links, minus the packages left out. Every
command's help works there; `eval` computes FID, KID and IIS there; a command whose package is
missing says in one line how to install it, exits 2, and does nothing else.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from eval_factories import make_tiny_clip, make_tiny_wav2clip, random_inception, save_png
from factories import tone, write_audio

ROOT = Path(__file__).resolve().parent.parent
# Each extra of pyproject.toml, the commands that need it, and the package they need from it.
COMMANDS_OF_EXTRA = {"test": [], "eval": [], "ui": [("ui", "gradio")]}
# Core dependencies that a command checks for before any work, for a broken install.
CHECKED_CORE = [("eval", "torchmetrics")]
REFERENCE_PACKAGES = ["torch-fidelity", "clean-fid", "wav2clip"]  # tests/reference-packages.txt


def extras() -> dict[str, list[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project.get("optional-dependencies", {})


def distribution_name(requirement: str) -> str:
    return requirement.split(";")[0].split("[")[0].split(">")[0].split("=")[0].split("<")[0] \
        .strip()


def top_level_names(distribution: str) -> set[str]:
    """The names a distribution puts in site-packages (its packages, modules, dist-info)."""
    try:
        files = importlib.metadata.distribution(distribution).files or []
    except importlib.metadata.PackageNotFoundError:
        return set()
    return {file.parts[0] for file in files if file.parts and file.parts[0] not in ("..", "bin")}


def site_folders() -> list[Path]:
    return [Path(entry) for entry in sys.path
            if entry.endswith(("site-packages", "dist-packages")) and Path(entry).is_dir()]


def bare_venv(folder: Path, left_out: list[str]) -> Path:
    """A venv whose packages are this one's, minus ``left_out`` distributions; returns python."""
    hidden = set().union(*(top_level_names(name) for name in left_out))
    exposed = folder / "exposed"
    exposed.mkdir(parents=True)
    for site in site_folders():  # in sys.path order: the first of two same names wins
        for child in site.iterdir():
            name = child.name
            if name in hidden or name.endswith(".pth") or name.startswith("__editable__") \
                    or (exposed / name).exists() or name.startswith("audiotoken_cli"):
                continue
            (exposed / name).symlink_to(child)
    venv.EnvBuilder(with_pip=False, symlinks=True).create(folder / "venv")
    python = folder / "venv" / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path("
                              "'purelib'))"], capture_output=True, text=True, check=True).stdout
    # The checkout itself, as an install of it would provide the package.
    Path(purelib.strip(), "exposed.pth").write_text(f"{ROOT}\n{exposed}\n")
    return python


def run(python: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ""}
    return subprocess.run([str(python), "-m", "audiotoken_cli", *args], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=python.parent)


def commands() -> list[str]:
    from audiotoken_cli.cli.app import app

    return [command.name or command.callback.__name__ for command in app.registered_commands]


def test_the_table_names_every_extra():
    missing = set(extras()) - set(COMMANDS_OF_EXTRA)
    assert not missing, f"say in COMMANDS_OF_EXTRA which commands need the extras {missing}"


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> Path:
    """After `pip install .`: no extra's package, no test-only reference package."""
    left_out = {distribution_name(r) for requirements in extras().values() for r in requirements}
    left_out |= {package for table in COMMANDS_OF_EXTRA.values() for _, package in table}
    left_out -= {distribution_name(r) for r in tomllib.loads(
        (ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    return bare_venv(tmp_path_factory.mktemp("plain"), sorted(left_out) + REFERENCE_PACKAGES)


def test_every_command_works_without_the_extras(plain, tmp_path):
    for package in ("pytest", "hypothesis", "gradio", "torch_fidelity"):
        found = subprocess.run([str(plain), "-c", f"import {package}"], capture_output=True)
        assert found.returncode != 0, f"{package} should be absent from the plain venv"
    for command in commands():
        done = run(plain, command, "--help")
        assert done.returncode == 0 and "Traceback" not in done.stderr, (command, done.stderr)


def test_a_command_without_its_package_says_how_to_install_it(tmp_path):
    from audiotoken_cli.cli.run import EXIT_USAGE

    registered = set(commands())
    cases = [(command, package) for table in COMMANDS_OF_EXTRA.values()
             for command, package in table] + CHECKED_CORE
    cases = [case for case in cases if case[0] in registered]
    assert cases, "no command with an optional package is registered"
    for index, (command, package) in enumerate(cases):
        python = bare_venv(tmp_path / str(index), [package] + REFERENCE_PACKAGES)
        # Arguments that would start work: images and sounds that exist.
        save_png(tmp_path / f"dog_seed{index}.png", index)
        done = run(python, command, str(tmp_path / f"dog_seed{index}.png"), "--audio",
                   str(tmp_path)) if command == "eval" else run(python, command)
        lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
        assert done.returncode == EXIT_USAGE, (command, lines)
        assert len(lines) == 1 and "pip install" in lines[0] and package in lines[0], lines


def test_eval_computes_fid_kid_and_iis_after_a_plain_install(plain, tmp_path):
    audio, real, images = tmp_path / "audio", tmp_path / "real", tmp_path / "images"
    for folder in (audio, real, images):
        folder.mkdir()
    for index, name in enumerate(("dog", "rain")):
        write_audio(audio / f"{name}.wav", tone(0.5, freq=400.0 * (index + 1), seed=index))
        save_png(images / f"{name}_seed0.png", index)
        pixels = np.random.default_rng(9 + index).integers(0, 256, (48, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(real / f"{name}.png")
    clip = make_tiny_clip(tmp_path / "clip", projection=512, seed=3)
    done = run(plain, "eval", str(images), "--audio", str(audio), "--real", str(real),
               "-o", str(tmp_path / "out"), "--clip-b32", str(clip), "--clip-l14", str(clip),
               "--wav2clip", str(make_tiny_wav2clip(tmp_path / "Wav2CLIP.pt")),
               "--inception", str(random_inception()), "--offline", "--device", "cpu")
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    figures = json.loads((tmp_path / "out" / "eval.json").read_text())["figures"]
    for name in ("fid", "kid", "iis_b32", "iis_l14", "ais"):
        assert figures[name]["value"] is not None, (name, figures[name])
