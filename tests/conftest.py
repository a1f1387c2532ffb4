import shutil
import sys
from pathlib import Path

import pytest

# Test helpers (factories.py) live beside the tests; make them importable without a package.
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True)
def isolated_user_folders(tmp_path_factory, monkeypatch):
    """Every test gets its own empty caches and config: nothing is read from or written to the
    real home folder, and no test sees another's downloads or presets."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("HF_HOME", str(home / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    return home


@pytest.fixture(autouse=True)
def no_decoder_kept_between_tests():
    """A command run in this process may leave its pre-started decoder worker waiting for the
    next stream (``audio.worker.prestart``); end it, so each test starts its own."""
    yield
    from audiotoken_cli.audio.worker import stop_prestarted

    stop_prestarted()


# --- the tiny models: built once per session, shared read-only -------------------------------

TINY_BEATS = Path(__file__).parent / "data" / "tiny_beats.pt"
"""The official BEATs architecture with 12 narrow layers (D = 32): a real file, checked in."""


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """{"sd", "embedder", "audio_encoder"}: a tiny random Stable Diffusion folder (text width
    32), a paper-format embedder (96 → 32, seed 5) and the tiny BEATs, built once per session
    and loaded through the real code by every test that needs a model.

    Shared, so read-only: a test that changes files in it takes ``tiny_models_copy`` instead.
    A test that writes here anyway fails the session at teardown, naming the files."""
    from factories import make_paper_embedder, make_tiny_sd

    folder = tmp_path_factory.mktemp("tiny_models")
    models = {"sd": make_tiny_sd(folder / "sd", text_width=32),
              "embedder": make_paper_embedder(folder / "emb.bin", input_dim=96, token_dim=32,
                                              seed=5),
              "audio_encoder": TINY_BEATS}
    before = _fingerprint(folder)
    yield models
    changed = sorted(set(before.items()) ^ set(_fingerprint(folder).items()))
    assert not changed, f"a test changed the shared tiny models: {changed[:5]}"


@pytest.fixture
def tiny_models_copy(tiny_models, tmp_path):
    """``tiny_models`` copied into this test's own folder, free to change."""
    folder = tmp_path / "tiny_models"
    folder.mkdir()
    return {"sd": Path(shutil.copytree(tiny_models["sd"], folder / "sd")),
            "embedder": Path(shutil.copy2(tiny_models["embedder"], folder / "emb.bin")),
            "audio_encoder": Path(shutil.copy2(TINY_BEATS, folder / TINY_BEATS.name))}


@pytest.fixture(scope="session")
def models(tiny_models):
    """``tiny_models`` under the name most test modules use."""
    return tiny_models


@pytest.fixture(scope="session")
def parts(tiny_models):
    """``tiny_models`` under the API tests' name."""
    return tiny_models


@pytest.fixture(scope="session")
def tiny(tiny_models):
    """``tiny_models`` under the download tests' name."""
    return tiny_models


@pytest.fixture(scope="session")
def tiny_sd(tiny_models):
    """The tiny Stable Diffusion folder alone."""
    return tiny_models["sd"]


def _fingerprint(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
            for path in sorted(folder.rglob("*")) if path.is_file()}
