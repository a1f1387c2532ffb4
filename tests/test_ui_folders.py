"""The ui's folders: a session id can never become a path, and an upload is checked (where it
lies, its size, its duration from the header) before anything decodes it. No gradio needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from audiotoken_cli.errors import InputError
from audiotoken_cli.ui.folders import Limits, ServerFolders
from factories import tone, write_audio


@pytest.fixture
def folders(tmp_path):
    made = ServerFolders.create(Limits(max_upload_mb=1.0, max_duration=5.0))
    yield made
    made.remove_all()
    assert not made.root.exists()


@pytest.mark.parametrize("session", ["../../etc", "/etc", "a/../../b", "..", ""])
def test_a_session_id_names_a_folder_inside_the_root_only(folders, session):
    folder = folders.session(session)
    assert folder.parent == folders.root / "sessions" and ".." not in folder.name
    folders.end_session(session)
    assert not folder.exists()


def test_runs_never_share_a_folder(folders):
    first, second = folders.new_run("s", "generate"), folders.new_run("s", "generate")
    assert first != second and first.is_dir() and second.is_dir()


def test_an_upload_inside_the_root_within_the_limits_passes(folders):
    (folders.root / "up").mkdir()
    sound = write_audio(folders.root / "up" / "ok.wav", tone(2.0))
    assert folders.checked_upload(str(sound)) == sound.resolve()


@pytest.mark.parametrize("where", ["outside", "traversal"])
def test_a_file_outside_the_root_is_refused(folders, tmp_path, where):
    sound = write_audio(tmp_path / "elsewhere.wav", tone(1.0))
    # "traversal": a path that starts with the root's own name, then climbs out of it
    path = sound if where == "outside" else \
        Path(f"{folders.root}/{'../' * len(folders.root.parts)}{str(sound).lstrip('/')}")
    with pytest.raises(InputError, match="elsewhere.wav: not an upload of this session"):
        folders.checked_upload(str(path))


def test_a_file_over_the_size_limit_is_refused_before_probing(folders):
    big = folders.root / "big.wav"
    big.write_bytes(b"\0" * (2 * 1024 * 1024))  # not even media: the size check comes first
    with pytest.raises(InputError,
                       match=r"big.wav: 2 MB is over this server's upload limit of 1 MB"):
        folders.checked_upload(str(big))


def test_a_recording_longer_than_the_limit_is_refused_from_its_header(folders):
    (folders.root / "up").mkdir()
    long = write_audio(folders.root / "up" / "long.wav", tone(6.0))
    with pytest.raises(InputError,
                       match=r"long.wav: 6 s is longer than the 5 s this server accepts"):
        folders.checked_upload(str(long))


def test_no_upload_says_so(folders):
    with pytest.raises(InputError, match="no file: upload a sound first"):
        folders.checked_upload(None)


def test_the_page_gets_the_clis_line_with_file_names_not_server_paths(folders):
    from audiotoken_cli.ui.messages import one_line

    upload = folders.root / "3f2a" / "notes.wav"
    error = InputError(f"{upload}: not an audio or video file FFmpeg can read")
    assert one_line(error, folders.root) == \
        "error: notes.wav: not an audio or video file FFmpeg can read"


def test_a_bug_reaches_the_page_as_one_line_without_its_details(folders):
    from audiotoken_cli.ui.messages import one_line

    line = one_line(RuntimeError(f"secret state at {folders.root}/x\nline two"), folders.root)
    assert line == "error: internal error (RuntimeError); the server's log has the details"


def test_a_render_that_ends_after_its_tab_closed_leaves_nothing(folders):
    run = folders.new_run("tab", "live")
    assert folders.keep("tab", lambda: (run / "a.png").write_bytes(b"png"))
    late = folders.new_run("tab", "video")
    folders.end_session("tab")
    assert not run.exists()
    assert not folders.keep("tab", lambda: run.mkdir(parents=True))  # a late image: dropped
    late.mkdir(parents=True)  # a video writer that recreated its folder meanwhile
    folders.discard_if_ended("tab", late)
    assert not run.exists() and not late.exists()
    with pytest.raises(Exception, match="this browser session has ended"):
        folders.new_run("tab", "generate")


def test_the_ui_package_imports_only_the_public_api():
    """Issue 18: the app holds no pipeline code; it calls ``import audiotoken_cli`` and its
    public names (and the public error types), nothing below them."""
    import ast

    package = Path(__file__).parent.parent / "audiotoken_cli" / "ui"
    allowed = {"audiotoken_cli", "audiotoken_cli.errors"}
    for module in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(module.read_text())):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            for name in names:
                if name.startswith("audiotoken_cli") and not name.startswith("audiotoken_cli.ui"):
                    assert name in allowed, f"{module.name} imports {name}"
