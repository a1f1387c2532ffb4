"""Regenerate ``a1111_reference.json``: what A1111's own ``parse_generation_parameters`` reads from
the ``parameters`` chunk that ``audiotoken generate`` writes, for settings full of commas, colons,
quotes and line breaks.

A1111's code stays out of this repository. Point the script at a stable-diffusion-webui checkout's
``modules/infotext_utils.py`` (``infotext_versions.py`` and ``prompt_parser.py`` beside it; the
latter needs ``pip install lark``) and run it from the repository root:

    AUDIOTOKEN_A1111_INFOTEXT=/path/to/webui/modules/infotext_utils.py \
        .venv/bin/python tests/data/make_a1111_reference.py --commit COMMIT

The file records, per case: the settings (``info``), the chunk our writer made of them, and A1111's
parse of that chunk. ``tests/test_clients.py`` checks that our writer still makes exactly these
chunks and that A1111's parse gives back every field; with the same variable set it also runs
A1111's parser live.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/, for a1111_reader

from a1111_reader import a1111_parser, infotext_file  # noqa: E402

from audiotoken_cli.pipeline.metadata import a1111_parameters  # noqa: E402

BASE = {"prompt": "a photo of <*>", "negative_prompt": "", "steps": 25, "scheduler": "dpm++",
        "guidance": 7.5, "seed": 7, "width": 512, "height": 512, "sd_unet_sha256": "0123456789abcdef",
        "sd": "/models/stable-diffusion-v1-4", "audio_file": "dog.wav", "version": "0.1.0"}
CASES = {
    "plain": {},
    "commas and colons": {"audio_file": "dog, barking: loud.wav", "sd": "/m/my, sd: v2",
                          "prompt": "a photo of <*>, oil painting", "negative_prompt": "blurry, dark"},
    "double quotes": {"audio_file": 'say "hi".wav', "sd": '/m/"quoted" model'},
    "whole value in quotes": {"audio_file": '"quoted"', "scheduler": "euler-a"},
    "spaces at the ends": {"audio_file": " padded .wav"},
    "line break in a name": {"audio_file": "two\nlines.wav"},
    "backslash and unicode": {"audio_file": "caf\u00e9\\x, \u00df.wav", "sd": "/m/\u65e5\u672c"},
    "multi-line prompt": {"prompt": "a photo of <*>\nin the rain", "negative_prompt": "a\nb, c"},
    "no model hash": {"sd_unet_sha256": None, "width": 640, "height": 384, "guidance": 4},
}


def git_blob_sha1(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commit", required=True, help="the webui commit the file comes from")
    parser.add_argument("--out", type=Path, default=HERE / "a1111_reference.json")
    args = parser.parse_args()
    source = infotext_file()
    if source is None:
        raise SystemExit("set AUDIOTOKEN_A1111_INFOTEXT to webui's modules/infotext_utils.py")
    cases = []
    with a1111_parser(source) as parse:
        for name, changes in CASES.items():
            info = {**BASE, **changes}
            chunk = a1111_parameters(info)
            cases.append({"name": name, "info": info, "chunk": chunk, "a1111": parse(chunk)})
    record = {"webui_commit": args.commit,
              "infotext_utils_blob": git_blob_sha1(source), "cases": cases}
    args.out.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {len(cases)} cases to {args.out}")


if __name__ == "__main__":
    main()
