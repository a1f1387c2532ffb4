"""`generate` at scale: streaming, bounded memory, lazy inputs, the reusable core, torchrun.

Tiny random models in their real formats, built here and loaded through the real code.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from audiotoken_cli.audio.decode import load_window
from audiotoken_cli.config import GenerateSettings, RuntimeSettings, Window
from audiotoken_cli.files import InputProblem, expand_arguments
from audiotoken_cli.pipeline.generate import GenerateEvents, generate_files
from audiotoken_cli.pipeline.renderer import ImageRenderer, RenderedImage, RenderFailure
from factories import make_paper_embedder, make_tiny_sd, tone, write_audio

DATA = Path(__file__).parent / "data"
TINY_BEATS = DATA / "tiny_beats.pt"
ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    return {"sd": make_tiny_sd(folder / "sd", text_width=32),
            "embedder": make_paper_embedder(folder / "emb.bin", input_dim=96, token_dim=32, seed=5)}


def make_clips(folder: Path, count: int, seconds: float = 2.0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [write_audio(folder / f"clip{i:03d}.wav", tone(seconds, freq=200 + 37 * i, seed=i))
            for i in range(count)]


def settings(models, **overrides) -> GenerateSettings:
    values = dict(sd=models["sd"], audio_encoder=TINY_BEATS, embedder=models["embedder"], seed=3,
                  steps=2, width=64, height=64, scheduler="pndm", window=Window(duration=2.0),
                  runtime=RuntimeSettings("cpu", "float32"), batch_size=1)
    values.update(overrides)
    return GenerateSettings(**values)


def pixels(path_or_image) -> np.ndarray:
    image = Image.open(path_or_image) if isinstance(path_or_image, Path) else path_or_image
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_first_png_comes_early_and_files_are_read_only_a_little_ahead(models, tmp_path):
    """24 clips: the first image is on disk before 40 % of the run, with only a few files read."""
    clips = make_clips(tmp_path / "in", 24)
    moments: dict[str, float] = {}
    pulled: list[int] = []

    def sources():
        for i, clip in enumerate(clips):
            pulled.append(i)
            yield clip

    def on_image(path: Path) -> None:
        if "first_image" not in moments:
            moments["first_image"] = time.perf_counter()
            moments["pulled_then"] = len(pulled)
            assert path.is_file()  # on_image comes after the atomic rename

    start = time.perf_counter()
    results = list(generate_files(sources(), settings(models, output_dir=tmp_path / "out"),
                                  GenerateEvents(on_image=on_image)))
    end = time.perf_counter()
    assert [r.source for r in results] == clips and all(r.status == "written" for r in results)
    assert (moments["first_image"] - start) / (end - start) < 0.4
    # About two batches of look-ahead (batch 1 here): the rest of the files were not touched yet.
    assert moments["pulled_then"] <= 8


def test_results_stay_in_order_past_bad_files_and_existing_images(models, tmp_path):
    clips = make_clips(tmp_path, 5)
    clips[1].write_bytes(b"not audio")
    (tmp_path / "clip003_seed3.png").write_bytes(b"mine")
    results = list(generate_files(iter(clips), settings(models, num_images=2, batch_size=3)))
    assert [r.source for r in results] == clips
    assert [r.status for r in results] == ["written", "failed", "written", "written", "written"]
    assert "clip001.wav" in results[1].message
    # A file that is not an image made with these settings is kept; the new image goes beside it.
    assert (tmp_path / "clip003_seed3.png").read_bytes() == b"mine"
    tagged = [p for p in results[3].outputs if p.name.startswith("clip003_seed3_")]
    assert len(tagged) == 1 and tagged[0].is_file()
    assert len(results[4].outputs) == 2


def test_ctrl_c_leaves_only_complete_images(models, tmp_path):
    clips = make_clips(tmp_path, 6)
    steps = []

    def on_step():
        steps.append(1)
        if len(steps) == 7:  # mid-way through the fourth image
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        list(generate_files(iter(clips), settings(models), GenerateEvents(on_step=on_step)))
    from diffusers import PNDMScheduler

    scheduler = PNDMScheduler.from_pretrained(models["sd"] / "scheduler")
    scheduler.set_timesteps(2)
    finished = 6 // len(scheduler.timesteps)  # images whose every step ran before the 7th
    written = sorted(tmp_path.glob("*.png"))
    assert len(written) == finished and 0 < finished < 6
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no .partial files
    for path in written:
        Image.open(path).load()


def test_inputs_are_expanded_lazily(tmp_path):
    """A file created after the first one was handed out still turns up: nothing was listed
    ahead. (10,000 files start at once for the same reason.)"""
    for folder in ("a", "b", "c"):
        make_clips(tmp_path / folder, 2, seconds=0.1)
    stream = (entry.path for entry in expand_arguments([str(tmp_path)]))
    assert next(stream).name == "clip000.wav"
    late = write_audio(tmp_path / "c" / "clip999.wav", tone(0.1))
    rest = list(stream)
    assert late in rest and len(rest) == 6
    errors = list(expand_arguments([str(tmp_path / "nothing*.wav")]))
    assert len(errors) == 1 and isinstance(errors[0], InputProblem)


def test_ten_thousand_files_start_rendering_at_once(models, tmp_path):
    """A folder of 10,000 sounds: the first result comes after a handful of them were looked at
    (the plan is made as the stream goes, not for all files up front)."""
    clip = make_clips(tmp_path, 1)[0]
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(10_000):
        os.link(clip, folder / f"s{i:05d}.wav")
    pulled = []

    def sources():
        for entry in expand_arguments([str(folder)]):
            pulled.append(entry.path)
            yield entry.path

    started = time.perf_counter()
    stream = generate_files(sources(), settings(models, output_dir=tmp_path / "out"))
    first = next(stream)
    seconds = time.perf_counter() - started
    stream.close()
    assert first.status == "written" and first.source.name == "s00000.wav"
    assert len(pulled) < 20, len(pulled)
    print(f"first of 10,000 files written after {seconds:.1f} s")


def test_the_core_streams_images_of_paths_waveforms_and_tokens_without_writing(models, tmp_path):
    clip = make_clips(tmp_path / "in", 1)[0]
    run = settings(models, output_dir=tmp_path / "out", num_images=2)
    [written] = list(generate_files([clip], run))
    renderer = ImageRenderer.load(run)
    waveform = load_window(clip, run.window)
    token = renderer.tokenizer(waveform[None])[0]
    before = set(tmp_path.rglob("*"))
    results = list(renderer.images([clip, waveform, token], num_images=2))
    from audiotoken_cli.pipeline.renderer import Request, Sound

    [refused] = list(renderer.stream([Request(Sound("bad", token=torch.zeros(7)), (1,))]))
    assert isinstance(refused, RenderFailure) and "7 values" in refused.message
    assert set(tmp_path.rglob("*")) == before  # nothing written
    images = [r for r in results if isinstance(r, RenderedImage)]
    assert [r.seed for r in images] == [3, 4] * 3


    for result in images:
        on_disk = tmp_path / "out" / f"clip000_seed{result.seed}.png"
        assert np.array_equal(pixels(result.image), pixels(on_disk))
    png_info = json.loads(Image.open(tmp_path / "out" / "clip000_seed3.png").text["audiotoken"])
    assert images[0].info == png_info
    assert images[2].info["audio_file"] == "waveform" and images[4].info["audio_file"] == "token"


def test_peak_memory_does_not_grow_with_the_number_of_files(models, tmp_path):
    """Peak RSS of 48 clips within 10 % of 12 clips' (each run in a fresh process)."""
    script = textwrap.dedent(f"""
        import resource, sys
        from pathlib import Path
        from audiotoken_cli.config import GenerateSettings, RuntimeSettings, Window
        from audiotoken_cli.pipeline.generate import generate_files
        folder = Path(sys.argv[1])
        run = GenerateSettings(sd=Path({str(models["sd"])!r}), audio_encoder=Path({str(TINY_BEATS)!r}),
                               embedder=Path({str(models["embedder"])!r}), seed=1, steps=1,
                               width=64, height=64, scheduler="pndm", batch_size=2,
                               window=Window(duration=10.0), output_dir=folder / "out",
                               runtime=RuntimeSettings("cpu", "float32"))
        results = list(generate_files(sorted(folder.glob("*.wav")), run))
        assert all(r.status == "written" for r in results), results
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    """)
    peaks = {}
    for count in (12, 48):
        folder = tmp_path / str(count)
        make_clips(folder, count, seconds=10.0)
        done = subprocess.run([sys.executable, "-c", script, str(folder)], capture_output=True,
                              text=True, timeout=600, cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert done.returncode == 0, done.stderr[-2000:]
        peaks[count] = int(done.stdout.split()[-1])
        assert len(list((folder / "out").glob("*.png"))) == count
    assert peaks[48] <= 1.10 * peaks[12], peaks


def torchrun(*args: str, nproc: int = 2) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
            str(nproc), "-m", "audiotoken_cli", *args]
    # A session of its own, so a hang kills the workers too, not just the launcher.
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True, cwd=ROOT,
                               env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"})
    try:
        stdout, stderr = process.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise
    return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)


def test_torchrun_shards_generate_and_embed_like_one_process(models, tmp_path):
    """2 processes (gloo) over 6 clips: same names, same pixels, one summary, one exit code."""
    clips = make_clips(tmp_path / "in", 6)
    clips[4].write_bytes(b"broken")  # a failure on rank 0 (index 4 % 2): exit code 1 everywhere
    common = ["--sd", str(models["sd"]), "--audio-encoder", str(TINY_BEATS), "--embedder",
              str(models["embedder"]), "--steps", "2", "-W", "64", "-H", "64", "--scheduler",
              "pndm", "--device", "cpu", "--seed", "11", "-n", "2", "--duration", "2"]
    single = subprocess.run([sys.executable, "-m", "audiotoken_cli", "generate",
                             str(tmp_path / "in"), *common, "-o", str(tmp_path / "one")],
                            capture_output=True, text=True, timeout=300, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200",
                                 "OMP_NUM_THREADS": "1"})
    # torchrun gives each worker OMP_NUM_THREADS=1; the single run uses the same, since float
    # sums on the CPU depend on how many threads share them (the sharding itself must not).
    sharded = torchrun("generate", str(tmp_path / "in"), *common, "-o", str(tmp_path / "two"))
    assert single.returncode == 1 and sharded.returncode == 1, sharded.stderr[-3000:]
    one = sorted(p.name for p in (tmp_path / "one").glob("*.png"))
    two = sorted(p.name for p in (tmp_path / "two").glob("*.png"))
    assert one == two and len(one) == 10
    for name in one:
        assert np.array_equal(pixels(tmp_path / "one" / name), pixels(tmp_path / "two" / name))
    # One summary, in input order, as one process prints it.
    assert sharded.stdout.count("5 sounds written, 1 failed") == 1
    rows = [line.split()[0] for line in sharded.stdout.splitlines()[1:-1]]
    assert rows == [line.split()[0] for line in single.stdout.splitlines()[1:-1]]
    assert sharded.stderr.count("clip004.wav") == 1  # the failure reported once

    embedded = torchrun("embed", str(tmp_path / "in"), "--audio-encoder", str(TINY_BEATS),
                        "--embedder", str(models["embedder"]), "--device", "cpu",
                        "--duration", "2", "-o", str(tmp_path / "tokens"))
    assert embedded.returncode == 1 and embedded.stdout.count("5 sounds written, 1 failed") == 1
    assert len(list((tmp_path / "tokens").glob("*.safetensors"))) == 5
