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
import os
import platform
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from audiotoken_cli import __version__
from audiotoken_cli.config import EmbedderConfig, EmbedderInfo, TrainSettings
from audiotoken_cli.data import DataSettings, TrainingData, scan
from audiotoken_cli.devices import resolve_device
from audiotoken_cli.embedder import AudioEmbedder, LoadedEmbedder, save_embedder
from audiotoken_cli.errors import AudioTokenError, ModelError, UsageError
from audiotoken_cli.fbank import beats_fbank
from audiotoken_cli.files import write_atomically
from audiotoken_cli.prompt import PromptEncoder
from audiotoken_cli.safecache import load_beats_fast, load_embedder_fast

CHECKPOINTS = "checkpoints"
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
# Distributed: torchrun and `accelerate launch` both set RANK / WORLD_SIZE / LOCAL_RANK.


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def _average_gradients(model: torch.nn.Module, world: Dist) -> None:
    """Data parallelism by hand: the embedder is tiny, so one all-reduce per step is cheap and
    spares us DDP's wrapper around a model whose inputs come from frozen networks."""
    if world.world <= 1:
        return
    import torch.distributed as dist

    for parameter in model.parameters():
        if parameter.grad is not None:
            dist.all_reduce(parameter.grad)
            parameter.grad /= world.world


def _average_metrics(totals: dict[str, float], world: Dist) -> dict[str, float]:
    """The logged loss is the mean over all processes, not rank 0's share alone."""
    if world.world <= 1:
        return totals
    import torch.distributed as dist

    names = sorted(totals)
    values = torch.tensor([totals[name] for name in names], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        values = values.cuda()
    dist.all_reduce(values)
    return {name: float(value) / world.world for name, value in zip(names, values.cpu())}


def is_main_process() -> bool:
    """Rank 0, or not distributed at all: the process that writes and reports."""
    return int(os.environ.get("RANK", "0")) == 0


# ---------------------------------------------------------------------------------------------
# The frozen models


@dataclass
class Frozen:
    """The frozen parts, loaded once."""

    beats: torch.nn.Module
    vae: torch.nn.Module
    unet: torch.nn.Module
    noise_scheduler: object
    encoder: PromptEncoder
    latent_scale: float


def load_frozen(settings: TrainSettings, device: torch.device, dtype: torch.dtype) -> Frozen:
    from audiotoken_cli.diffusion import quiet_libraries

    quiet_libraries()
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    sd = Path(settings.sd)
    if not (sd / "model_index.json").is_file():
        raise ModelError(f"{sd}: not a diffusers Stable Diffusion folder (no model_index.json)")
    from audiotoken_cli.diffusion import weights_variant

    variant = weights_variant(sd)
    unet = UNet2DConditionModel.from_pretrained(sd, subfolder="unet", variant=variant)
    vae = AutoencoderKL.from_pretrained(sd, subfolder="vae", variant=variant)
    text_encoder = CLIPTextModel.from_pretrained(sd, subfolder="text_encoder", variant=variant)
    tokenizer = CLIPTokenizer.from_pretrained(sd, subfolder="tokenizer")
    scheduler = DDPMScheduler.from_pretrained(sd, subfolder="scheduler")
    beats = load_beats_fast(settings.audio_encoder, device=device, dtype=dtype)
    for model in (unet, vae, text_encoder):
        model.requires_grad_(False).to(device=device, dtype=dtype)
    vae.eval()
    text_encoder.eval()
    if settings.gradient_checkpointing:
        # Checkpointing is active only in train mode; the frozen UNet has no dropout, so train
        # mode changes nothing else. Activations are recomputed in the backward pass.
        unet.enable_gradient_checkpointing()
        unet.train()
    else:
        unet.eval()
    encoder = PromptEncoder(tokenizer, text_encoder)
    return Frozen(beats, vae, unet, scheduler, encoder, vae.config.scaling_factor)


# ---------------------------------------------------------------------------------------------
# Examples: (clip, slot) pairs. Slot k of clip i is a fixed audio window and frame, so the cache
# can hold exactly what the uncached path would compute.


def slot_rng(seed: int, index: int, slot: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed % 2**63, index, slot, 7]))


def step_rng(seed: int, step: int, rank: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed % 2**63, step, rank, 11]))


def pick_examples(seed: int, step: int, rank: int, count: int, clips: int,
                  slots: int) -> list[tuple[int, int]]:
    rng = step_rng(seed, step, rank)
    return [(int(rng.integers(clips)), int(rng.integers(slots))) for _ in range(count)]


class ExampleSource:
    """Features and latents for (clip, slot) pairs, computed now or read from the cache."""

    def __init__(self, data: TrainingData, frozen: Frozen, settings: TrainSettings,
                 device: torch.device, dtype: torch.dtype, cache: FeatureCache | None):
        self.data, self.frozen, self.settings = data, frozen, settings
        self.device, self.dtype, self.cache = device, dtype, cache

    def draw(self, index: int, slot: int) -> dict:
        return self.data.draw(index, slot_rng(self.settings.seed, index, slot))

    def batch(self, pairs: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor, list]:
        """features (B, N, 3·D) float32, latents (B, 4, h, w) float32, labels."""
        labels = [self.data.samples[i].label for i, _ in pairs]
        if self.cache is not None:
            features, latents = self.cache.read(pairs)
            return features.to(self.device), latents.to(self.device), labels
        examples = [self.draw(i, k) for i, k in pairs]
        waveforms = torch.stack([e["waveform"] for e in examples])
        pixels = torch.stack([e["pixels"] for e in examples])
        return self.encode_audio(waveforms), self.encode_pixels(pixels), labels

    @torch.no_grad()
    def encode_audio(self, waveforms: torch.Tensor) -> torch.Tensor:
        fbank = beats_fbank(waveforms.to(self.device))
        return self.frozen.beats(fbank.to(self.dtype)).float()

    @torch.no_grad()
    def encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        # The distribution's mean rather than a sample: deterministic, so the cached and
        # uncached paths agree, and the VAE's posterior is very narrow anyway.
        posterior = self.frozen.vae.encode(pixels.to(self.device, self.dtype)).latent_dist
        return posterior.mean.float() * self.frozen.latent_scale


class FeatureCache:
    """BEATs features and VAE latents for every (clip, slot), memory-mapped from the run folder.

    features.npy: (clips, slots, N, 3·D) in BEATs' compute dtype (float16 on a GPU, float32 on
    the CPU), so the cache holds exactly what the uncached path computes;
    latents.npy: (clips, slots, 4, h, w) float32.
    """

    def __init__(self, folder: Path):
        self.folder = folder
        meta = json.loads((folder / "cache.json").read_text())
        self.features = np.load(folder / "features.npy", mmap_mode="r")
        self.latents = np.load(folder / "latents.npy", mmap_mode="r")
        self.meta = meta

    def read(self, pairs: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        features = np.stack([self.features[i, k] for i, k in pairs]).astype(np.float32)
        latents = np.stack([self.latents[i, k] for i, k in pairs])
        return torch.from_numpy(features), torch.from_numpy(latents)

    @staticmethod
    def key(settings: TrainSettings, samples) -> dict:
        """What the cached values depend on; a mismatch rebuilds the cache."""
        return {"seed": settings.seed, "slots": settings.windows_per_clip,
                "audio_seconds": settings.audio_seconds, "size": list(settings.size),
                "audio_encoder": str(settings.audio_encoder), "sd": str(settings.sd),
                "clips": [str(s.audio) for s in samples]}

    @classmethod
    def build(cls, folder: Path, source: ExampleSource, settings: TrainSettings,
              progress: Callable[[int, int], None]) -> FeatureCache:
        folder.mkdir(parents=True, exist_ok=True)
        key = cls.key(settings, source.data.samples)
        meta_file = folder / "cache.json"
        if meta_file.is_file() and json.loads(meta_file.read_text()).get("key") == key:
            return cls(folder)
        clips, slots = len(source.data), settings.windows_per_clip
        first = source.draw(0, 0)
        feature_shape = source.encode_audio(first["waveform"][None]).shape[1:]
        latent_shape = source.encode_pixels(first["pixels"][None]).shape[1:]
        feature_dtype = np.float16 if source.dtype == torch.float16 else np.float32
        features = np.lib.format.open_memmap(folder / "features.npy.partial", mode="w+",
                                             dtype=feature_dtype,
                                             shape=(clips, slots, *feature_shape))
        latents = np.lib.format.open_memmap(folder / "latents.npy.partial", mode="w+",
                                            dtype=np.float32, shape=(clips, slots, *latent_shape))
        for i in range(clips):
            examples = [source.draw(i, k) for k in range(slots)]
            waveforms = torch.stack([e["waveform"] for e in examples])
            pixels = torch.stack([e["pixels"] for e in examples])
            features[i] = source.encode_audio(waveforms).cpu().numpy().astype(feature_dtype)
            latents[i] = source.encode_pixels(pixels).cpu().numpy()
            progress(i + 1, clips)
        features.flush()
        latents.flush()
        del features, latents
        os.replace(folder / "features.npy.partial", folder / "features.npy")
        os.replace(folder / "latents.npy.partial", folder / "latents.npy")
        write_atomically(meta_file, lambda tmp: tmp.write_text(json.dumps({"key": key})))
        return cls(folder)


# ---------------------------------------------------------------------------------------------
# Loss


def training_loss(tokens: torch.Tensor, latents: torch.Tensor, labels: list,
                  frozen: Frozen, settings: TrainSettings, generator: torch.Generator,
                  dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The paper's objective for one batch; returns every term and their weighted sum.

    tokens (B, d); latents (B, 4, h, w). ε-prediction MSE (velocity for v-prediction models),
    plus 0.01·mean|token|, plus the optional class term
    ``w · (1 − cos(token, mean embedding of the class name's word pieces))²``.
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
    text = frozen.encoder.encode(prompts, tokens.to(dtype))  # (B, 77, d), grads reach tokens
    prediction = frozen.unet(noisy.to(dtype), timesteps, text).sample
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
# Run folder: config, metrics, checkpoints


def _versions() -> dict[str, str]:
    import diffusers
    import transformers

    return {"audiotoken-cli": __version__, "torch": torch.__version__,
            "diffusers": diffusers.__version__, "transformers": transformers.__version__,
            "python": platform.python_version()}


def _settings_dict(settings: TrainSettings) -> dict:
    return json.loads(json.dumps(asdict(settings), default=str))


def checkpoint_steps(run: Path) -> list[int]:
    folder = run / CHECKPOINTS
    steps = []
    for path in folder.glob("step-*") if folder.is_dir() else []:
        if path.is_dir() and path.name[5:].isdigit() and (path / "state.json").is_file():
            steps.append(int(path.name[5:]))
    return sorted(steps)


def save_checkpoint(run: Path, step: int, embedder: AudioEmbedder, optimizer, schedule,
                    info: EmbedderInfo, keep: int) -> Path:
    """``checkpoints/step-N/``, written in a temporary folder and renamed whole: a crash or a full
    disk mid-save leaves the previous checkpoints as they were."""
    folder = run / CHECKPOINTS
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"step-{step}"
    temporary = folder / f".step-{step}.partial"
    shutil.rmtree(temporary, ignore_errors=True)
    try:
        save_embedder(embedder, temporary, info)
        torch.save({"optimizer": optimizer.state_dict(), "schedule": schedule.state_dict()},
                   temporary / "optimizer.pt")
        (temporary / "state.json").write_text(json.dumps({"step": step}))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(temporary, final)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    for old in checkpoint_steps(run)[:-keep] if keep > 0 else []:
        shutil.rmtree(folder / f"step-{old}", ignore_errors=True)
    return final


def load_checkpoint(run: Path, embedder: AudioEmbedder, optimizer, schedule) -> int:
    steps = checkpoint_steps(run)
    if not steps:
        raise UsageError(f"{run}: --resume found no checkpoint in {run / CHECKPOINTS}")
    folder = run / CHECKPOINTS / f"step-{steps[-1]}"
    from safetensors.torch import load_file

    embedder.load_state_dict(load_file(folder / "embedder.safetensors"))
    state = torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    return steps[-1]


def _trim_metrics(run: Path, last_step: int) -> None:
    """After a resume, drop metric lines of steps the checkpoint does not include."""
    path = run / METRICS
    if not path.is_file():
        return
    kept = [line for line in path.read_text().splitlines()
            if line.strip() and json.loads(line)["step"] <= last_step]
    write_atomically(path, lambda tmp: tmp.write_text("".join(f"{line}\n" for line in kept)))


# ---------------------------------------------------------------------------------------------
# The loop


def new_embedder(settings: TrainSettings, feature_dim: int, token_dim: int,
                 device: torch.device) -> tuple[AudioEmbedder, str]:
    """A fresh embedder, or ``--init``'s weights to fine-tune."""
    if settings.init is None:
        torch.manual_seed(settings.seed)
        config = EmbedderConfig(input_dim=feature_dim, hidden_dim=feature_dim, token_dim=token_dim)
        return AudioEmbedder(config).to(device), "trained from scratch"
    loaded: LoadedEmbedder = load_embedder_fast(settings.init, device=device)
    config = loaded.model.config
    if (config.input_dim, config.token_dim) != (feature_dim, token_dim):
        raise ModelError(f"{settings.init}: --init embedder is {config.input_dim}→"
                         f"{config.token_dim} but this audio encoder and model need "
                         f"{feature_dim}→{token_dim}")
    loaded.model.requires_grad_(True)
    return loaded.model, f"fine-tuned from {settings.init}"


def train(settings: TrainSettings, events: TrainEvents | None = None) -> Path:
    """Train, writing the run folder; returns it. Raises AudioTokenError for user problems."""
    events = events or TrainEvents()
    device = resolve_device(settings.runtime.device)
    world = init_distributed(device)
    if world.world > 1 and device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    compute_dtype, autocast_dtype = _precision(settings.mixed_precision, device)
    run = Path(settings.output)

    data_settings = DataSettings(root=settings.data, labels=settings.labels,
                                 audio_seconds=settings.audio_seconds, size=settings.size)
    samples, warnings = scan(data_settings)
    held_out, samples = _hold_out(samples, settings.sample_clips)
    data = TrainingData(samples, data_settings, settings.seed)

    _check_run_folder(run, settings)
    events.on_note(f"{len(samples)} clips ({len(warnings)} skipped); loading the models")
    frozen = load_frozen(settings, device, compute_dtype)
    feature_dim = frozen.beats.cfg.output_dim
    embedder, origin = new_embedder(settings, feature_dim, frozen.encoder.width, device)
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
            _trim_metrics(run, step)
        elif (run / METRICS).exists():
            (run / METRICS).unlink()

    cache = None
    source = ExampleSource(data, frozen, settings, device, compute_dtype, None)
    if settings.cache:
        cache = FeatureCache.build(run / "cache", source, settings,
                                   lambda done, total: events.on_note(
                                       f"cache: {done}/{total} clips") if done == total else None)
        source.cache = cache
    info = EmbedderInfo(audio_encoder=str(settings.audio_encoder), prompt=settings.prompt,
                        source=f"audiotoken train {run.name} ({origin})",
                        extra={"sd": str(settings.sd), "training": record})

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
                if settings.sample_every and step % settings.sample_every == 0:
                    _sample_grid(run, step, embedder, frozen, held_out or samples[:2],
                                 data_settings, settings, device, compute_dtype)
            events.on_step(metrics)
    if interrupted.raised:
        if world.main and step > last_good:
            save_checkpoint(run, step, embedder, optimizer, schedule, info, settings.keep)
        raise KeyboardInterrupt
    if world.main:
        save_embedder(embedder, run, info)
        _loss_curve(run)
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
        features, latents, labels = source.batch(pairs)
        draw_seed = int(step_rng(settings.seed, step * settings.grad_accum + micro, world.rank)
                        .integers(2**62))
        generator = torch.Generator().manual_seed(draw_seed)
        # The embedder's dropout draws from torch's global generator: seed it per step too.
        torch.manual_seed(draw_seed + 1)
        with _autocast(device, autocast_dtype):
            tokens = embedder(features)
            terms = training_loss(tokens, latents, labels, frozen, settings, generator,
                                  compute_dtype)
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
    return {"settings": _settings_dict(settings), "versions": _versions(),
            "clips": len(samples), "held_out": [str(s.audio) for s in held_out],
            "skipped": warnings, "embedder": origin, "world_size": world.world,
            "lr_scaled": scaled_lr(settings, world.world)}


def _append_metrics(run: Path, metrics: dict) -> None:
    with open(run / METRICS, "a") as handle:
        handle.write(json.dumps({k: (round(v, 8) if isinstance(v, float) else v)
                                 for k, v in metrics.items()}) + "\n")


class _InterruptFlag:
    """Ctrl-C finishes the current step, then the loop saves a checkpoint and stops."""

    def __init__(self):
        self.raised = False
        self._previous = None

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread (e.g. under some runners): no handler
            self._previous = None
        return self

    def _handle(self, *_):
        if self.raised:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.raised = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


# ---------------------------------------------------------------------------------------------
# Pictures: sample grids during training, the loss curve at the end


@torch.no_grad()
def _sample_grid(run: Path, step: int, embedder, frozen: Frozen, samples, data_settings,
                 settings: TrainSettings, device, dtype) -> None:
    """One image per held-out clip from its first window, in a row, as samples/step-N.png."""
    from PIL import Image

    from audiotoken_cli.diffusion import ImageJob, RenderSettings, render, sample_pipeline

    data = TrainingData(samples, data_settings, settings.seed)
    was_training = embedder.training
    embedder.eval()
    pipe = sample_pipeline(frozen)
    negative = frozen.encoder.encode([""])[0]
    jobs = []
    for i in range(len(samples)):
        waveform = data.draw(i, slot_rng(settings.seed, i, 0))["waveform"]
        fbank = beats_fbank(waveform[None].to(device))
        token = embedder(frozen.beats(fbank.to(dtype)).float())
        prompt = frozen.encoder.encode([settings.prompt], token.to(dtype))[0]
        jobs.append(ImageJob(prompt, negative, settings.seed + i))
    width, height = settings.size
    images = render(pipe, jobs, RenderSettings(steps=settings.sample_steps, width=width,
                                               height=height, scheduler="dpm++"))
    embedder.train(was_training)
    grid = Image.new("RGB", (width * len(images), height))
    for i, image in enumerate(images):
        if image is not None:
            grid.paste(image, (i * width, 0))
    target = run / "samples" / f"step-{step}.png"
    write_atomically(target, lambda tmp: grid.save(tmp, format="PNG"))


def _loss_curve(run: Path, width: int = 640, height: int = 360) -> None:
    """loss.png: the loss per step (light) and its running mean (dark), drawn with PIL."""
    from PIL import Image, ImageDraw

    path = run / METRICS
    losses = [json.loads(line)["loss"] for line in path.read_text().splitlines() if line.strip()]
    if not losses:
        return
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = 50, 20, width - 20, height - 40
    low, high = min(losses), max(losses)
    span = (high - low) or 1.0

    def point(i: int, value: float) -> tuple[float, float]:
        x = left + (right - left) * (i / max(len(losses) - 1, 1))
        return x, bottom - (bottom - top) * (value - low) / span

    window = max(1, len(losses) // 20)
    smooth = [float(np.mean(losses[max(0, i - window + 1):i + 1])) for i in range(len(losses))]
    draw.line([point(i, v) for i, v in enumerate(smooth)], fill=(20, 60, 160), width=3)
    draw.line([point(i, v) for i, v in enumerate(losses)], fill=(120, 150, 220), width=1)
    draw.rectangle([left, top, right, bottom], outline="black")
    draw.text((left, bottom + 8), f"step 1 … {len(losses)}", fill="black")
    draw.text((4, top), f"{high:.4g}", fill="black")
    draw.text((4, bottom - 10), f"{low:.4g}", fill="black")
    draw.text((left, 4), "training loss (thin: per step; thick: running mean)", fill="black")
    write_atomically(run / "loss.png", lambda tmp: image.save(tmp, format="PNG"))
