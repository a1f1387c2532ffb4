"""``audiotoken train``: learn an embedder on the user's own (audio, picture) pairs.

Everything but the embedder is frozen: BEATs, the VAE, the text encoder and the UNet. One step:

    waveforms (B, S) ─▶ BEATs ─▶ features (B, N, 3·D) ─▶ embedder ─▶ tokens (B, d)
    tokens ─▶ prompt "a photo of <*>" ─▶ text encoder ─▶ (B, 77, d)
    frames (B, 3, H, W) ─▶ VAE ─▶ latents (B, 4, H/8, W/8) ─▶ + noise at a random timestep
    UNet(noisy latents, t, text) ─▶ predicted noise;  loss = MSE + 0.01·mean|token| (+ class loss)

Reproducibility is by construction: every random choice of step s (which clips, which window of
each, the noise, the timesteps) is drawn from generators seeded by (seed, s, rank). A resumed run
therefore repeats exactly what the uninterrupted run would have done, given the same weights and
optimiser state, which the checkpoints hold.
"""

from __future__ import annotations

import json
import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from audiotoken_cli.config import EmbedderConfig, EmbedderInfo, TrainSettings
from audiotoken_cli.errors import AudioTokenError, ModelError, UsageError
from audiotoken_cli.files import write_atomically
from audiotoken_cli.model import resolve_device
from audiotoken_cli.models.embedder import AudioEmbedder, LoadedEmbedder, save_embedder
from audiotoken_cli.models.safecache import load_embedder_fast
from audiotoken_cli.training.checkpoints import (
    CHECKPOINTS,
    checkpoint_steps,
    library_versions,
    load_checkpoint,
    save_checkpoint,
    settings_record,
)
from audiotoken_cli.training.conditioning import park_vae, predict, with_model_size
from audiotoken_cli.training.data import DataSettings, TrainingData, scan
from audiotoken_cli.training.distributed import (
    Dist,
    _average_gradients,
    _average_metrics,
    init_distributed,
)
from audiotoken_cli.training.examples import (
    ExampleSource,
    FeatureCache,
    Frozen,
    load_frozen,
    pick_examples,
    step_rng,
)
from audiotoken_cli.training.labels import describe_labels, label_counts
from audiotoken_cli.training.pictures import loss_curve
from audiotoken_cli.training.recovery import (
    finish_killed_export,
    remove_stray_partials,
    trim_metrics,
)
from audiotoken_cli.training.scores import (
    describe_scores,
    eval_curve,
    held_out_scorer,
    pictures_and_scores,
)

METRICS = "metrics.jsonl"


class TrainingStopped(AudioTokenError):
    """The loss went NaN or infinite; the last good checkpoint is kept."""


@dataclass
class TrainEvents:
    """Hooks for the CLI's display; all optional."""

    on_start: Callable[[int, int, list[str]], None] = lambda first, last, warnings: None
    on_step: Callable[[dict], None] = lambda metrics: None
    on_note: Callable[[str], None] = lambda message: None


# ---------------------------------------------------------------------------------------------
# Loss


def training_loss(tokens: torch.Tensor, latents: torch.Tensor, labels: list,
                  frozen: Frozen, settings: TrainSettings, generator: torch.Generator,
                  dtype: torch.dtype, geometry: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The paper's objective for one batch; returns every term and their weighted sum.

    tokens (B, d); latents (B, 4, h, w). ε-prediction MSE (velocity for v-prediction models),
    plus 0.01·mean|token|, plus the optional class term
    ``w · (1 − cos(token, mean embedding of the class name's word pieces))²``.
    geometry (B, 4): each frame's original size and crop, SDXL's added conditioning.
    """
    scheduler = frozen.noise_scheduler
    noise = torch.randn(latents.shape, generator=generator).to(latents.device)
    timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (latents.shape[0],),
                              generator=generator).to(latents.device)
    noisy = scheduler.add_noise(latents, noise, timesteps)
    if scheduler.config.prediction_type == "v_prediction":
        target = scheduler.get_velocity(latents, noise, timesteps)
    else:
        target = noise
    prompts = [settings.prompt] * tokens.shape[0]
    # (B, 77, d) text with the tokens spliced in (grads reach them), and SDXL's pooled + sizes
    prediction = predict(frozen, noisy, timesteps, prompts, tokens, geometry, settings.size, dtype)
    mse = F.mse_loss(prediction.float(), target.float())
    l1 = tokens.abs().mean()
    terms = {"mse": mse, "l1": l1}
    total = mse + settings.l1_weight * l1
    labelled = [(i, name) for i, name in enumerate(labels) if name]
    if settings.class_loss_weight > 0 and labelled:
        targets = torch.stack([frozen.encoder.class_embedding(name) for _, name in labelled])
        chosen = tokens[[i for i, _ in labelled]]
        cosine = F.cosine_similarity(chosen.float(), targets.float(), dim=-1)
        class_term = ((1 - cosine) ** 2).mean()
        terms["class"] = class_term
        total = total + settings.class_loss_weight * class_term
    terms["loss"] = total
    return terms


# ---------------------------------------------------------------------------------------------
# Optimiser and schedule (the paper's recipe)


def scaled_lr(settings: TrainSettings, world: int) -> float:
    """lr × batch × accumulation × processes, as the reference code scales it."""
    if not settings.scale_lr:
        return settings.lr
    return settings.lr * settings.batch_size * settings.grad_accum * world


def make_optimizer(embedder: AudioEmbedder, settings: TrainSettings, world: int):
    optimizer = torch.optim.AdamW(embedder.parameters(), lr=scaled_lr(settings, world),
                                  weight_decay=settings.weight_decay)
    warmup = max(settings.warmup_steps, 0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup) if warmup else 1.0)
    return optimizer, schedule


# ---------------------------------------------------------------------------------------------
# ---------------------------------------------------------------------------------------------
# The loop


def new_embedder(settings: TrainSettings, feature_dim: int, token_dim: int | tuple[int, ...],
                 device: torch.device) -> tuple[AudioEmbedder, str]:
    """A fresh embedder, or ``--init``'s weights to fine-tune. ``token_dim``: the text width, or
    one width per text encoder (SDXL: a row for each, concatenated)."""
    dims = token_dim if isinstance(token_dim, tuple) else (token_dim,)
    if settings.init is None:
        torch.manual_seed(settings.seed)
        config = EmbedderConfig(input_dim=feature_dim, hidden_dim=feature_dim,
                                token_dim=sum(dims), encoder_dims=dims)
        return AudioEmbedder(config).to(device), "trained from scratch"
    loaded: LoadedEmbedder = load_embedder_fast(settings.init, device=device)
    config = loaded.model.config
    if (config.input_dim, config.encoder_dims) != (feature_dim, dims):
        made = "+".join(map(str, config.encoder_dims))
        raise ModelError(f"{settings.init}: --init embedder is {config.input_dim}→{made} but "
                         f"this audio encoder and model need {feature_dim}→{'+'.join(map(str, dims))}")
    loaded.model.requires_grad_(True)
    return loaded.model, f"fine-tuned from {settings.init}"


def train(settings: TrainSettings, events: TrainEvents | None = None) -> Path:
    """Train, writing the run folder; returns it. Raises AudioTokenError for user problems."""
    events = events or TrainEvents()
    settings = with_model_size(settings)  # no --resolution/--size: the model's own size
    device = resolve_device(settings.runtime.device)
    world = init_distributed(device)
    if world.world > 1 and device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    compute_dtype, autocast_dtype = _precision(settings.mixed_precision, device)
    run = Path(settings.output)
    if world.main:
        remove_stray_partials(run)  # a killed run's temporaries
    if settings.resume and finish_killed_export(run, checkpoint_steps(run), settings.max_steps,
                                                events.on_note):
        return run

    data_settings = DataSettings(root=settings.data, labels=settings.labels,
                                 audio_seconds=settings.audio_seconds, size=settings.size)
    samples, warnings = scan(data_settings)
    held_out, samples = _hold_out(samples, settings.sample_clips)
    data = TrainingData(samples, data_settings, settings.seed)

    _check_run_folder(run, settings)
    events.on_note(f"{len(samples)} clips ({len(warnings)} skipped); {describe_labels(samples)}")
    if not held_out and settings.sample_every:
        events.on_note(f"too few clips for a held-out split ({len(samples)}, fewer than "
                       f"{5 * settings.sample_clips}): samples/ shows training clips")
    events.on_note("loading the models")
    frozen = load_frozen(settings, device, compute_dtype)
    feature_dim = frozen.beats.cfg.output_dim
    embedder, origin = new_embedder(settings, feature_dim, frozen.encoder.widths, device)
    embedder.train()
    optimizer, schedule = make_optimizer(embedder, settings, world.world)

    step = load_checkpoint(run, embedder, optimizer, schedule) if settings.resume else 0
    record = _run_record(settings, samples, held_out, warnings, origin, world)
    if world.main:
        run.mkdir(parents=True, exist_ok=True)
        # config.json describes the run from the start; at the end the embedder's own fields
        # join it, so the same file serves `generate --embedder RUN`.
        write_atomically(run / "config.json",
                         lambda tmp: tmp.write_text(json.dumps({"training": record}, indent=2)))
        if settings.resume:
            trim_metrics(run / METRICS, step, events.on_note)
        elif (run / METRICS).exists():
            (run / METRICS).unlink()

    cache = None
    source = ExampleSource(data, frozen, settings, device, compute_dtype, None)
    if settings.cache:
        cache = FeatureCache.build(run / "cache", source, settings,
                                   lambda done, total: events.on_note(
                                       f"cache: {done}/{total} clips") if done == total else None)
        source.cache = cache
        park_vae(frozen)  # every latent is cached: the VAE waits on the CPU until a sample grid
    info = EmbedderInfo(audio_encoder=str(settings.audio_encoder), prompt=settings.prompt,
                        source=f"audiotoken train {run.name} ({origin})",
                        extra={"sd": str(settings.sd), "training": record})

    scorer = held_out_scorer(settings, held_out, samples, data_settings, device, world.main,
                             events.on_note)  # --eval-every: None when off
    events.on_start(step, settings.max_steps, warnings)
    interrupted = _InterruptFlag()
    last_good = step
    with interrupted:
        while step < settings.max_steps:
            if interrupted.raised:
                break
            metrics = _one_step(step, embedder, optimizer, schedule, source, frozen, settings,
                                world, compute_dtype, autocast_dtype, device, len(data))
            if not all(math.isfinite(v) for k, v in metrics.items() if k != "lr"):
                raise TrainingStopped(
                    f"step {step + 1}: the loss became {metrics['loss']}; stopped. The last good "
                    f"checkpoint (step {last_good}) is kept; try a lower --lr or "
                    "--mixed-precision no")
            step += 1
            metrics["step"] = step
            if world.main:
                _append_metrics(run, metrics)
                if step % settings.save_every == 0 or step == settings.max_steps:
                    save_checkpoint(run, step, embedder, optimizer, schedule, info, settings.keep)
                    last_good = step
                scores = pictures_and_scores(run, step, embedder, frozen, held_out or samples[:2],
                                             data_settings, settings, device, compute_dtype,
                                             scorer)
                if scores:
                    _append_metrics(run, scores)
                    events.on_note(describe_scores(scores))
            events.on_step(metrics)
    if interrupted.raised:
        if world.main and step > last_good:
            save_checkpoint(run, step, embedder, optimizer, schedule, info, settings.keep)
        raise KeyboardInterrupt
    if world.main:
        save_embedder(embedder, run, info)
        loss_curve(run)
        eval_curve(run)
    if world.world > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    return run


def _check_run_folder(run: Path, settings: TrainSettings) -> None:
    """Before any model loads: a run folder is continued, restarted or refused, on purpose."""
    steps = checkpoint_steps(run)
    if settings.resume:
        if not steps:
            raise UsageError(f"{run}: --resume found no checkpoint in {run / CHECKPOINTS}")
        if steps[-1] >= settings.max_steps:
            raise UsageError(f"{run}: already trained to step {steps[-1]}; pass a --max-steps "
                             f"above {steps[-1]} to continue")
    elif steps and not settings.overwrite:
        raise UsageError(f"{run}: already holds a training run; --resume continues it, "
                         "--overwrite starts again")


def _one_step(step, embedder, optimizer, schedule, source, frozen, settings, world,
              compute_dtype, autocast_dtype, device, clips) -> dict:
    started = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    totals: dict[str, float] = {}
    for micro in range(settings.grad_accum):
        pairs = pick_examples(settings.seed, step * settings.grad_accum + micro, world.rank,
                              settings.batch_size, clips, settings.windows_per_clip)
        features, latents, labels, geometry = source.batch_with_geometry(pairs)
        draw_seed = int(step_rng(settings.seed, step * settings.grad_accum + micro, world.rank)
                        .integers(2**62))
        generator = torch.Generator().manual_seed(draw_seed)
        # The embedder's dropout draws from torch's global generator: seed it per step too.
        torch.manual_seed(draw_seed + 1)
        with _autocast(device, autocast_dtype):
            tokens = embedder(features)
            terms = training_loss(tokens, latents, labels, frozen, settings, generator,
                                  compute_dtype, geometry)
        (terms["loss"] / settings.grad_accum).backward()
        for name, value in terms.items():
            totals[name] = totals.get(name, 0.0) + float(value.detach()) / settings.grad_accum
    _average_gradients(embedder, world)
    totals = _average_metrics(totals, world)
    totals["lr"] = optimizer.param_groups[0]["lr"]  # the rate this step trains with
    optimizer.step()
    schedule.step()
    seconds = time.perf_counter() - started
    totals["samples_per_s"] = settings.batch_size * settings.grad_accum * world.world / seconds
    return totals


def _autocast(device: torch.device, dtype: torch.dtype | None):
    from contextlib import nullcontext

    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def _precision(name: str, device: torch.device) -> tuple[torch.dtype, torch.dtype | None]:
    """(dtype of the frozen models, autocast dtype for the trained path).

    The frozen networks run in half precision where the device has it; the embedder's weights
    and the optimiser stay float32 (mixed precision), with autocast for its matmuls.
    """
    if name == "auto":
        if device.type == "cuda":
            name = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            name = "no"
    if name == "no":
        return torch.float32, None
    if name == "fp16" and device.type == "cpu":
        raise UsageError("--mixed-precision fp16 needs a GPU; use bf16 or no on the CPU")
    half = torch.float16 if name == "fp16" else torch.bfloat16
    return half, half


def _hold_out(samples: list, count: int) -> tuple[list, list]:
    """A few clips kept out of training for the sample grids; none when the set is tiny."""
    if count <= 0 or len(samples) < 5 * count:
        return [], samples
    step = len(samples) // count
    chosen = set(range(0, step * count, step))
    return ([s for i, s in enumerate(samples) if i in chosen],
            [s for i, s in enumerate(samples) if i not in chosen])


def _run_record(settings: TrainSettings, samples, held_out, warnings, origin, world: Dist) -> dict:
    """Every setting, the library versions and what the data scan found."""
    return {"settings": settings_record(settings), "versions": library_versions(),
            "clips": len(samples), "labels": label_counts(samples),
            "held_out": [str(s.audio) for s in held_out],
            "skipped": warnings, "embedder": origin, "world_size": world.world,
            "lr_scaled": scaled_lr(settings, world.world)}


def _append_metrics(run: Path, metrics: dict) -> None:
    with open(run / METRICS, "a") as handle:
        handle.write(json.dumps({k: (round(v, 8) if isinstance(v, float) else v)
                                 for k, v in metrics.items()}) + "\n")


class _InterruptFlag:
    """Ctrl-C (or SIGTERM, as a scheduler or `kill` sends) finishes the current step, then the
    loop saves a checkpoint and stops."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.raised = False
        self._previous = {}

    def __enter__(self):
        try:
            self._previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        except ValueError:  # not the main thread (e.g. under some runners): no handler
            self._previous = {}
        return self

    def _handle(self, *_):
        if self.raised:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.raised = True

    def __exit__(self, *exc):
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        return False
