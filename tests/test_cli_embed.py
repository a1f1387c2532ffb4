"""`audiotoken embed` end to end: through Typer's runner and through the installed command."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from typer.testing import CliRunner

from audiotoken_cli import __version__
from audiotoken_cli.audio.decode import load_window
from audiotoken_cli.models.beats import load_beats
from audiotoken_cli.cli import app
from audiotoken_cli.models.embedder import load_embedder
from audiotoken_cli.audio.fbank import beats_fbank
from factories import make_paper_embedder, make_tiny_sd, tone, write_audio, write_video
from hostile_factories import FLOAT, write_wav

DATA = Path(__file__).parent / "data"
TINY_BEATS = DATA / "tiny_beats.pt"  # the official architecture, 12 narrow layers (D = 32)
runner = CliRunner()


@pytest.fixture
def models(tmp_path) -> tuple[Path, Path]:
    embedder = make_paper_embedder(tmp_path / "embedder_learned_embeds.bin", input_dim=96,
                                   token_dim=32, seed=3)
    return TINY_BEATS, embedder


@pytest.fixture
def clips(tmp_path) -> list[Path]:
    folder = tmp_path / "sounds"
    folder.mkdir()
    return [
        write_audio(folder / "dog.wav", tone(3.0, freq=300, seed=1)),
        write_audio(folder / "rain.flac", tone(12.0, rate=44100, freq=900, channels=2, seed=2),
                    rate=44100),
    ]


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def embed_args(models, *extra):
    beats, embedder = models
    return ("embed", *extra, "--audio-encoder", beats, "--embedder", embedder, "--device", "cpu")


def expected_token(path: Path, models, start=0.0, duration=10.0) -> torch.Tensor:
    """The token computed step by step through the library, for comparison."""
    from audiotoken_cli.config import Window

    beats = load_beats(models[0])
    embedder = load_embedder(models[1]).model
    waveform = load_window(path, Window(start, duration))[None]
    with torch.no_grad():
        return embedder(beats(beats_fbank(waveform)))[0]


def test_embed_writes_a_token_file_beside_each_input(models, clips):
    result = invoke(*embed_args(models, *clips))
    assert result.exit_code == 0, result.output
    for clip in clips:
        out = clip.with_suffix(".safetensors")
        umask = os.umask(0)
        os.umask(umask)
        assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0600
        tensors = load_file(out)
        assert list(tensors) == ["emb_params"]
        token = tensors["emb_params"]
        assert token.dtype == torch.float32 and token.shape == (1, 32)
        torch.testing.assert_close(token[0], expected_token(clip, models), rtol=1e-5, atol=1e-6)
        with safe_open(str(out), "pt") as handle:
            meta = handle.metadata()
        assert meta["audio_file"] == clip.name
        assert meta["prompt"] == "a photo of <*>"
        assert meta["window_duration"] == "10" and meta["window_start"] == "0"
        assert meta["tool"] == f"audiotoken-cli {__version__}"
        assert meta["device"] == "cpu" and meta["dtype"] == "float32"
        assert len(meta["audio_sha256"]) == 64 and len(meta["audio_encoder_sha256"]) == 64
    assert "2 token files of 2 sounds written" in result.output


def test_batch_size_does_not_change_tokens(models, clips, tmp_path):
    invoke(*embed_args(models, *clips, "-o", tmp_path / "one", "--batch-size", "1"))
    invoke(*embed_args(models, *clips, "-o", tmp_path / "two", "--batch-size", "2"))
    for clip in clips:
        a = load_file(tmp_path / "one" / f"{clip.stem}.safetensors")["emb_params"]
        b = load_file(tmp_path / "two" / f"{clip.stem}.safetensors")["emb_params"]
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_output_dir_window_options_and_video_input(models, tmp_path):
    video = write_video(tmp_path / "clip.mp4", tone(3.0, seed=4))
    result = invoke(*embed_args(models, video, "-o", tmp_path / "out", "--start", "0.5",
                                "--duration", "2"))
    assert result.exit_code == 0, result.output
    token = load_file(tmp_path / "out" / "clip.safetensors")["emb_params"][0]
    torch.testing.assert_close(token, expected_token(video, models, 0.5, 2.0), rtol=1e-5,
                               atol=1e-6)
    assert not (tmp_path / "clip.safetensors").exists()


def test_existing_outputs_are_kept_unless_overwrite(models, clips):
    target = clips[0].with_suffix(".safetensors")
    target.write_bytes(b"keep me")
    result = invoke(*embed_args(models, clips[0]))
    assert result.exit_code == 0
    assert target.read_bytes() == b"keep me"
    assert "skipped" in result.output and "--overwrite" in result.output
    result = invoke(*embed_args(models, clips[0], "--overwrite"))
    assert result.exit_code == 0
    assert "emb_params" in load_file(target)


def test_folders_and_glob_patterns(models, clips, tmp_path):
    result = invoke(*embed_args(models, clips[0].parent, "-o", tmp_path / "a"))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["dog.safetensors",
                                                                  "rain.safetensors"]
    # A pattern the shell did not expand (quoted) is expanded by audiotoken itself.
    result = invoke(*embed_args(models, str(clips[0].parent / "*.wav"), "-o", tmp_path / "b"))
    assert result.exit_code == 0, result.output
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["dog.safetensors"]


def test_same_stem_collision_is_reported_not_overwritten(models, clips, tmp_path):
    other = write_audio(tmp_path / "dog.mp3", tone(2.0, rate=44100, seed=9), rate=44100)
    result = invoke(*embed_args(models, clips[0], other, "-o", tmp_path / "out"))
    assert result.exit_code == 1
    assert f"{other}: its output dog.safetensors would overwrite the one for {clips[0]}" in \
        result.output.replace("\n", "")
    torch.testing.assert_close(load_file(tmp_path / "out" / "dog.safetensors")["emb_params"][0],
                               expected_token(clips[0], models), rtol=1e-5, atol=1e-6)


def _write_bad_inputs(folder: Path) -> dict[str, str]:
    """One file for every kind of bad input, and the words its error must contain."""
    folder.mkdir()
    (folder / "empty.wav").write_bytes(b"")
    (folder / "notes.mp3").write_text("not audio\n" * 100)
    huge = np.random.default_rng(0).standard_normal((1, 32000)).astype(np.float32) * 1e30
    write_wav(folder / "huge.wav", huge, fmt=FLOAT)  # finite samples, but the fbank overflows
    good = write_audio(folder / "tmp.mp3", tone(2.0, rate=44100), rate=44100).read_bytes()
    (folder / "corrupt.mp3").write_bytes(good[:100] + os.urandom(len(good) - 100))
    (folder / "tmp.mp3").unlink()
    write_video(folder / "mute.mp4", None)
    (folder / "nothing_here").mkdir()
    return {
        "missing.wav": "no such file",
        "empty.wav": "the file is empty",
        "notes.mp3": "not an audio or video file",
        "huge.wav": "NaN or infinite token",
        "corrupt.mp3": "",
        "mute.mp4": "has no audio track",
        "nothing_here": "no audio or video files in this folder",
    }


def test_bad_inputs_fail_alone_with_one_line_each(models, clips, tmp_path):
    bad = tmp_path / "bad"
    expectations = _write_bad_inputs(bad)
    arguments = [bad / name for name in expectations]
    result = invoke(*embed_args(models, clips[0], *arguments, clips[1], "-o", tmp_path / "out"))
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    error_lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    # The summary lists files in the order given.
    table = [line.split()[0] for line in result.output.splitlines()
             if line.endswith(("written", "failed")) and not line[0].isdigit()]
    assert table[0].endswith("dog.wav") and table[-1].endswith("rain.flac")
    for name, words in expectations.items():
        line = next((l for l in error_lines if f"{bad / name}:" in l), None)
        assert line is not None, f"no error line for {name}:\n{result.output}"
        assert words in line
    # The good files around them were still done; no partial files anywhere.
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["dog.safetensors", "rain.safetensors"]
    assert not [p for p in tmp_path.rglob("*.partial")]


def test_model_errors_are_one_line_and_debug_shows_the_traceback(models, clips, tmp_path):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"garbage")
    args = ("embed", clips[0], "--audio-encoder", broken, "--embedder", models[1])
    result = invoke(*args)
    assert result.exit_code == 1
    assert f"error: {broken}" in result.output and "Traceback" not in result.output
    result = invoke("--debug", *args)
    assert result.exit_code == 1 and "Traceback" in result.output


def test_embedder_and_encoder_widths_must_agree(tmp_path, clips):
    wrong = make_paper_embedder(tmp_path / "wide.bin", input_dim=48, token_dim=32)
    result = invoke("embed", clips[0], "--audio-encoder", TINY_BEATS, "--embedder", wrong)
    assert result.exit_code == 1
    assert "expects 48-wide audio features" in result.output and "gives 96" in result.output


def test_without_component_options_the_preset_is_used_and_offline_says_what_is_missing(clips):
    # No --audio-encoder/--embedder: the default preset's files are needed; with the network
    # off and an empty cache the error names the missing component and the command to fetch it.
    result = invoke("embed", clips[0], "--offline")
    assert result.exit_code == 1
    assert "Space GuyYariv/AudioToken" in result.output
    assert "not in the cache" in result.output and "pass --audio-encoder PATH" in result.output


def test_output_loads_in_diffusers_textual_inversion(models, clips, tmp_path):
    from diffusers import StableDiffusionPipeline

    invoke(*embed_args(models, clips[0]))
    token_file = clips[0].with_suffix(".safetensors")
    pipe = StableDiffusionPipeline.from_pretrained(make_tiny_sd(tmp_path / "sd", text_width=32))
    pipe.load_textual_inversion(str(token_file), token="<x>")
    token_id = pipe.tokenizer.convert_tokens_to_ids("<x>")
    row = pipe.text_encoder.get_input_embeddings().weight[token_id]
    torch.testing.assert_close(row, load_file(token_file)["emb_params"][0])


# ---------------------------------------------------------------------------------------------
# The installed command, in a subprocess.


def _audiotoken() -> list[str]:
    installed = shutil.which("audiotoken", path=str(Path(sys.executable).parent))
    return [installed] if installed else [sys.executable, "-m", "audiotoken_cli"]


def test_installed_command_help_version_and_embed(models, clips, tmp_path):
    help_text = subprocess.run(_audiotoken() + ["--help"], capture_output=True, text=True)
    assert help_text.returncode == 0 and "embed" in help_text.stdout
    version = subprocess.run(_audiotoken() + ["--version"], capture_output=True, text=True)
    assert version.stdout.strip() == f"audiotoken {__version__}"
    embed_help = subprocess.run(_audiotoken() + ["embed", "--help"], capture_output=True,
                                text=True)
    assert "Example" in embed_help.stdout

    args = [str(a) for a in embed_args(models, clips[0], tmp_path / "missing.wav",
                                       "-o", tmp_path / "out")]
    done = subprocess.run(_audiotoken() + args, capture_output=True, text=True)
    assert done.returncode == 1
    assert f"error: {tmp_path / 'missing.wav'}: no such file" in done.stderr
    assert (tmp_path / "out" / "dog.safetensors").exists()


def test_python_dash_m_runs_the_same_app():
    done = subprocess.run([sys.executable, "-m", "audiotoken_cli", "--version"],
                          capture_output=True, text=True)
    assert done.stdout.strip() == f"audiotoken {__version__}"


def test_help_does_not_import_torch():
    code = ("import sys; from audiotoken_cli.cli import app; "
            "sys.argv = ['audiotoken', 'embed', '--help']\n"
            "try:\n    app()\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n"
            "assert 'av' not in sys.modules, 'av was imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user")
def test_unreadable_file_as_another_user(models, tmp_path):
    # Root reads every file, so run the command as 'nobody' on a file only root may read.
    shared = Path("/tmp") / f"audiotoken-perm-{os.getpid()}"
    shared.mkdir(exist_ok=True)
    try:
        shared.chmod(0o777)
        locked = write_audio(shared / "locked.wav", tone(1.0))
        locked.chmod(0o600)
        # Import first: the interpreter's own files may be unreadable to 'nobody'.
        code = ("import os, av, torch; from audiotoken_cli.audio.decode import load_window\n"
                "os.setgid(65534); os.setuid(65534)\n"
                "try:\n    load_window(%r)\nexcept Exception as e:\n    print(e)" % str(locked))
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert done.stdout.strip() == f"{locked}: cannot be read (permission denied)", done.stderr
    finally:
        shutil.rmtree(shared)


def test_a_missing_file_is_reported_before_any_model_is_fetched(tmp_path):
    # With the cache empty and downloads off, reaching for a model would fail loudly; a run with
    # nothing to do must stop at the file instead.
    result = invoke("embed", tmp_path / "nope.wav", "--offline")
    assert result.exit_code == 1
    assert f"error: {tmp_path / 'nope.wav'}: no such file" in result.output
    assert "not in the cache" not in result.output
