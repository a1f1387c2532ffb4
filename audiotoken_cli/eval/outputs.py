"""What ``eval`` writes: ``eval.json`` (every figure with its protocol) and ``eval.csv`` (a row per
image); and reading two ``eval.json`` back for ``--compare``."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

from audiotoken_cli import __version__
from audiotoken_cli.errors import InputError
from audiotoken_cli.eval.run import Result

CSV_COLUMNS = ("image", "audio", "seed", "real", "label", "ais", "iis_b32", "iis_l14",
               "aic_predicted", "aic_correct", "status")


def result_json(result: Result, inputs: dict) -> dict:
    counted = [row for row in result.rows if row.pair.problem is None]
    return {
        "tool": "audiotoken-cli",
        "version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "inputs": inputs,
        "images": {"given": len(result.rows), "counted": len(counted),
                   "skipped": [{"image": str(p.image), "reason": p.problem}
                               for p in result.skipped_images]},
        "real_problems": result.real_problems,
        "seeds": sorted({r.pair.seed for r in counted if r.pair.seed is not None}),
        "models": {role: model.as_json() for role, model in result.models.items()},
        "figures": {figure.name: figure.as_json() for figure in result.figures},
    }


def csv_rows(result: Result) -> list[dict]:
    rows = []
    for row in result.rows:
        pair = row.pair
        rows.append({
            "image": str(pair.image), "audio": str(pair.audio or ""),
            "seed": "" if pair.seed is None else pair.seed, "real": str(pair.real or ""),
            "label": pair.label or "", "ais": _number(row.ais),
            "iis_b32": _number(row.iis_b32), "iis_l14": _number(row.iis_l14),
            "aic_predicted": row.predicted or "",
            "aic_correct": "" if row.predicted is None else int(row.predicted == pair.label),
            "status": f"skipped: {pair.problem}" if pair.problem else "counted",
        })
    return rows


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.6f}"


def write_outputs(folder: Path, report: dict, rows: list[dict]) -> tuple[Path, Path]:
    from audiotoken_cli.files import write_atomically

    folder.mkdir(parents=True, exist_ok=True)
    json_path, csv_path = folder / "eval.json", folder / "eval.csv"
    write_atomically(json_path, lambda tmp: tmp.write_text(json.dumps(report, indent=2) + "\n"))

    def write_csv(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)

    write_atomically(csv_path, write_csv)
    return json_path, csv_path


def read_report(path: Path) -> dict:
    try:
        report = json.loads(Path(path).read_text())
    except FileNotFoundError as error:
        raise InputError(f"{path}: not found") from error
    except (OSError, ValueError) as error:
        raise InputError(f"{path}: not an eval.json ({error})") from error
    if not isinstance(report, dict) or not isinstance(report.get("figures"), dict):
        raise InputError(f"{path}: not an eval.json (no figures)")
    return report


def compare(a: dict, b: dict) -> list[tuple[str, float | None, float | None, float | None]]:
    """(figure, value in A, value in B, B − A) for every figure in either report."""
    names = list(dict.fromkeys([*a["figures"], *b["figures"]]))
    out = []
    for name in names:
        va = (a["figures"].get(name) or {}).get("value")
        vb = (b["figures"].get(name) or {}).get("value")
        out.append((name, va, vb, vb - va if va is not None and vb is not None else None))
    return out
