"""How many of our modules one `generate` run passes through, in the main thread.

Follows one small run (one clip, tiny random models, one step) with ``sys.settrace`` and prints
each audiotoken module entered, the count of modules and of "stays" (consecutive calls in one
module count once). Issue 17 measured 17 modules before the one-model refactor; the module map
in docs/how-it-works.md is the intended path. Not a test: pytest does not collect it.

    python benchmarks/data_path.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # factories: tiny weights in their real formats
sys.path.insert(0, str(REPO))


def main() -> None:
    from factories import make_paper_embedder, make_tiny_sd, tone, write_audio

    from audiotoken_cli.config import GenerateSettings, RuntimeSettings
    from audiotoken_cli.pipeline.generate import generate_files

    folder = Path(tempfile.mkdtemp())
    settings = GenerateSettings(
        sd=make_tiny_sd(folder / "sd", text_width=32),
        audio_encoder=REPO / "tests" / "data" / "tiny_beats.pt",
        embedder=make_paper_embedder(folder / "emb.bin", input_dim=96, token_dim=32),
        seed=1, steps=1, width=32, height=32, scheduler="pndm",
        runtime=RuntimeSettings("cpu", "float32"))
    clip = write_audio(folder / "a.wav", tone(1.0))
    stays: list[str] = []

    def tracer(frame, event, _arg):
        name = frame.f_globals.get("__name__", "")
        if event == "call" and name.startswith("audiotoken_cli") and (not stays or
                                                                       stays[-1] != name):
            stays.append(name)

    sys.settrace(tracer)
    try:
        results = list(generate_files([clip], settings))
    finally:
        sys.settrace(None)
    assert [r.status for r in results] == ["written"], results
    modules = sorted({name.removeprefix("audiotoken_cli.") for name in stays})
    print(f"{len(modules)} modules, {len(stays)} stays (main thread):")
    print("  " + ", ".join(modules))


if __name__ == "__main__":
    main()
