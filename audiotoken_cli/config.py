"""Settings as frozen dataclasses: one per command, plus the embedder's sizes.

Library functions take these (or plain typed arguments), never a CLI namespace, so the same code
serves the CLI, the tests and anyone importing the package. Nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

SAMPLE_RATE = 16_000
"""BEATs was trained on 16 kHz audio; every waveform is resampled to this."""

PAPER_WINDOW_SECONDS = 10.0
"""The paper encodes the first 10 s of each clip, looping shorter clips to fill it."""

PAPER_PROMPT = "a photo of <*>"
"""The prompt the published embedder was trained with."""

PLACEHOLDER = "<*>"

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
DTYPE_CHOICES = ("auto", "float32", "float16", "bfloat16")


@dataclass(frozen=True)
class Window:
    """Which part of a file to encode, in seconds. A clip shorter than the window is looped."""

    start: float = 0.0
    duration: float = PAPER_WINDOW_SECONDS

    @property
    def num_samples(self) -> int:
        return round(self.duration * SAMPLE_RATE)


@dataclass(frozen=True)
class EmbedderConfig:
    """The embedder's sizes; saved with its weights and rebuilt from them.

    input_dim:  width of the audio features, 3 × BEATs width (layers 4, 8, 12 concatenated).
    hidden_dim: width of the MLP's hidden layer (the paper uses input_dim).
    token_dim:  width of the produced token, the text encoder's width (768 SD 1.x, 1024 SD 2.x).
    """

    input_dim: int = 2304
    hidden_dim: int = 2304
    token_dim: int = 768

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class EmbedderInfo:
    """What an embedder file says about itself beyond its sizes (provenance, training prompt)."""

    audio_encoder: str = ""
    prompt: str = PAPER_PROMPT
    source: str = ""
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class RuntimeSettings:
    """Where and how to run: names as the user gave them, resolved when the models load (``model.resolve_device``)."""

    device: str = "auto"
    dtype: str = "auto"


@dataclass(frozen=True)
class EmbedSettings:
    """Everything ``audiotoken embed`` needs besides the list of input files."""

    audio_encoder: Path
    embedder: Path
    window: Window = Window()
    batch_size: int = 8
    output_dir: Path | None = None
    overwrite: bool = False
    runtime: RuntimeSettings = RuntimeSettings()


@dataclass(frozen=True)
class LoadSettings:
    """What is fixed when the models load: the weights, how they are fused and placed. Changing
    any of these means loading again, so none of them can be given per call.

    sd: None loads only the audio encoder and embedder (``embed``, ``load(images=False)``).
    lcm_lora / taesd: ``--fast``'s weights; the LCM-LoRA is fused into the UNet at load.
    compile: torch.compile the UNet (pays off over many batches on a GPU).
    """

    audio_encoder: Path
    embedder: Path
    sd: Path | None = None
    lora: Path | None = None
    lcm_lora: Path | None = None
    taesd: Path | None = None
    compile: bool = False
    safety_checker: bool = True
    low_vram: bool = False
    runtime: RuntimeSettings = RuntimeSettings()


@dataclass(frozen=True)
class CallSettings:
    """What may change from one call to the next on a loaded model, without loading again.

    batch_size: images per UNet call; None picks one for the device.
    scheduler: None means the model's sampler (``dpm++``; ``lcm`` when the LCM-LoRA is fused).
    """

    prompt: str = PAPER_PROMPT
    negative_prompt: str = ""
    steps: int = 25
    guidance: float = 7.5
    width: int = 512
    height: int = 512
    scheduler: str = "dpm++"
    window: Window = Window()
    batch_size: int | None = None


LOAD_FIELDS = tuple(f.name for f in fields(LoadSettings))
CALL_FIELDS = tuple(f.name for f in fields(CallSettings))


@dataclass(frozen=True)
class GenerateSettings:
    """Everything one ``generate`` command line says, besides its input files: the models
    (``load_settings``), the per-call settings (``call_settings``), the seeds and the outputs.

    seed: the base seed; image i of every file uses ``seed + i``.
    batch_size: images per UNet call; None picks one for the device.
    """

    sd: Path
    audio_encoder: Path
    embedder: Path
    seed: int
    num_images: int = 1
    steps: int = 25
    guidance: float = 7.5
    prompt: str = PAPER_PROMPT
    negative_prompt: str = ""
    width: int = 512
    height: int = 512
    scheduler: str = "dpm++"
    window: Window = Window()
    batch_size: int | None = None
    output_dir: Path | None = None
    overwrite: bool = False
    safety_checker: bool = True
    low_vram: bool = False
    lora: Path | None = None
    runtime: RuntimeSettings = RuntimeSettings()
    lcm_lora: Path | None = None  # --fast: the LCM-LoRA fused into the UNet, LCM scheduler
    taesd: Path | None = None  # --fast: the tiny autoencoder decodes instead of the VAE
    compile: bool = False  # torch.compile the UNet (pays off over many batches on a GPU)

    @property
    def load_settings(self) -> LoadSettings:
        return LoadSettings(**{name: getattr(self, name) for name in LOAD_FIELDS})

    @property
    def call_settings(self) -> CallSettings:
        values = {name: getattr(self, name) for name in CALL_FIELDS}
        if self.lcm_lora is not None:  # the LCM-LoRA samples with its own scheduler only
            values["scheduler"] = "lcm"
        return CallSettings(**values)

    @classmethod
    def of(cls, load: LoadSettings, call: CallSettings, **command) -> GenerateSettings:
        """One command's settings from a loaded model's and a call's (``command``: seed,
        num_images, output_dir, overwrite)."""
        return cls(**{name: getattr(load, name) for name in LOAD_FIELDS},
                   **{name: getattr(call, name) for name in CALL_FIELDS}, **command)


PAPER_WARMUP_STEPS = 500


def auto_warmup(max_steps: int) -> int:
    """The default warm-up: 10% of the run, at most the paper's 500 steps, so a short run
    still trains at its set lr (500 warm-up steps in a 4-step run would keep it near 0)."""
    return min(PAPER_WARMUP_STEPS, max_steps // 10)


@dataclass(frozen=True)
class TrainSettings:
    """Everything ``audiotoken train`` needs. Defaults follow the paper's recipe (design §1):
    AdamW, lr 1e-5 scaled by batch × accumulation × processes, weight decay 1e-2, constant after
    500 warm-up steps, batch 4 × accumulation 4, 30k steps, 5 s audio windows."""

    data: Path
    output: Path
    sd: Path
    audio_encoder: Path
    labels: Path | None = None
    init: Path | None = None
    audio_seconds: float = 5.0
    size: tuple[int, int] = (512, 512)  # (width, height)
    batch_size: int = 4
    grad_accum: int = 4
    max_steps: int = 30_000
    lr: float = 1e-5
    scale_lr: bool = True
    weight_decay: float = 1e-2
    warmup_steps: int = 500
    seed: int = 0
    l1_weight: float = 0.01
    class_loss_weight: float = 0.01
    mixed_precision: str = "auto"
    gradient_checkpointing: bool = True
    cache: bool = False
    windows_per_clip: int = 8
    save_every: int = 500
    keep: int = 3
    sample_every: int = 500
    sample_clips: int = 2
    sample_steps: int = 25
    resume: bool = False
    overwrite: bool = False
    prompt: str = PAPER_PROMPT
    runtime: RuntimeSettings = RuntimeSettings()
