"""The corpus-level figures, from the features ``run`` gathered: each with its protocol, or
skipped with the reason."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from audiotoken_cli.eval.metrics import (
    FID_RESIZE,
    Figure,
    fid_kid,
    mean_figure,
    skipped,
    win_rate,
)

if TYPE_CHECKING:  # run.py calls into this module; the types only name what it hands over
    from audiotoken_cli.eval.run import Evaluator, Row, _Store


def corpus_figures(rows: list[Row], store: _Store, ev: Evaluator, real: Path | None,
                   labels_file: Path | None, classes: list[str]) -> list[Figure]:
    counted = [r for r in rows if r.pair.problem is None]
    seeds = sorted({r.pair.seed for r in counted if r.pair.seed is not None})
    figures = []
    missing = _missing_model(ev, "wav2clip", "clip_b32")
    if not counted:
        missing = "no image could be paired with its sound"
    if missing:
        figures += [skipped("ais", missing, protocol="MACS"),
                    skipped("ais_win_rate", missing, protocol="SonicDiffusion")]
    else:
        figures.append(mean_figure("ais", [r.ais for r in counted], protocol="MACS",
                                   models=["wav2clip", "clip_b32"], seeds=seeds))
        audio = torch.stack(store.audio)
        sounds = dict(zip(store.sounds, audio))  # each sound once: the references
        rate, images = win_rate(torch.stack(store.image_b32), audio,
                                torch.stack(list(sounds.values())), store.sounds, list(sounds))
        figures.append(skipped("ais_win_rate", "needs images of at least two sounds",
                               protocol="SonicDiffusion") if not images else
                       Figure("ais_win_rate", rate, None, {
                           "protocol": "SonicDiffusion", "models": ["wav2clip", "clip_b32"],
                           "pairs": images, "references": len(sounds), "seeds": seeds}))
    figures.append(_ais_z(store, missing, seeds))
    for name, role, protocol in (("iis_b32", "clip_b32", "MACS"),
                                 ("iis_l14", "clip_l14", "SonicDiffusion")):
        values = [getattr(r, name) for r in counted if getattr(r, name) is not None]
        reason = ("no --real folder given" if real is None else _missing_model(ev, role)
                  or ("" if values else "no image has a real frame in --real"))
        figures.append(skipped(name, reason, protocol=protocol) if reason else mean_figure(
            name, values, protocol=protocol, models=[role], seeds=seeds))
    figures.append(_iis_z(counted, store, figures))
    figures.append(_iis_win_rate(counted, figures))
    figures.append(_aic(counted, store, ev, labels_file, classes, seeds))
    reason = ("no --real folder given" if real is None else _missing_model(ev, "inception")
              or ("" if store.real_inception else "no image has a real frame in --real"))
    inception = {"protocol": ev.fid_protocol, "resize": FID_RESIZE[ev.fid_protocol],
                 "models": ["inception"], "feature": "pool3, 2048-d", "seeds": seeds}
    if reason:
        figures += [skipped("fid", reason, **inception), skipped("kid", reason, **inception)]
    else:
        figures += fid_kid(torch.stack(list(store.real_inception.values())),
                           torch.stack(store.fake_inception), inception)
    return figures


def _ais_z(store: _Store, missing: str, seeds: list[int]) -> Figure:
    protocol = {"protocol": "MACS (z-score against images made for other sounds)"}
    if missing:
        return skipped("ais_z", missing, **protocol)
    from audiotoken_cli.eval.metrics import mean_z_score

    audio, images = torch.stack(store.audio), torch.stack(store.image_b32)
    value, queries = mean_z_score(audio, images, images, store.sounds, store.sounds)
    if not queries:
        return skipped("ais_z", "needs images of at least two other sounds", **protocol)
    return Figure("ais_z", value, None, {**protocol, "pairs": queries,
                                         "models": ["wav2clip", "clip_b32"], "seeds": seeds})


def _iis_z(counted: list[Row], store: _Store, figures: list[Figure]) -> Figure:
    protocol = {"protocol": "MACS (z-score against images made for other sounds)"}
    iis = next(f for f in figures if f.name == "iis_b32")
    if iis.skipped:
        return skipped("iis_b32_z", iis.skipped, **protocol)
    from audiotoken_cli.eval.metrics import mean_z_score

    rows = [r for r in counted if r.real_b32 is not None]
    made = {id(r): index for index, r in enumerate(counted)}
    value, queries = mean_z_score(
        torch.stack([r.real_b32 for r in rows]),
        torch.stack([store.image_b32[made[id(r)]] for r in rows]),
        torch.stack(store.image_b32), [str(r.pair.audio) for r in rows], store.sounds)
    if not queries:
        return skipped("iis_b32_z", "needs images of at least two other sounds", **protocol)
    return Figure("iis_b32_z", value, None, {**protocol, "pairs": queries, "models": ["clip_b32"],
                                             "seeds": iis.protocol.get("seeds")})


def _iis_win_rate(counted: list[Row], figures: list[Figure]) -> Figure:
    protocol = {"protocol": "SonicDiffusion (win rate against the real pictures of other sounds)"}
    iis = next(f for f in figures if f.name == "iis_l14")
    if iis.skipped:
        return skipped("iis_l14_win_rate", iis.skipped, **protocol)
    rows = [r for r in counted if r.real_l14 is not None]
    references = {str(r.pair.real): r.real_l14 for r in rows}
    value, images = win_rate(torch.stack([r.made_l14 for r in rows]),
                             torch.stack([r.real_l14 for r in rows]),
                             torch.stack(list(references.values())),
                             [str(r.pair.real) for r in rows], list(references))
    if not images:
        return skipped("iis_l14_win_rate", "needs real pictures of at least two sounds", **protocol)
    return Figure("iis_l14_win_rate", value, None, {**protocol, "pairs": images,
                                                    "references": len(references),
                                                    "models": ["clip_l14"],
                                                    "seeds": iis.protocol.get("seeds")})


def _aic(counted, store: _Store, ev: Evaluator, labels_file, classes, seeds) -> Figure:
    protocol = {"protocol": "SonicDiffusion", "prompt": ev.aic_prompt}
    reason = ("no --labels file given" if labels_file is None else _missing_model(ev, "clip_l14"))
    if reason:
        return skipped("aic", reason, **protocol)
    known = [(row, feature) for row, feature in zip(counted, store.image_l14)
             if row.pair.label in classes]
    if not known:
        return skipped("aic", "no counted image's sound has a label in --labels", **protocol)
    from audiotoken_cli.eval.metrics import zero_shot

    texts = ev.model("clip_l14").texts([ev.aic_prompt.format(label=c) for c in classes])
    predicted = zero_shot(torch.stack([f for _, f in known]), texts)
    for (row, _), index in zip(known, predicted.tolist()):
        row.predicted = classes[index]
    correct = [float(row.predicted == row.pair.label) for row, _ in known]
    return mean_figure("aic", correct, **protocol, models=["clip_l14"], classes=len(classes),
                       seeds=seeds)


def _missing_model(ev: Evaluator, *roles: str) -> str:
    for role in roles:
        spec = ev.models[role]
        if ev.model(role) is None:
            return f"no {spec.label} weights ({spec.error or 'not given'})"
    return ""
