"""Makes docs/video-storyboard.png: `audiotoken video --storyboard --no-video` on a synthetic 40 s
recording in four distinct 10 s parts, with tiny random models (as the tests build them), so the
pictures are noise-like; the image shows the storyboard's layout, not what real models draw.

    python docs/make_video_storyboard.py
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def main() -> None:
    import numpy as np
    from factories import make_paper_embedder, make_tiny_sd, tone, write_audio
    from typer.testing import CliRunner

    from audiotoken_cli.cli import app

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sd = make_tiny_sd(folder / "sd", text_width=32)
        embedder = make_paper_embedder(folder / "emb.bin", input_dim=96, token_dim=32, seed=5)
        parts = [tone(10.0, freq=f, seed=i) for i, f in enumerate((180, 520, 1400, 3300))]
        source = write_audio(folder / "four_parts.wav", np.concatenate(parts, axis=1))
        result = CliRunner().invoke(app, [
            "video", str(source), "--storyboard", "--no-video", "--hop", "4", "--seed", "7",
            "--sd", str(sd), "--audio-encoder", str(ROOT / "tests/data/tiny_beats.pt"),
            "--embedder", str(embedder), "--scheduler", "pndm", "--steps", "4", "-W", "64",
            "-H", "64", "--device", "cpu", "--dtype", "float32", "--batch-size", "4"])
        assert result.exit_code == 0, result.output
        shutil.copy(folder / "four_parts.audiotoken.storyboard.png",
                    ROOT / "docs" / "video-storyboard.png")


if __name__ == "__main__":
    main()
