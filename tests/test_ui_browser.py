"""`audiotoken ui` in a real headless Chromium (selenium + Debian's chromium-driver).

One server with the tiny models serves every test here; each test opens its own browser. The
screenshots of the three tabs are saved into docs/ for docs/ui.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from factories import tone, write_audio
from PIL import Image
from typer.testing import CliRunner
from ui_support import (
    chromium_or_skip,
    make_models,
    model_args,
    open_browser,
    start_server,
)

from audiotoken_cli.cli import app

pytestmark = pytest.mark.browser
DOCS = Path(__file__).parent.parent / "docs"
SMALL = {"steps": 3, "width": 64, "height": 64}


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    chromium_or_skip()
    return make_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def server(parts):
    running = start_server(parts)
    yield running
    code = running.stop()
    assert code == 0, "".join(running.process.log[-40:])
    assert not running.root.exists(), "the server left its uploads and outputs behind"


@pytest.fixture
def browser(tmp_path, server):
    driver = open_browser(tmp_path / "profile", tmp_path / "downloads")
    driver.get(server.url)
    wait_for(driver, "#generate-button")
    yield driver
    driver.quit()


def wait_for(driver, css: str, count: int = 1, timeout: float = 60, text: str | None = None,
             visible: bool = True):
    """The elements matching ``css`` once there are ``count`` of them (and, if given, the first
    one's text contains ``text``); fails with the page's status lines otherwise."""
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [e for e in driver.find_elements(By.CSS_SELECTOR, css)
                 if e.is_displayed() or not visible]
        # gradio breaks a file's name over lines (stem, suffix): compare without them
        if len(found) >= count and (text is None or text in found[0].text.replace("\n", "")):
            return found
        time.sleep(0.2)
    statuses = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "[id$=-status]")]
    raise AssertionError(f"waited {timeout} s for {count} × {css!r} (text {text!r}); "
                         f"status lines: {statuses}")


def texts_until(driver, css: str, final: str, timeout: float = 120) -> list[str]:
    """Every text the element showed until it showed ``final`` (progress, loading notes)."""
    from selenium.webdriver.common.by import By

    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = driver.find_element(By.CSS_SELECTOR, css).text.replace("\n", " ")
        if not seen or seen[-1] != text:
            seen.append(text)
        if final in text:
            return seen
        time.sleep(0.1)
    raise AssertionError(f"{css} never showed {final!r}; it showed {seen[-5:]}")


def set_value(driver, elem_id: str, value) -> None:
    """Type into a number box, a slider's number box or a textbox, as a user would."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = driver.find_element(By.CSS_SELECTOR, f"#{elem_id} input[type=number], "
                                               f"#{elem_id} textarea, #{elem_id} input")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(str(value))
    box.send_keys(Keys.TAB)


def open_sampler_settings(driver) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, "#sampler-settings button").click()
    wait_for(driver, "#steps input[type=number]")


def small_settings(driver, seed: int, n: int) -> None:
    set_value(driver, "seed", seed)
    set_value(driver, "num-images", n)
    open_sampler_settings(driver)
    for name, value in SMALL.items():
        set_value(driver, name, value)


def upload(driver, elem_id: str, path: Path) -> None:
    from selenium.webdriver.common.by import By

    for old in driver.find_elements(By.CSS_SELECTOR, f"#{elem_id} button[aria-label=Clear]"):
        old.click()  # the file shown before makes way for the new one
    wait_for(driver, f"#{elem_id} input[type=file]", timeout=10, visible=False)
    driver.find_element(By.CSS_SELECTOR, f"#{elem_id} input[type=file]").send_keys(str(path))
    wait_for(driver, f"#{elem_id}", text=path.name)


def click(driver, elem_id: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, elem_id).click()


def gallery_urls(driver, elem_id: str) -> list[str]:
    from selenium.webdriver.common.by import By

    images = driver.find_elements(By.CSS_SELECTOR, f"#{elem_id} img")
    return list(dict.fromkeys(image.get_attribute("src") for image in images))


def screenshot(driver, name: str) -> None:
    DOCS.mkdir(exist_ok=True)
    driver.execute_script("window.scrollTo(0, 0)")
    driver.save_screenshot(str(DOCS / f"ui-{name}.png"))


def cli_model_args(parts) -> list[str]:
    """The server's model options, less the fast switch's weights (the plain model's run)."""
    return model_args({role: path for role, path in parts.items()
                       if role not in ("lcm_lora", "taesd")})


def cli_images(parts, sound: Path, out: Path, seed: int, n: int) -> list[Path]:
    argv = ["generate", str(sound), "-n", str(n), "--seed", str(seed), "-o", str(out),
            "--steps", str(SMALL["steps"]), "-W", str(SMALL["width"]), "-H",
            str(SMALL["height"]), *cli_model_args(parts)]
    # The real command in its own process, with the server's thread count (ui_support starts the
    # server with OMP_NUM_THREADS=1): CPU float sums depend on the number of threads, so pixel
    # equality holds between processes that use the same number.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "audiotoken_cli", *argv], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return [out / f"{sound.stem}_seed{seed + i}.png" for i in range(n)]


def test_generate_gives_the_clis_pngs_then_a_bad_file_gives_one_line(browser, server, parts,
                                                                     tmp_path):
    from selenium.webdriver.common.by import By

    sound = write_audio(tmp_path / "bell.wav", tone(3.0, freq=330, seed=2))
    upload(browser, "generate-upload", sound)
    small_settings(browser, seed=11, n=2)
    click(browser, "generate-button")
    seen = texts_until(browser, "#generate-status", "made 2 images of bell.wav")
    assert any("loading models" in text for text in seen), seen  # the first request loads them
    wait_for(browser, "#gallery img", count=2)
    urls = gallery_urls(browser, "gallery")
    assert len(urls) == 2, urls
    screenshot(browser, "generate")

    expected = cli_images(parts, sound, tmp_path / "cli", seed=11, n=2)
    for url, made in zip(urls, expected):
        with urllib.request.urlopen(url) as response:
            (tmp_path / "page.png").write_bytes(response.read())
        page, cli = Image.open(tmp_path / "page.png"), Image.open(made)
        assert np.array_equal(np.asarray(page.convert("RGB")), np.asarray(cli.convert("RGB")))
        ours, theirs = json.loads(page.text["audiotoken"]), json.loads(cli.text["audiotoken"])
        # Every setting, hash and the file's name agree; only where the sound lay differs
        # (the server's upload folder, not the test's).
        assert ours.pop("audio_path") != theirs.pop("audio_path")
        assert ours == theirs
        assert page.text["parameters"] == cli.text["parameters"]

    # "Reuse this image's settings" puts the second image's seed back into the form.
    set_value(browser, "seed", 99)
    wait_for(browser, "#gallery button img", count=2)[1].click()
    click(browser, "reuse")
    wait_for(browser, "#generate-status", text="settings of image 2 (seed 12)")
    assert browser.find_element(By.CSS_SELECTOR, "#seed input").get_attribute("value") == "12"

    # "Download the audio token": the file `audiotoken embed` writes for the same sound.
    click(browser, "token-button")
    link = wait_for(browser, "#token-file a[href]", timeout=60)[0].get_attribute("href")
    with urllib.request.urlopen(link) as response:
        (tmp_path / "page.safetensors").write_bytes(response.read())
    embed_models = {role: parts[role] for role in ("audio_encoder", "embedder")}
    embed = CliRunner().invoke(app, ["embed", str(sound), "-o", str(tmp_path / "embed"),
                                     *model_args(embed_models)])
    assert embed.exit_code == 0, embed.output
    assert_same_token(tmp_path / "page.safetensors", tmp_path / "embed" / "bell.safetensors")

    bad = tmp_path / "notes.wav"
    bad.write_text("this is a text file, not a sound\n" * 50)
    upload(browser, "generate-upload", bad)
    click(browser, "generate-button")
    status = wait_for(browser, "#generate-status", text="error:", timeout=60)[0].text
    assert "notes.wav" in status and "Traceback" not in status and "\n" not in status.strip()
    assert str(server.root) not in status

    good = write_audio(tmp_path / "rain.wav", tone(2.0, freq=900, seed=4))
    upload(browser, "generate-upload", good)
    set_value(browser, "steps", 40)  # long enough to watch the progress line
    click(browser, "generate-button")
    seen = texts_until(browser, "body", "made 2 images of rain.wav")
    assert any("2 images × 40 steps:" in text and "of 80 image-steps" in text for text in seen)
    set_value(browser, "steps", SMALL["steps"])

    set_value(browser, "prompt", "a photo")
    click(browser, "generate-button")
    status = wait_for(browser, "#generate-status", text="error:", timeout=60)[0].text
    assert "the prompt 'a photo' must contain the placeholder <*> exactly once" in status, status


def assert_same_token(page: Path, cli: Path) -> None:
    from safetensors import safe_open

    with safe_open(str(page), "pt") as ours, safe_open(str(cli), "pt") as theirs:
        assert ours.get_tensor("emb_params").equal(theirs.get_tensor("emb_params"))
        mine, made = ours.metadata(), theirs.metadata()
    same = {key for key in made if "path" not in key}
    assert {k: mine[k] for k in same} == {k: made[k] for k in same}


def test_video_tab_shows_the_storyboard_then_plays_the_mp4(browser, server, tmp_path):
    from selenium.webdriver.common.by import By

    song = write_audio(tmp_path / "song.wav", tone(5.0, freq=520, seed=6))
    open_sampler_settings(browser)
    for name, value in SMALL.items():
        set_value(browser, name, value)
    browser.find_element(By.ID, "tab-video-button").click()
    upload(browser, "video-upload", song)
    set_value(browser, "video-seed", 3)
    set_value(browser, "video-fps", 3)
    click(browser, "video-button")
    seen = texts_until(browser, "#video-status", "song.wav: 3 keyframes")
    # The storyboard came first, while the frames between were still to render.
    assert any("storyboard done; rendering the frames between" in text for text in seen), seen
    assert wait_for(browser, "#storyboard img")[0].get_attribute("src").endswith(".png")
    source = wait_for(browser, "#video-player video")[0].get_attribute("src")
    with urllib.request.urlopen(source) as response:
        assert response.read(12)[4:8] == b"ftyp"  # an MP4, served to the page
    screenshot(browser, "video")


def test_live_tab_draws_from_the_fake_microphone(server, tmp_path):
    mic = write_audio(tmp_path / "mic.wav", tone(6.0, rate=48000, freq=440, seed=9))
    driver = open_browser(tmp_path / "profile", tmp_path / "downloads", fake_mic=mic)
    try:
        driver.get(server.url)
        wait_for(driver, "#generate-button")
        open_sampler_settings(driver)
        for name, value in SMALL.items():
            set_value(driver, name, value)
        set_value(driver, "seed", 5)
        from selenium.webdriver.common.by import By

        driver.find_element(By.CSS_SELECTOR, "#fast input[type=checkbox]").click()  # LCM path
        set_value(driver, "num-images", 1)

        # A recording made in the Generate tab is a sound like an upload.
        wait_for(driver, "#generate-record button.record-button")[0].click()
        time.sleep(2)
        wait_for(driver, "#generate-record button.stop-button")[0].click()
        wait_for(driver, "#generate-record audio", visible=False)
        click(driver, "generate-button")
        wait_for(driver, "#generate-status", text="made 1 image of", timeout=120)

        driver.find_element(By.ID, "tab-live-button").click()
        set_value(driver, "live-hop", 1)
        set_value(driver, "live-window", 1)
        wait_for(driver, "#live-mic button.record-button")[0].click()
        seen = texts_until(driver, "#live-status", "took", timeout=90)
        assert "listening…" in seen, seen  # (the Generate tab above loaded the fast model)
        wait_for(driver, "#live-gallery img", count=2, timeout=90)
        status = wait_for(driver, "#live-status", text="took")[0].text
        assert "error" not in status
        screenshot(driver, "live")
        assert list(server.root.glob("sessions/*/live-*/*.png"))
    finally:
        driver.quit()
    # The tab is gone, so is its session: its folder goes (gradio notices within seconds).
    deadline = time.monotonic() + 60
    while list(server.root.glob("sessions/*/live-*")) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not list(server.root.glob("sessions/*/live-*")), \
        "the closed session's folder stayed:\n" + "".join(server.process.log[-30:])
