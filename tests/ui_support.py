"""Helpers for the `audiotoken ui` tests: tiny models, the server in a subprocess, and a real
headless Chromium driven by selenium (Debian's chromium and chromium-driver)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from factories import make_paper_embedder, make_tiny_sd

DATA = Path(__file__).parent / "data"
# The flags CI's sandbox needs (no GPU, no sandbox, no network calls of the browser's own).
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1280,1400",
                  "--disable-dev-shm-usage"]
FAKE_MIC_FLAGS = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]


def make_models(folder: Path, fast: bool = True) -> dict[str, Path]:
    """The tiny models, in their real formats; with the fast switch's LCM-LoRA and TAESD."""
    parts = {"sd": make_tiny_sd(folder / "sd", text_width=32),
             "embedder": make_paper_embedder(folder / "emb.bin", input_dim=96, token_dim=32,
                                             seed=5),
             "audio_encoder": DATA / "tiny_beats.pt"}
    if fast:
        from fast_factories import make_lcm_lora, make_tiny_taesd

        parts["lcm_lora"] = make_lcm_lora(folder / "lcm" / "pytorch_lora_weights.safetensors",
                                          parts["sd"])
        parts["taesd"] = make_tiny_taesd(folder / "taesd")
    return parts


def model_args(parts: dict[str, Path]) -> list[str]:
    args = ["--device", "cpu", "--dtype", "float32", "--offline"]
    for role in ("sd", "audio_encoder", "embedder", "lcm_lora", "taesd"):
        if role in parts:
            args += [f"--{role.replace('_', '-')}", str(parts[role])]
    return args


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Server:
    process: subprocess.Popen
    url: str
    root: Path
    port: int

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout)


def start_server(parts: dict[str, Path], *extra: str, cwd: Path | None = None,
                 timeout: float = 90) -> Server:
    """``audiotoken ui`` with the tiny models on a free port; returns once it answers."""
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "audiotoken_cli", "ui", "--port", str(port), *model_args(parts),
         *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd)
    deadline = time.monotonic() + timeout
    lines = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        found = re.search(r"serving on (\S+) .*kept in (\S+) until", line)
        if found:
            _drain(process)
            return Server(process, found.group(1).rstrip("/"), Path(found.group(2)), port)
    process.kill()
    raise AssertionError("the server did not start:\n" + "".join(lines))


def _drain(process: subprocess.Popen) -> None:
    """Keep reading the server's output, so a full pipe never blocks it; kept for failures."""
    import threading

    process.log = []  # type: ignore[attr-defined]

    def read():
        for line in process.stdout:
            process.log.append(line)  # type: ignore[attr-defined]

    threading.Thread(target=read, daemon=True).start()


def chromium_or_skip() -> tuple[str, str]:
    """The browser and its driver. Absent on a developer's machine: skip, saying how to get
    them. Absent in CI (CI=true): fail, since CI must run these tests."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    debian = Path("/usr/lib/chromium/chromedriver")
    driver = shutil.which("chromedriver") or (str(debian) if debian.exists() else None)
    if browser and driver:
        return browser, driver
    reason = ("no chromium/chromedriver: apt-get install chromium chromium-driver to run the "
              "browser tests")
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI must run the browser tests, but {reason}")
    pytest.skip(reason)


def open_browser(profile: Path, downloads: Path, fake_mic: Path | None = None):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver = chromium_or_skip()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    if fake_mic is not None:
        for flag in FAKE_MIC_FLAGS + [f"--use-file-for-fake-audio-capture={fake_mic}"]:
            options.add_argument(flag)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads)})
    return webdriver.Chrome(options=options, service=Service(executable_path=driver))
