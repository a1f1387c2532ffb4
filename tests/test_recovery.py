"""Killed at any moment, nothing is lost and nothing is stuck (issue 8 §5): real SIGKILL and
SIGTERM sent to `python -m audiotoken_cli train`, and the exact states a kill leaves."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file
from typer.testing import CliRunner

from audiotoken_cli.cli import app
from audiotoken_cli.files import ATOMIC_PARTIAL, remove_stale_partials, write_atomically
from audiotoken_cli.models.embedder import load_embedder
from test_cli_embed import clips, embed_args, models  # noqa: F401  (fixtures)
from test_train import metrics, sd, train_args, train_cli, videos  # noqa: F401  (fixtures)

runner = CliRunner()
AN_HOUR_AGO = time.time() - 3600


def same_files(a: Path, b: Path) -> bool:
    return a.read_bytes() == b.read_bytes()


def plant_leftovers(run: Path) -> list[Path]:
    """What a killed run leaves: an atomic write's temporary, a half-saved checkpoint folder."""
    (run / "checkpoints").mkdir(parents=True, exist_ok=True)
    leftovers = [run / ".config.json.k2j_9xq1.partial", run / "checkpoints" / ".step-7.partial"]
    leftovers[0].write_text("{half")
    leftovers[1].mkdir()
    (leftovers[1] / "embedder.safetensors").write_bytes(b"\0" * 10)
    for path in leftovers:
        os.utime(path, (AN_HOUR_AGO, AN_HOUR_AGO))
    return leftovers


def start_training(videos, run, sd, *extra) -> subprocess.Popen:
    argv = [sys.executable, "-m", "audiotoken_cli",
            *train_args(videos, run, sd, "--max-steps", "500", *extra)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_steps(process, run: Path, count: int) -> None:
    deadline = time.monotonic() + 180
    path = run / "metrics.jsonl"
    while not (path.exists() and path.read_text().count("\n") >= count):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "training did not start in time"
        time.sleep(0.1)


def test_resume_finishes_an_export_that_a_kill_prevented(videos, sd, tmp_path):
    run = tmp_path / "run"
    assert train_cli(*train_args(videos, run, sd, "--max-steps", "2")).exit_code == 0
    checkpoint = run / "checkpoints" / "step-2"
    # The state a SIGKILL after the last checkpoint leaves: no export, the run's first config.
    (run / "embedder.safetensors").unlink()
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({"training": config["training"]}))

    resumed = train_cli(*train_args(videos, run, sd, "--max-steps", "2", "--resume"))
    assert resumed.exit_code == 0, resumed.output
    assert "not exported" in resumed.output
    for name in ("embedder.safetensors", "config.json"):
        assert same_files(run / name, checkpoint / name)
    assert load_embedder(run).model.config.token_dim == 32
    again = train_cli(*train_args(videos, run, sd, "--max-steps", "2", "--resume"))
    assert again.exit_code == 2 and "already trained to step 2" in again.output


def test_resume_replaces_an_export_older_than_the_last_checkpoint(videos, sd, tmp_path):
    run = tmp_path / "run"
    assert train_cli(*train_args(videos, run, sd, "--max-steps", "4", "--save-every",
                                 "2")).exit_code == 0
    older = run / "checkpoints" / "step-2"
    for name in ("embedder.safetensors", "config.json"):  # killed before step 4's export
        shutil.copyfile(older / name, run / name)
    resumed = train_cli(*train_args(videos, run, sd, "--max-steps", "4", "--resume"))
    assert resumed.exit_code == 0 and "step 4 was trained but not exported" in resumed.output
    a, b = load_file(run / "embedder.safetensors"), load_file(
        run / "checkpoints" / "step-4" / "embedder.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def test_a_torn_metrics_line_is_dropped_with_a_note(videos, sd, tmp_path):
    run = tmp_path / "run"
    assert train_cli(*train_args(videos, run, sd, "--max-steps", "2", "--save-every",
                                 "1")).exit_code == 0
    with open(run / "metrics.jsonl", "a") as handle:
        handle.write('{"loss": 0.12, "st')  # a kill in mid-write
    resumed = train_cli(*train_args(videos, run, sd, "--max-steps", "3", "--resume"))
    assert resumed.exit_code == 0, resumed.output
    assert "metrics.jsonl: dropped line 3, torn" in resumed.output
    assert [m["step"] for m in metrics(run)] == [1, 2, 3]


def test_sigkill_then_resume_finishes_and_cleans_up(videos, sd, tmp_path):
    run = tmp_path / "run"
    process = start_training(videos, run, sd, "--save-every", "1")
    wait_for_steps(process, run, 3)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL
    leftovers = plant_leftovers(run)
    not_ours = run / "notes.partial"  # a user's file: not our pattern, never removed
    not_ours.write_text("mine")
    os.utime(not_ours, (AN_HOUR_AGO, AN_HOUR_AGO))
    last = max(int(p.name[5:]) for p in (run / "checkpoints").glob("step-*"))

    resumed = train_cli(*train_args(videos, run, sd, "--max-steps", str(last + 1), "--resume"))
    assert resumed.exit_code == 0, resumed.output
    assert (run / "embedder.safetensors").is_file()
    assert [m["step"] for m in metrics(run)] == list(range(1, last + 2))
    assert not any(path.exists() for path in leftovers)
    assert not_ours.read_text() == "mine"


def test_sigterm_is_handled_like_ctrl_c(videos, sd, tmp_path):
    run = tmp_path / "run"
    process = start_training(videos, run, sd, "--save-every", "1000")
    wait_for_steps(process, run, 2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    done = len(metrics(run))
    assert (run / "checkpoints" / f"step-{done}" / "embedder.safetensors").is_file()
    hidden = [p for p in run.rglob(".*")]
    assert hidden == [], hidden


def test_only_our_own_old_temporaries_are_removed(tmp_path):
    ours_old = tmp_path / ".dog_seed7.png.ab_cd123.partial"
    ours_new = tmp_path / ".rain_seed7.png.zz9_0aaa.partial"
    other = [tmp_path / ".hidden.partial", tmp_path / "dog.png.partial", tmp_path / "x.tmp",
             tmp_path / ".dog.png.ABCDEFGH.partial"]
    for path in (ours_old, ours_new, *other):
        path.write_bytes(b"x")
        os.utime(path, (AN_HOUR_AGO, AN_HOUR_AGO))
    os.utime(ours_new, None)  # written now, by a run beside us: kept
    removed = remove_stale_partials(tmp_path, started=time.time() - 60)
    assert removed == [ours_old]
    assert ours_new.exists() and all(path.exists() for path in other)
    assert remove_stale_partials(tmp_path / "missing") == []


def test_write_atomically_temporaries_match_the_cleanup_pattern(tmp_path):
    names = []
    for target in ("dog_seed7.png", "x", ".hidden", "a b.safetensors", "config.json"):
        write_atomically(tmp_path / target, lambda tmp: names.append(tmp.name) or tmp.write_text("x"))
    assert len(names) == 5 and all(ATOMIC_PARTIAL.match(name) for name in names), names


def test_embed_removes_a_killed_runs_partials_in_its_output_folder(models, clips, tmp_path):
    out = tmp_path / "tokens"
    out.mkdir()
    stale = out / ".dog.safetensors.q1w2e3r4.partial"
    stale.write_bytes(b"half a token")
    os.utime(stale, (AN_HOUR_AGO, AN_HOUR_AGO))
    result = runner.invoke(app, [str(a) for a in embed_args(models, *clips, "-o", out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["dog.safetensors", "rain.safetensors"]
