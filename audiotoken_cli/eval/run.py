"""``eval`` end to end: pair, embed in batches (through the feature cache), score, describe.

Only features stay in memory (a few kB per image); pictures and sounds are read a batch at a
time, so memory does not grow with the images' sizes or their number beyond that.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from audiotoken_cli.errors import AudioTokenError
from audiotoken_cli.eval.features import MODEL_IDS
from audiotoken_cli.eval.figures import corpus_figures
from audiotoken_cli.eval.inception import DEFAULT_FID_PROTOCOL
from audiotoken_cli.eval.metrics import Figure, cosines
from audiotoken_cli.eval.pairing import Folder, Pair, pair_images, read_real_picture

AIC_PROMPT = "a photo of a {label}"


@dataclass
class Model:
    """One resolved model: where it came from, its local path and weights hash, or why not."""

    role: str
    source: str
    path: Path | None = None
    sha256: str | None = None
    error: str | None = None

    @property
    def label(self) -> str:
        return MODEL_IDS[self.role]

    def as_json(self) -> dict:
        body = {"id": self.label, "source": self.source,
                "path": str(self.path) if self.path else None, "sha256": self.sha256}
        return {**body, "error": self.error} if self.error else body


@dataclass
class Row:
    pair: Pair
    ais: float | None = None
    iis_b32: float | None = None
    iis_l14: float | None = None
    predicted: str | None = None
    real_b32: torch.Tensor | None = None  # for MACS' calibrated IIS
    real_l14: torch.Tensor | None = None  # for SonicDiffusion's IIS win rate
    made_l14: torch.Tensor | None = None


@dataclass
class Result:
    rows: list[Row]
    figures: list[Figure]
    models: dict[str, Model]
    classes: int = 0
    cache_hits: int = 0
    computed: int = 0
    real_problems: list[str] = field(default_factory=list)

    @property
    def skipped_images(self) -> list[Pair]:
        return [row.pair for row in self.rows if row.pair.problem]


class Evaluator:
    def __init__(self, models: dict[str, Model], device: torch.device, batch_size: int = 16,
                 progress: Callable[[int], None] = lambda done: None,
                 aic_prompt: str = AIC_PROMPT, fid_protocol: str = DEFAULT_FID_PROTOCOL):
        self.models, self.device, self.batch_size = models, device, batch_size
        self.progress = progress
        self.aic_prompt = aic_prompt
        self.fid_protocol = fid_protocol
        self.loaded: dict[str, object] = {}
        self.caches: dict[str, object] = {}

    def model(self, role: str):
        """The loaded model, or None when its weights could not be had (the reason is kept)."""
        spec = self.models[role]
        if spec.path is None:
            return None
        if role not in self.loaded:
            try:
                self.loaded[role] = _load(role, spec.path, self.device)
            except AudioTokenError as error:
                spec.error, spec.path = str(error), None
                return None
        return self.loaded[role]

    def all_cached(self, digest: str) -> bool:
        """Whether every loaded model already has this file's features."""
        return all(self.cache(role).has(digest) for role in ("clip_b32", "clip_l14", "inception")
                   if self.models[role].path is not None)

    def cache(self, role: str):
        from audiotoken_cli.eval.features import FeatureCache

        if role not in self.caches:
            # Inception features depend on how pictures were resized: one cache per protocol.
            kind = f"{role}-{self.fid_protocol}" if role == "inception" else role
            self.caches[role] = FeatureCache(self.models[role].sha256, kind)
        return self.caches[role]

    def features(self, role: str, files: list[tuple[Path, str]], compute) -> list | None:
        from audiotoken_cli.eval.features import cached_features

        model = self.model(role)
        if model is None:
            return None
        return cached_features(files, self.cache(role), lambda paths: compute(model, paths))


def evaluate(images: list[Path], audio: Path, real: Path | None, labels_file: Path | None,
             evaluator: Evaluator) -> Result:
    labels = None
    if labels_file is not None:
        from audiotoken_cli.training.labels import read_labels

        labels = read_labels(labels_file)
    pairs = pair_images(images, Folder(audio), Folder(real), labels)
    rows = [Row(pair) for pair in pairs]
    store = _Store()
    done = 0
    for start in range(0, len(rows), evaluator.batch_size):
        batch = rows[start:start + evaluator.batch_size]
        _score_batch([r for r in batch if r.pair.problem is None], evaluator, store)
        done += len(batch)
        evaluator.progress(done)
    classes = sorted(set(labels.values())) if labels else []
    figures = corpus_figures(rows, store, evaluator, real, labels_file, classes)
    caches = evaluator.caches.values()
    return Result(rows, figures, evaluator.models, len(classes),
                  sum(c.hits for c in caches), sum(c.computed for c in caches), store.real_problems)


@dataclass
class _Store:
    """What the corpus-level figures need: small feature tensors, kept in image order."""

    audio: list = field(default_factory=list)
    image_b32: list = field(default_factory=list)
    sounds: list = field(default_factory=list)
    fake_inception: list = field(default_factory=list)
    real_inception: dict = field(default_factory=dict)  # by file hash: each real frame once
    image_l14: list = field(default_factory=list)
    real_problems: list = field(default_factory=list)


def _score_batch(rows: list[Row], ev: Evaluator, store: _Store) -> None:
    from audiotoken_cli.eval import features as F

    audio = _per_row(rows, ev, "wav2clip", lambda r: r.pair.audio, "sound",
                     lambda m, p: F.wav2clip_features(m, p, ev.device))
    _per_row(rows, ev, "", lambda r: r.pair.image, "image", None)  # unreadable images drop out
    rows = [r for r in rows if r.pair.problem is None]
    if not rows:
        return
    audio = [audio[id(r)] for r in rows] if audio is not None else None
    images = [(r.pair.image, r.pair.sha256) for r in rows]
    load_images = F.PictureMemo(_picture)
    b32 = ev.features("clip_b32", images, lambda m, p: m.images(load_images(p)))
    l14 = ev.features("clip_l14", images, lambda m, p: m.images(load_images(p)))
    inception = ev.features("inception", images,
                            lambda m, p: F.inception_features(m, load_images(p), ev.device,
                                                                 ev.fid_protocol))
    if audio is not None and b32 is not None:
        for row, a, i in zip(rows, audio, b32):
            row.ais = float(cosines(a[None], i[None])[0])
        store.audio += audio
    if b32 is not None:
        store.image_b32 += b32
        store.sounds += [str(r.pair.audio) for r in rows]
    if inception is not None:
        store.fake_inception += inception
    if l14 is not None:
        store.image_l14 += l14
    _score_real([r for r in rows if r.pair.real is not None], ev, store,
                dict(zip(map(id, rows), zip(b32 or [None] * len(rows), l14 or [None] * len(rows)))))


def _per_row(rows: list[Row], ev: Evaluator, role: str, path_of, what: str, compute) -> dict | None:
    """Hash (and, with ``compute``, embed) each row's file on its own, so one unreadable file
    marks its own row's problem and the batch goes on. None when the model is missing."""
    from audiotoken_cli.hashing import file_sha256

    out: dict = {}
    for row in rows:
        if row.pair.problem:
            continue
        path = path_of(row)
        try:
            digest = file_sha256(path)
            if compute is None:
                _check_picture(path)
                row.pair.sha256 = digest
                continue
            found = ev.features(role, [(path, digest)], compute)
            if found is None:
                return None
            out[id(row)] = found[0]
        except AudioTokenError as error:
            row.pair.problem = str(error)
        except OSError as error:
            row.pair.problem = f"{path}: cannot read the {what} ({error.strerror or error})"
    return out


def _check_picture(path: Path) -> None:
    """Decode the picture once, so any fault in it is this row's one line, not the batch's."""
    from audiotoken_cli.errors import InputError

    problem = not_a_regular_file(path)
    if problem:
        raise InputError(problem)
    try:
        _picture(path)
    except AudioTokenError:
        raise
    except Exception as error:  # noqa: BLE001 - PIL raises many kinds (SyntaxError, struct.error)
        raise InputError(f"{path}: cannot read the image ({error})") from error


def not_a_regular_file(path: Path) -> str | None:
    """Why ``path`` cannot be read as a picture without opening it, or None. A FIFO would block
    the first read for ever, and a device stream without end."""
    import os
    import stat

    from audiotoken_cli.audio.decode import _kind_of

    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        return f"{path}: cannot be read ({error.strerror or error})"
    return None if stat.S_ISREG(mode) else f"{path}: is {_kind_of(mode)}, not an image file"


def _score_real(rows: list[Row], ev: Evaluator, store: _Store, generated: dict) -> None:
    from audiotoken_cli.eval import features as F
    from audiotoken_cli.hashing import file_sha256

    readable = []
    for row in rows:
        try:
            digest = file_sha256(row.pair.real)
            if not ev.all_cached(digest):  # decoded now only when a model has to see it
                read_real_picture(row.pair.real)  # an unreadable frame is reported, not fatal
            readable.append((row, (row.pair.real, digest)))
        except Exception as error:  # noqa: BLE001 - PIL and FFmpeg raise many kinds
            problem = str(error) if isinstance(error, AudioTokenError) else (
                f"{row.pair.real}: cannot read the real picture ({error})")
            if problem not in store.real_problems:  # one line per file, however many images
                store.real_problems.append(problem)
            row.pair.real = None
    if not readable:
        return
    files = [f for _, f in readable]
    load = F.PictureMemo(read_real_picture)
    b32 = ev.features("clip_b32", files, lambda m, p: m.images(load(p)))
    l14 = ev.features("clip_l14", files, lambda m, p: m.images(load(p)))
    inception = ev.features("inception", files,
                            lambda m, p: F.inception_features(m, load(p), ev.device,
                                                                 ev.fid_protocol))
    for index, (row, (_, digest)) in enumerate(readable):
        made_b32, made_l14 = generated[id(row)]
        if b32 is not None and made_b32 is not None:
            row.iis_b32 = float(cosines(made_b32[None], b32[index][None])[0])
            row.real_b32 = b32[index]
        if l14 is not None and made_l14 is not None:
            row.iis_l14 = float(cosines(made_l14[None], l14[index][None])[0])
            row.real_l14, row.made_l14 = l14[index], made_l14
        if inception is not None:
            store.real_inception[digest] = inception[index]


def _picture(path: Path):
    from audiotoken_cli.training.frames import _read_image

    return _read_image(path)


def _load(role: str, path: Path, device: torch.device):
    if role in ("clip_b32", "clip_l14"):
        from audiotoken_cli.eval.features import Clip

        return Clip(path, device)
    if role == "wav2clip":
        from audiotoken_cli.eval.wav2clip import load_wav2clip

        return load_wav2clip(path).to(device)
    from audiotoken_cli.eval.inception import load_inception

    return load_inception(path).to(device)
