"""The figures, from features: AIS (mean, win rate), IIS, AIC, and FID/KID through torchmetrics.

Each function returns a ``Figure``: a value with what it was computed on, or a reason it was not.
A figure that cannot be computed is never a number.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

KID_MAX_SUBSET = 1000
KID_SUBSETS = 100
KID_SEED = 0
FID_RESIZE = {  # recorded in eval.json beside the protocol's name
    "clean": "clean-fid: PIL bicubic to 299x299 on float pixels, (x - 128) / 128",
    "torchmetrics": "torchmetrics: antialiased bilinear to 299x299, (x - 128) / 128",
}


@dataclass
class Figure:
    name: str
    value: float | None = None
    skipped: str | None = None  # why there is no value
    protocol: dict = field(default_factory=dict)

    def as_json(self) -> dict:
        body = {"value": self.value}
        if self.skipped:
            body["skipped"] = self.skipped
        return {**body, **self.protocol}


def skipped(name: str, reason: str, **protocol) -> Figure:
    return Figure(name, None, reason, protocol)


def cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine of two (N, D) tensors."""
    return nn.functional.cosine_similarity(a.float(), b.float(), dim=-1)


def mean_figure(name: str, values: list[float], **protocol) -> Figure:
    return Figure(name, float(torch.tensor(values, dtype=torch.float64).mean()), None,
                  {"pairs": len(values), **protocol})


def win_rate(images: torch.Tensor, own: torch.Tensor, candidates: torch.Tensor,
             own_ids: list[str], candidate_ids: list[str]) -> tuple[float, int]:
    """SonicDiffusion's score: for each image, the share of the other sounds' references (their
    audio embeddings, or their real pictures) it is closer to its own reference than to; the mean
    over images. ``candidates`` holds each reference once, named by ``candidate_ids``.

    Returns (win rate, images that had another reference to compare with)."""
    images = nn.functional.normalize(images.float(), dim=-1)
    own = nn.functional.normalize(own.float(), dim=-1)
    candidates = nn.functional.normalize(candidates.float(), dim=-1)
    rates = []
    for image, mine, name in zip(images, own, own_ids):
        others = torch.tensor([c != name for c in candidate_ids])
        if not bool(others.any()):
            continue
        rates.append(float(((candidates[others] @ image) < image @ mine).double().mean()))
    return (sum(rates) / len(rates) if rates else float("nan")), len(rates)


def mean_z_score(queries: torch.Tensor, own: torch.Tensor, targets: torch.Tensor,
                 query_sounds: list[str], target_sounds: list[str]) -> tuple[float, int]:
    """MACS' calibrated score: each query's cosine to its own image, as a z-score among its
    cosines to the images made for other sounds (population std); the mean over queries.

    Returns (mean z, queries that had other images to compare with)."""
    queries = nn.functional.normalize(queries.float(), dim=-1)
    own = nn.functional.normalize(own.float(), dim=-1)
    targets = nn.functional.normalize(targets.float(), dim=-1)
    scores = []
    for query, mine, sound in zip(queries, own, query_sounds):
        others = torch.tensor([s != sound for s in target_sounds])
        if int(others.sum()) < 2:
            continue
        calibration = (targets[others] @ query).double()
        scores.append(float((query @ mine - calibration.mean()) / calibration.std(unbiased=False)))
    return (sum(scores) / len(scores) if scores else float("nan")), len(scores)


def zero_shot(image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
    """Each image's predicted class index: the class prompt with the highest cosine."""
    return (image_features.float() @ text_features.float().T).argmax(dim=-1)


class Precomputed(nn.Module):
    """Hands torchmetrics features we already computed (and cached) with the FID Inception."""

    num_features = 2048

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def fid_kid(real: torch.Tensor, fake: torch.Tensor, protocol: dict) -> list[Figure]:
    """FID and KID (mean and std) of two (N, 2048) Inception feature sets, by torchmetrics."""
    register_torch_fidelity()  # before torchmetrics, which imports torch-fidelity when present
    import torchmetrics
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    base = {"real": int(real.shape[0]), "generated": int(fake.shape[0]),
            "library": f"torchmetrics {torchmetrics.__version__}", **protocol}
    if real.shape[0] < 2 or fake.shape[0] < 2:
        reason = (f"needs at least 2 real and 2 generated images "
                  f"(have {real.shape[0]} and {fake.shape[0]})")
        return [skipped("fid", reason, **base), skipped("kid", reason, **base)]
    fid = FrechetInceptionDistance(feature=Precomputed(), reset_real_features=True)
    fid.update(real, real=True)
    fid.update(fake, real=False)
    subset = min(KID_MAX_SUBSET, int(real.shape[0]), int(fake.shape[0]))
    kid = KernelInceptionDistance(feature=Precomputed(), subsets=KID_SUBSETS, subset_size=subset)
    kid.update(real, real=True)
    kid.update(fake, real=False)
    # KID draws random subsets: a fixed seed makes the figure repeatable, and is recorded.
    state = torch.random.get_rng_state()
    torch.manual_seed(KID_SEED)
    try:
        kid_mean, kid_std = kid.compute()
    finally:
        torch.random.set_rng_state(state)
    return [Figure("fid", float(fid.compute()), None, base),
            Figure("kid", float(kid_mean), None,
                   {**base, "std": float(kid_std), "subset_size": subset,
                    "subsets": KID_SUBSETS, "seed": KID_SEED})]


def register_torch_fidelity() -> None:
    """Let ``torchmetrics.image`` import where torch-fidelity is installed but torchvision is not
    (it cannot load beside the CPU torch wheel). torchmetrics imports only torch-fidelity's
    Inception module, which needs no torchvision; but importing any submodule first runs the
    package's ``__init__``, which imports torchvision. So the package is registered without
    running ``__init__``, and its submodules then import alone."""
    import importlib
    import importlib.util
    import sys
    import types

    if "torch_fidelity" in sys.modules:
        return
    spec = importlib.util.find_spec("torch_fidelity")
    if spec is None or not spec.submodule_search_locations:
        return  # not installed: torchmetrics does without it
    try:
        importlib.import_module("torch_fidelity")
        return
    except Exception:  # noqa: BLE001 - torchvision missing or broken: register it bare below
        pass
    package = types.ModuleType("torch_fidelity")
    package.__path__ = list(spec.submodule_search_locations)
    package.__spec__ = spec
    sys.modules["torch_fidelity"] = package
