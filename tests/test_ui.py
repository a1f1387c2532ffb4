"""`audiotoken ui` over plain HTTP: what it binds to, what files it will serve, what a request
naming a server path gets, the install hint without gradio, and the clean-up at shutdown."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from ui_support import make_models, start_server

pytest.importorskip("gradio", reason="audiotoken ui needs the [ui] extra")
SECRET = "the server's own secret, never to be served"


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    return make_models(tmp_path_factory.mktemp("models"), fast=False)


@pytest.fixture(scope="module")
def served(parts, tmp_path_factory):
    """A server whose working folder holds a secret file; a second secret lies beside it."""
    home = tmp_path_factory.mktemp("server-cwd")
    (home / "secret.txt").write_text(SECRET)
    (home.parent / "outside.txt").write_text(SECRET)
    server = start_server(parts, "--max-upload-mb", "1", cwd=home)
    yield server, home
    assert server.stop() == 0


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def test_without_gradio_it_says_how_to_install_and_exits_2():
    code = ("import sys; sys.modules['gradio'] = None; sys.argv = ['audiotoken', 'ui']; "
            "from audiotoken_cli.cli import main; main()")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == 'audiotoken ui needs gradio: pip install "audiotoken-cli[ui]"'
    assert done.stdout == ""


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's socket table")
def test_it_listens_on_the_loopback_address_only(served):
    server, _ = served
    listening = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, port = local.split(":")
        if int(port, 16) == server.port and state == "0A":  # 0A: LISTEN
            listening.append(address)
    assert listening == ["0100007F"], listening  # 127.0.0.1, little-endian hex
    assert not Path("/proc/net/tcp6").exists() or f":{server.port:04X} " not in \
        Path("/proc/net/tcp6").read_text()


@pytest.mark.parametrize("route", ["/gradio_api/file=", "/file="])
def test_no_file_outside_the_apps_folder_can_be_read(served, route):
    server, home = served
    targets = [str(home / "secret.txt"), "secret.txt", "../outside.txt",
               f"{server.root}/../{home.name}/secret.txt", str(home.parent / "outside.txt"),
               "/etc/passwd", f"{server.root}/%2e%2e/{home.name}/secret.txt",
               urllib.parse.quote(f"{server.root}/../{home.name}/secret.txt", safe="")]
    for target in targets:
        status, body = get(server.url + route + target)
        assert SECRET not in body and "root:" not in body, (route, target, status)
        assert status != 200, (route, target, status)


def call_generate(server, path: str, steps: int = 2, rendering=None) -> str:
    """The Generate button's API call with ``path`` as the uploaded file; the event stream.
    ``rendering`` (a threading.Event) is set when the page would say "rendering"."""
    upload = {"path": path, "meta": {"_type": "gradio.FileData"}, "orig_name": Path(path).name}
    data = [upload, None, "a photo of <*>", "", 1, 1, steps, 7.5, "dpm++", 64, 64, False]
    request = urllib.request.Request(
        server.url + "/gradio_api/call/generate", data=json.dumps({"data": data}).encode(),
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        event = json.loads(response.read())["event_id"]
    lines = []
    try:
        with urllib.request.urlopen(f"{server.url}/gradio_api/call/generate/{event}",
                                    timeout=60) as response:
            for raw in response:
                lines.append(raw.decode(errors="replace"))
                if rendering is not None and "rendering 1 image" in lines[-1]:
                    rendering.set()
    except urllib.error.HTTPError as error:
        lines.append(error.read().decode(errors="replace"))
    except OSError:  # the server went away mid-stream (the shutdown test)
        pass
    return "".join(lines)


def upload_file(server, path: Path) -> str:
    """POST a file to gradio's upload route, as the browser does; its path on the server."""
    boundary = "audiotoken-test-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; "
            f"filename=\"{path.name}\"\r\nContent-Type: audio/wav\r\n\r\n").encode() \
        + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(server.url + "/gradio_api/upload", data=body, headers={
        "Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())[0]


def test_a_request_naming_a_server_path_as_its_upload_is_refused(served, tmp_path):
    from factories import tone, write_audio

    server, home = served
    for path in (str(home / "secret.txt"), f"{server.root}/../{home.name}/secret.txt",
                 str(home.parent / "outside.txt")):
        stream = call_generate(server, path)
        assert SECRET not in stream
        assert "event: error" in stream and "made 1 image" not in stream, stream
    assert not list(server.root.glob("sessions/*/generate-*/*.png"))
    # The same call with a file the server was sent does render: the refusals above were the
    # path's doing, not the request's shape.
    sound = write_audio(tmp_path / "ok.wav", tone(1.0, seed=1))
    stream = call_generate(server, upload_file(server, sound))
    assert "made 1 image of ok.wav" in stream, stream


def fast_switch_value(server) -> bool:
    config = json.loads(get(server.url + "/config")[1])
    [switch] = [c for c in config["components"] if c.get("props", {}).get("elem_id") == "fast"]
    return switch["props"]["value"]


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_stopping_the_server_removes_every_upload_and_output(parts, stop):
    fast = stop == signal.SIGINT  # one of the two also shows that --fast starts the switch on
    server = start_server(parts, *(["--fast"] if fast else []))
    try:
        check_stop(server, stop, fast)
    finally:  # a failed check must not leave the server running
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait(30)
            shutil.rmtree(server.root, ignore_errors=True)


def check_stop(server, stop: int, fast: bool) -> None:
    assert fast_switch_value(server) is fast
    assert server.root.is_dir()
    if stop == signal.SIGTERM:  # ... even with a long render in flight, which stops at its step
        import threading

        from factories import tone, write_audio

        sound = write_audio(server.root.parent / f"{server.root.name}-long.wav", tone(1.0))
        uploaded = upload_file(server, sound)
        sound.unlink()
        rendering = threading.Event()
        threading.Thread(target=call_generate, args=(server, uploaded, 150, rendering),
                         daemon=True).start()
        assert rendering.wait(60), "the render never started"
    began = time.monotonic()
    assert server.stop(stop) == 0, "".join(server.process.log[-20:])
    assert time.monotonic() - began < 30
    assert not server.root.exists()


def test_a_port_in_use_is_one_line_and_exit_2(parts):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "audiotoken_cli", "ui", "--port", str(port),
                               "--sd", str(parts["sd"]), "--offline"], capture_output=True,
                              text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith(f"error: cannot listen on 127.0.0.1:{port}"), done.stderr
    assert "Traceback" not in done.stderr


def test_help_names_the_safe_defaults_without_importing_gradio_or_torch():
    code = ("import sys; sys.argv = ['audiotoken', 'ui', '--help']\n"
            "from audiotoken_cli.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('loaded:', sorted(m for m in ('gradio', 'torch') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env={**__import__("os").environ, "COLUMNS": "100"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("loaded: []")
    assert "--host ADDRESS" in done.stdout and "[default: 127.0.0.1]" in done.stdout
    assert "--share / --no-share" in done.stdout and "[default: no-share]" in done.stdout
    for option in ("--max-upload-mb", "--max-duration", "--embedder", "--lcm-lora", "--device"):
        assert option in done.stdout
    assert "list[str]" not in done.stdout and "<float>" not in done.stdout


def test_an_upload_over_the_cap_is_refused_by_the_server(served, tmp_path):
    server, _ = served
    big = tmp_path / "big.wav"
    big.write_bytes(b"\0" * (1024 * 1024 + 1))
    with pytest.raises(urllib.error.HTTPError) as refused:
        upload_file(server, big)
    assert refused.value.code == 413
    assert not list(server.root.rglob("big.wav"))
