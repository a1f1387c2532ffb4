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
