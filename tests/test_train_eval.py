"""`train --eval-every N`: AIS and IIS on the held-out clips during training, in metrics.jsonl and
eval.png, recomputed here from the images the run saved (tiny SD, tiny BEATs, tiny CLIP and
Wav2CLIP, all built in the test)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from PIL import Image
from typer.testing import CliRunner

from audiotoken_cli.cli import app
from eval_factories import clip_image_embeddings, make_tiny_clip, make_tiny_wav2clip
from factories import make_tiny_sd, tone, write_video

TINY_BEATS = Path(__file__).parent / "data" / "tiny_beats.pt"
SIZE = 32


def test_eval_every_logs_ais_and_iis_of_the_held_out_clips(tmp_path):
    from audiotoken_cli.eval.features import load_track
    from audiotoken_cli.eval.wav2clip import load_wav2clip
    from audiotoken_cli.training.data import DataSettings, TrainingData, scan
    from audiotoken_cli.training.examples import slot_rng
    from audiotoken_cli.training.scores import _picture

    videos = tmp_path / "videos"  # ten clips: two are held out of training
    for label, color, freq in (("dog", (220, 40, 40), 300), ("rain", (40, 60, 220), 2000)):
        (videos / label).mkdir(parents=True)
        for i in range(5):
            write_video(videos / label / f"{label}{i}.mp4",
                        tone(1.0, freq=freq * (1 + 0.05 * i), seed=i), seconds=1.0, color=color)
    clip = make_tiny_clip(tmp_path / "clip", projection=512, seed=3)
    wav2clip = make_tiny_wav2clip(tmp_path / "Wav2CLIP.pt")
    run = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "train", str(videos), "-o", str(run), "--sd", str(make_tiny_sd(tmp_path / "sd", 32)),
        "--audio-encoder", str(TINY_BEATS), "--batch-size", "2", "--grad-accum", "1",
        "--resolution", str(SIZE), "--audio-seconds", "1", "--device", "cpu",
        "--windows-per-clip", "1", "--max-steps", "4", "--sample-every", "0",
        "--eval-every", "2", "--clip-b32", str(clip), "--wav2clip", str(wav2clip)])
    assert result.exit_code == 0, result.output

    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines if "loss" in m] == [1, 2, 3, 4]
    scores = [m for m in lines if "ais" in m]
    assert [m["step"] for m in scores] == [2, 4]
    assert all(m["eval_clips"] == 2 and m["eval_split"] == "held-out" for m in scores)
    assert Image.open(run / "eval.png").size == (640, 360)
    assert "AIS" in result.output and "IIS" in result.output

    # The scored images are the step's sample grid (tiles under a 16 px caption strip).
    held_out = json.loads((run / "config.json").read_text())["training"]["held_out"]
    settings = DataSettings(root=videos, audio_seconds=1.0, size=(SIZE, SIZE))
    clips = [s for s in scan(settings)[0] if str(s.audio) in held_out]
    assert len(clips) == 2
    model = load_wav2clip(wav2clip)
    sounds = torch.stack([model.embed(load_track(Path(c.audio))) for c in clips])
    data = TrainingData(clips, settings, 0)
    frames = [_picture(data.draw(i, slot_rng(0, i, 0))["pixels"]) for i in range(2)]
    real = clip_image_embeddings(clip, frames)
    for score in scores:
        grid = Image.open(run / "samples" / f"step-{score['step']}.png")
        tiles = [grid.crop((i * SIZE, 16, (i + 1) * SIZE, 16 + SIZE)) for i in range(2)]
        made = clip_image_embeddings(clip, tiles)
        ais = torch.nn.functional.cosine_similarity(sounds, made, dim=-1).mean()
        iis = (real * made).sum(-1).mean()
        assert abs(score["ais"] - float(ais)) < 1e-5, (score, float(ais))
        assert abs(score["iis"] - float(iis)) < 1e-5, (score, float(iis))
