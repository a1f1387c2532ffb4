"""The embedder: BEATs features (B, N, 3·D) → one audio token (B, d) in the text encoder's space.

Architecture (AudioToken, §2): a per-step MLP ``fc2(GELU(fc1(x)))`` and attentive pooling over the
N time steps. The pooling scores each step from a unary term (how salient the step is alone) and a
pairwise term (how much it agrees with the other steps), mixes the two with a learned 2 → 1 weight,
softmaxes over time and takes the weighted sum.

Two on-disk formats:
- the paper's ``embedder_learned_embeds.bin``: a pickled state dict with the reference code's key
  names (``fga.un_models.0.embed.weight``, 1×1 convolutions); imported with ``weights_only=True``;
- ours: a folder (or file pair) ``embedder.safetensors`` + ``config.json`` that records the sizes,
  the audio encoder, the training prompt and where the weights came from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from audiotoken_cli.config import EmbedderConfig, EmbedderInfo
from audiotoken_cli.errors import ModelError

WEIGHTS_NAME = "embedder.safetensors"
CONFIG_NAME = "config.json"
FORMAT_NAME = "audiotoken-embedder"
FORMAT_VERSION = 1

# Our parameter name → the reference code's. Its 1×1 Conv1d weights are (out, in, 1); ours are
# Linear weights (out, in), which compute the same map on (B, N, C) without transposes.
PAPER_KEYS = {
    "fc1.weight": "fc1.weight",
    "fc1.bias": "fc1.bias",
    "fc2.weight": "fc2.weight",
    "fc2.bias": "fc2.bias",
    "pool.unary_embed.weight": "fga.un_models.0.embed.weight",
    "pool.unary_embed.bias": "fga.un_models.0.embed.bias",
    "pool.unary_score.weight": "fga.un_models.0.feature_reduce.weight",
    "pool.unary_score.bias": "fga.un_models.0.feature_reduce.bias",
    "pool.pair_x.weight": "fga.pp_models.0.embed_X.weight",
    "pool.pair_x.bias": "fga.pp_models.0.embed_X.bias",
    "pool.pair_y.weight": "fga.pp_models.0.embed_Y.weight",
    "pool.pair_y.bias": "fga.pp_models.0.embed_Y.bias",
    "pool.mix.weight": "fga.reduce_potentials.0.weight",
}


class AttentivePooling(nn.Module):
    """Factor-graph attention over time with one unary and one self-pairwise potential."""

    def __init__(self, dim: int):
        super().__init__()
        self.unary_embed = nn.Linear(dim, dim)
        self.unary_score = nn.Linear(dim, 1)
        self.pair_x = nn.Linear(dim, dim)
        self.pair_y = nn.Linear(dim, dim)
        self.mix = nn.Linear(2, 1, bias=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """h: (B, N, d) → pooled (B, d)."""
        # The reference applies dropout here even at inference (F.dropout's default is
        # training=True); we follow nn.Module's mode so inference is deterministic.
        unary = self.unary_score(F.dropout(F.relu(self.unary_embed(h)), 0.5, self.training))
        pairwise = self._mean_cosine(h)  # (B, N, 1)
        scores = self.mix(torch.cat([unary, pairwise], dim=-1))  # (B, N, 1)
        weights = torch.softmax(scores, dim=1)
        return (weights * h).sum(dim=1)  # (B, d)

    def _mean_cosine(self, h: torch.Tensor) -> torch.Tensor:
        """Mean over s of cos(X h_t, Y h_s), shape (B, N, 1).

        The mean of dot products is the dot product with the mean, so this is O(N·d) rather than
        building the N×N similarity matrix; it agrees with the matrix form to float rounding.
        """
        x = F.normalize(self.pair_x(h), dim=-1)
        y_mean = F.normalize(self.pair_y(h), dim=-1).mean(dim=1, keepdim=True)  # (B, 1, d)
        return (x * y_mean).sum(dim=-1, keepdim=True)


class AudioEmbedder(nn.Module):
    """Audio features (B, N, input_dim) → token (B, token_dim)."""

    def __init__(self, config: EmbedderConfig):
        super().__init__()
        self.config = config
        self.fc1 = nn.Linear(config.input_dim, config.hidden_dim)
        self.fc2 = nn.Linear(config.hidden_dim, config.token_dim)
        self.pool = AttentivePooling(config.token_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features: (B, N, input_dim) → (B, token_dim)."""
        h = self.fc2(F.gelu(self.fc1(features)))  # (B, N, d)
        return self.pool(h)


@dataclass
class LoadedEmbedder:
    """An embedder ready to run, with what its file said about itself."""

    model: AudioEmbedder
    info: EmbedderInfo
    path: Path

    @property
    def weights_file(self) -> Path:
        """The file holding the weights: the path itself, or the folder's embedder.safetensors."""
        return self.path / WEIGHTS_NAME if self.path.is_dir() else self.path


# ---------------------------------------------------------------------------------------------
# Loading


def load_embedder(path: str | Path, device: torch.device | str = "cpu") -> LoadedEmbedder:
    """Load either format: our folder / ``.safetensors`` + ``config.json``, or the paper's state
    dict (``.bin``/``.pt``). The model comes back in eval mode, frozen, in float32 (it is small, and
    full precision keeps tokens exact)."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"{path}: embedder not found")
    if path.is_dir() or path.suffix == ".safetensors":
        loaded = _load_own_format(path)
    else:
        loaded = _load_paper_format(path)
    loaded.model.to(device).eval().requires_grad_(False)
    return loaded


def _load_paper_format(path: Path) -> LoadedEmbedder:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a bad file; all mean the same here
        raise ModelError(f"{path}: not a readable torch state dict") from error
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path}: expected a state dict of tensors (the paper's embedder format)")
    missing = [key for key in PAPER_KEYS.values() if key not in state]
    if missing:
        raise ModelError(
            f"{path}: not an AudioToken embedder: missing {', '.join(missing[:3])}"
            + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        )
    ours = {name: state[paper][..., 0] if state[paper].dim() == 3 and state[paper].shape[2] == 1
            else state[paper] for name, paper in PAPER_KEYS.items()}
    unexpected = sorted(set(state) - set(PAPER_KEYS.values()))
    if unexpected:
        raise ModelError(f"{path}: unexpected keys in embedder: {', '.join(unexpected[:3])}")
    config = _config_from_shapes(path, ours)
    info = EmbedderInfo(source=str(path))
    return LoadedEmbedder(build_embedder(path, config, ours), info, path)


def _config_from_shapes(path: Path, state: dict[str, torch.Tensor]) -> EmbedderConfig:
    for key in ("fc1.weight", "fc2.weight"):
        if state[key].dim() != 2:
            raise ModelError(f"{path}: tensor {key!r} has shape {tuple(state[key].shape)}; an "
                             "embedder's linear weights are (out, in)")
    hidden_dim, input_dim = state["fc1.weight"].shape
    token_dim = state["fc2.weight"].shape[0]
    return EmbedderConfig(input_dim=input_dim, hidden_dim=hidden_dim, token_dim=token_dim)


def _load_own_format(path: Path) -> LoadedEmbedder:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights, config_path = _own_format_paths(path)
    try:
        meta = json.loads(config_path.read_text())
    except (OSError, ValueError) as error:
        raise ModelError(f"{config_path}: unreadable embedder config ({_first_line(error)})") from error
    if meta.get("format") != FORMAT_NAME:
        raise ModelError(f"{config_path}: not an audiotoken embedder config (no format {FORMAT_NAME!r})")
    try:
        config = EmbedderConfig(**meta["sizes"])
    except (KeyError, TypeError, ValueError) as error:
        raise ModelError(f"{config_path}: bad or missing 'sizes' ({_first_line(error)})") from error
    try:
        state = load_file(weights)
    except (OSError, SafetensorError) as error:
        raise ModelError(f"{weights}: unreadable safetensors file ({_first_line(error)})") from error
    info = EmbedderInfo(
        audio_encoder=meta.get("audio_encoder", ""),
        prompt=meta.get("prompt", EmbedderInfo.prompt),
        source=meta.get("source", str(path)),
        extra={k: v for k, v in meta.items() if k not in _OWN_KEYS},
    )
    return LoadedEmbedder(build_embedder(weights, config, state), info, path)


def _own_format_paths(path: Path) -> tuple[Path, Path]:
    """A folder holds both files; a ``.safetensors`` file has its ``config.json`` beside it."""
    weights = path / WEIGHTS_NAME if path.is_dir() else path
    config_path = weights.parent / CONFIG_NAME
    if not weights.is_file():
        raise ModelError(f"{path}: no {WEIGHTS_NAME} in this folder (is it a training run?)")
    if not config_path.is_file():
        raise ModelError(f"{weights}: missing {CONFIG_NAME} beside it (it records the sizes)")
    return weights, config_path


def build_embedder(path: Path, config: EmbedderConfig, state: dict[str, torch.Tensor]) -> AudioEmbedder:
    """An embedder of ``config``'s sizes holding ``state`` (our key names); strict."""
    model = AudioEmbedder(config)
    _check_shapes(path, model.state_dict(), state)
    try:
        model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    except RuntimeError as error:
        raise ModelError(f"{path}: weights do not fit the recorded sizes ({_first_line(error)})") from error
    return model


def _check_shapes(path: Path, wanted: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> None:
    """Name the first key that is missing, extra or of the wrong shape (torch's own message puts
    this on its second line, after a generic first one)."""
    for key, tensor in wanted.items():
        if key not in state:
            raise ModelError(f"{path}: no tensor {key!r} (expected shape {tuple(tensor.shape)})")
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise ModelError(f"{path}: tensor {key!r} has shape {tuple(state[key].shape)} but the "
                             f"embedder's sizes need {tuple(tensor.shape)}")
    extra = sorted(set(state) - set(wanted))
    if extra:
        raise ModelError(f"{path}: unexpected tensor {extra[0]!r} (not part of an embedder)")


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


# ---------------------------------------------------------------------------------------------
# Saving

_OWN_KEYS = {"format", "format_version", "sizes", "audio_encoder", "text_width", "prompt", "source"}


def save_embedder(model: AudioEmbedder, folder: str | Path, info: EmbedderInfo) -> Path:
    """Write ``folder/embedder.safetensors`` and ``folder/config.json``; return the folder.

    Each file goes to a temporary name first and is renamed into place (with the usual
    permissions), so a crash never leaves a half-written embedder that later loads as garbage.
    """
    from safetensors.torch import save_file

    from audiotoken_cli.files import write_atomically

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "sizes": model.config.to_dict(),
        "text_width": model.config.token_dim,
        "audio_encoder": info.audio_encoder,
        "prompt": info.prompt,
        "source": info.source,
        **info.extra,
    }
    write_atomically(folder / WEIGHTS_NAME,
                     lambda tmp: save_file(state, str(tmp), metadata={"format": FORMAT_NAME}))
    write_atomically(folder / CONFIG_NAME, lambda tmp: tmp.write_text(json.dumps(meta, indent=2) + "\n"))
    return folder
