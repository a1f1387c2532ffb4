"""The BEATs audio encoder (frozen), and strict loading of Microsoft's checkpoint format.

BEATs (Chen et al., 2022, arXiv 2212.09058) cuts a normalised log-mel fbank into 16×16 patches and
runs them through a post-LN transformer with deep norm, a convolutional positional embedding and a
gated relative position bias. AudioToken uses the hidden states after layers 4, 8 and 12, joined on
the feature axis, so `BEATs.forward` returns exactly that: (B, N, 3·D).

The module tree mirrors the official one, so the official state dict loads with strict=True and the
names in error messages are the ones a user sees in the file. Only inference is supported: there is
no dropout, no layer drop and no padding mask (every window in a batch has the same length).

The checkpoint is `{'cfg': dict, 'model': state_dict}`; `cfg` sets every size. `load_beats` reads
such a file; `load_beats_state` takes the two parts directly (for caches in other formats).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from audiotoken_cli.errors import ModelError
from audiotoken_cli.models.beats_config import OUTPUT_LAYERS, BEATsConfig, _some

# The gate of the relative position bias projects each head's query to 8 values, summed in two
# groups of 4; this is fixed by the architecture, not by the cfg.
_GATE_WIDTH = 8

# Keys of fine-tuned checkpoints that belong to the AudioSet classifier head, which we never run.
_IGNORED_PREFIXES = ("predictor.",)


def relative_position_buckets(n: int, num_buckets: int, max_distance: int) -> Tensor:
    """T5-style bidirectional buckets of key position minus query position.

    Half the buckets are for keys after the query, half for the rest. Within a half, distances
    below a quarter of num_buckets get a bucket each, longer ones share log-spaced buckets up to
    max_distance, and all beyond share the last. Returns (N, N) int64, [query, key].
    """
    positions = torch.arange(n)
    relative = positions[None, :] - positions[:, None]  # (N, N): key - query
    half = num_buckets // 2
    exact = half // 2
    direction = (relative > 0).long() * half
    distance = relative.abs()
    # clamp only keeps log() finite at distance 0; those entries take the exact branch below.
    log_ratio = torch.log(distance.clamp(min=1).float() / exact) / math.log(max_distance / exact)
    far = exact + (log_ratio * (half - exact)).long()
    far = far.clamp(max=half - 1)
    return direction + torch.where(distance < exact, distance, far)


class WeightNormConv1d(nn.Module):
    """A grouped Conv1d whose weight is stored as legacy weight norm (`weight_g`, `weight_v`).

    The official model wraps its conv in `nn.utils.weight_norm(dim=2)`: one magnitude per kernel
    tap, so weight = g · v / ‖v‖ with the norm taken over output and input channels.
    Shapes: weight_v (D, D/groups, K), weight_g (1, 1, K), bias (D,).
    """

    def __init__(self, channels: int, kernel_size: int, groups: int) -> None:
        super().__init__()
        self.groups = groups
        self.padding = kernel_size // 2
        self.weight_g = nn.Parameter(torch.ones(1, 1, kernel_size))
        self.weight_v = nn.Parameter(torch.empty(channels, channels // groups, kernel_size))
        self.bias = nn.Parameter(torch.zeros(channels))
        nn.init.normal_(self.weight_v, std=(4 / (kernel_size * channels)) ** 0.5)

    def weight(self) -> Tensor:
        """The effective conv weight (D, D/groups, K), in the parameters' dtype."""
        # The norm runs over D·D/groups values; float32 keeps it exact in half precision too.
        v = self.weight_v.float()
        norm = v.norm(dim=(0, 1), keepdim=True)  # (1, 1, K)
        return (v * (self.weight_g.float() / norm)).to(self.weight_v.dtype)

    def forward(self, x: Tensor) -> Tensor:
        """(B, D, N) -> (B, D, N + 1 - K % 2): padding K//2 on both sides."""
        if x.dtype == torch.bfloat16 and x.device.type == "cpu":
            # oneDNN's bfloat16 grouped conv1d is wrong for some shapes on AVX-512 CPUs (torch
            # 2.13: relative error 1.07 for D=24, K=16, groups=4; fine at BEATs' full size). One
            # conv in float32 costs little and is exact everywhere.
            weight, bias = self.weight().float(), self.bias.float()
            return F.conv1d(x.float(), weight, bias, padding=self.padding,
                            groups=self.groups).to(x.dtype)
        return F.conv1d(x, self.weight(), self.bias, padding=self.padding, groups=self.groups)


class SelfAttention(nn.Module):
    """Multi-head self-attention with an optional gated relative position bias.

    The bias table (`relative_attention_bias`, num_buckets × heads) is computed once per forward
    by the encoder and passed in; each layer scales it by its own per-query gate.
    """

    def __init__(self, cfg: BEATsConfig, relative_attention_bias: nn.Embedding | None) -> None:
        super().__init__()
        d = cfg.encoder_embed_dim
        self.num_heads = cfg.encoder_attention_heads
        self.head_dim = cfg.head_dim
        self.q_proj = nn.Linear(d, d)
        self.k_proj = nn.Linear(d, d)
        self.v_proj = nn.Linear(d, d)
        self.out_proj = nn.Linear(d, d)
        self.gated = cfg.gru_rel_pos
        if self.gated:
            self.grep_linear = nn.Linear(self.head_dim, _GATE_WIDTH)
            self.grep_a = nn.Parameter(torch.ones(1, self.num_heads, 1, 1))
        if relative_attention_bias is not None:
            # One table shared by all layers; registering it in each keeps the official key set.
            self.relative_attention_bias = relative_attention_bias

    def _heads(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, N, hd)

    def gate(self, q: Tensor) -> Tensor:
        """Per-query factor on the position bias: q (B, H, N, hd) -> (B, H, N, 1).

        With a, b = sigmoid(...) in (0, 1) the factor a·(b·grep_a − 1) + 2 moves between 2
        (a → 0) and 1 + b·grep_a (a → 1): each head learns how much position matters per query.
        """
        b, h, n, _ = q.shape
        logits = self.grep_linear(q).view(b, h, n, 2, _GATE_WIDTH // 2).sum(-1)  # (B, H, N, 2)
        gate_a, gate_b = torch.sigmoid(logits).chunk(2, dim=-1)  # (B, H, N, 1) each
        return gate_a * (gate_b * self.grep_a - 1.0) + 2.0

    def forward(self, x: Tensor, position_bias: Tensor | None) -> Tensor:
        """x (B, N, D), position_bias (H, N, N) or None -> (B, N, D)."""
        b, n, d = x.shape
        q = self._heads(self.q_proj(x))
        k = self._heads(self.k_proj(x))
        v = self._heads(self.v_proj(x))
        mask = None
        if position_bias is not None:
            mask = position_bias.unsqueeze(0)  # (1, H, N, N)
            if self.gated:
                # The gate reads the query before the 1/sqrt(hd) scaling, as the official code does.
                mask = self.gate(q) * mask  # (B, H, N, N)
            mask = mask.to(q.dtype)
        # The official code divides q by 32 before q·k and subtracts the row max before softmax
        # so that fp16 scores cannot overflow. SDPA needs no such trick: its fused kernels keep
        # scores in float32 and subtract the max themselves, and the CPU path stays finite in
        # fp16 with unscaled q·k of 2e5 (checked). Mathematically the results are the same.
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, H, N, hd)
        out = out.transpose(1, 2).reshape(b, n, d)  # (B, N, D)
        return self.out_proj(out)


class EncoderLayer(nn.Module):
    """Post-LN transformer layer with deep-norm residual scaling: (B, N, D) -> (B, N, D)."""

    def __init__(self, cfg: BEATsConfig, relative_attention_bias: nn.Embedding | None) -> None:
        super().__init__()
        d = cfg.encoder_embed_dim
        self.self_attn = SelfAttention(cfg, relative_attention_bias)
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, cfg.encoder_ffn_embed_dim)
        self.fc2 = nn.Linear(cfg.encoder_ffn_embed_dim, d)
        self.final_layer_norm = nn.LayerNorm(d)
        # Deep norm (Wang et al., 2022) up-weights the residual so that post-LN trains stably.
        self.residual_scale = (2 * cfg.encoder_layers) ** 0.25 if cfg.deep_norm else 1.0

    def forward(self, x: Tensor, position_bias: Tensor | None) -> Tensor:
        x = self.self_attn_layer_norm(x * self.residual_scale + self.self_attn(x, position_bias))
        # GELU in float32, like the official code, so half precision rounds only once.
        h = self.fc2(F.gelu(self.fc1(x).float()).to(x.dtype))
        return self.final_layer_norm(x * self.residual_scale + h)


class Encoder(nn.Module):
    """Positional conv, LayerNorm, then the layers: (B, N, D) -> list of (B, N, D), one per
    entry of OUTPUT_LAYERS."""

    def __init__(self, cfg: BEATsConfig) -> None:
        super().__init__()
        self.cfg = cfg
        # A one-element list so the keys read pos_conv.0.weight_g, as in the official file.
        self.pos_conv = nn.ModuleList(
            [WeightNormConv1d(cfg.encoder_embed_dim, cfg.conv_pos, cfg.conv_pos_groups)]
        )
        self.layer_norm = nn.LayerNorm(cfg.encoder_embed_dim)
        table = None
        if cfg.relative_position_embedding:
            table = nn.Embedding(cfg.num_buckets, cfg.encoder_attention_heads)
        self.layers = nn.ModuleList(EncoderLayer(cfg, table) for _ in range(cfg.encoder_layers))

    def position_bias(self, n: int) -> Tensor | None:
        """The ungated relative position bias (H, N, N), or None when the cfg has none."""
        if not self.cfg.relative_position_embedding:
            return None
        table = self.layers[0].self_attn.relative_attention_bias
        buckets = relative_position_buckets(n, self.cfg.num_buckets, self.cfg.max_distance)
        return table(buckets.to(table.weight.device)).permute(2, 0, 1)  # (H, N, N)

    def positional(self, x: Tensor) -> Tensor:
        """Convolutional positional embedding: (B, N, D) -> (B, N, D), to add to x."""
        n = x.shape[1]
        # An even kernel with padding K//2 yields one step too many at the end; drop it.
        y = self.pos_conv[0](x.transpose(1, 2))[:, :, :n]  # (B, D, N)
        return F.gelu(y).transpose(1, 2)  # (B, N, D)

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.layer_norm(x + self.positional(x))
        n = x.shape[1]
        bias = self.position_bias(n)
        outputs = []
        for index, layer in enumerate(self.layers, start=1):
            x = layer(x, bias)
            if index in OUTPUT_LAYERS:
                outputs.append(x)
            if index == max(OUTPUT_LAYERS):
                break  # later layers cannot change the outputs we return
        return outputs


class BEATs(nn.Module):
    """BEATs encoder returning AudioToken's features.

    forward: normalised fbank (B, T, F) -> hidden states after layers 4, 8 and 12, concatenated:
    (B, N, 3·D), with N = (T // p) · (F // p) patches in time-major order (p = input_patch_size).
    Frames beyond the last whole patch are ignored, as in the official model.
    """

    def __init__(self, cfg: BEATsConfig) -> None:
        super().__init__()
        self.cfg = cfg
        p = cfg.input_patch_size
        self.patch_embedding = nn.Conv2d(1, cfg.embed_dim, kernel_size=p, stride=p,
                                         bias=cfg.conv_bias)
        self.layer_norm = nn.LayerNorm(cfg.embed_dim)
        self.post_extract_proj = (
            nn.Linear(cfg.embed_dim, cfg.encoder_embed_dim)
            if cfg.embed_dim != cfg.encoder_embed_dim
            else None
        )
        self.encoder = Encoder(cfg)

    def patches(self, fbank: Tensor) -> Tensor:
        """(B, T, F) -> patch embeddings (B, N, D) before the transformer."""
        x = self.patch_embedding(fbank.unsqueeze(1))  # (B, E, T/p, F/p)
        x = x.flatten(2).transpose(1, 2)  # (B, N, E), time-major
        x = self.layer_norm(x)
        if self.post_extract_proj is not None:
            x = self.post_extract_proj(x)  # (B, N, D)
        return x

    def forward(self, fbank: Tensor) -> Tensor:
        """fbank (B, T, F), normalised as BEATs expects -> (B, N, 3·D).

        The input is moved to the model's device and dtype. A batch holds windows of one length;
        stack them before calling.
        """
        p = self.cfg.input_patch_size
        if fbank.ndim != 3 or fbank.shape[1] < p or fbank.shape[2] < p:
            raise ValueError(f"BEATs expects fbank (B, T, F) with T, F >= {p}, "
                             f"got {tuple(fbank.shape)}")
        weight = self.patch_embedding.weight
        x = self.patches(fbank.to(device=weight.device, dtype=weight.dtype))
        return torch.cat(self.encoder(x), dim=-1)  # (B, N, 3·D)


def load_beats(path: str | Path, device: str | torch.device = "cpu",
               dtype: torch.dtype = torch.float32) -> BEATs:
    """Load an official BEATs checkpoint `{'cfg': dict, 'model': state_dict}`.

    Every weight must be present and used (`predictor.*` of fine-tuned checkpoints is ignored).
    Returns the model in eval mode, without gradients, on `device` in `dtype`.
    Raises ModelError, naming the file, when the file is missing or unusable.
    """
    path = Path(path)
    if not path.exists():
        raise ModelError(f"{path}: no such file")
    if not path.is_file():
        raise ModelError(f"{path}: not a file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for foreign or truncated files
        raise ModelError(f"{path}: not a readable PyTorch checkpoint ({_load_failure(error)})") \
            from error
    if not (isinstance(checkpoint, dict) and isinstance(checkpoint.get("cfg"), dict)
            and isinstance(checkpoint.get("model"), dict)):
        raise ModelError(f"{path}: not a BEATs checkpoint (expected a dict with 'cfg' and 'model')")
    return load_beats_state(checkpoint["cfg"], checkpoint["model"], source=str(path),
                            device=device, dtype=dtype)


def _load_failure(error: Exception) -> str:
    """A short reason for a failed torch.load; torch's own messages run to many lines."""
    match = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(error))
    if match:
        return (f"it holds a Python object, {match.group(1)}, that safe loading refuses; "
                f"BEATs checkpoints hold only tensors and plain values")
    return "corrupt, truncated or not a PyTorch file"


def load_beats_state(cfg: Mapping[str, object], state: Mapping[str, Tensor], *,
                     source: str = "BEATs weights", device: str | torch.device = "cpu",
                     dtype: torch.dtype = torch.float32) -> BEATs:
    """Build a BEATs from a cfg dict and an official-format state dict, strictly.

    `source` starts every error message (the file the parts came from). Same result as
    `load_beats`; for callers that keep the weights in another container. Where no copy is
    needed for `device` and `dtype`, the model's parameters share memory with `state`.
    """
    try:
        config = BEATsConfig.from_dict(cfg)
    except ValueError as error:
        raise ModelError(f"{source}: {error}") from None
    with torch.device("meta"):
        model = BEATs(config)  # shapes only; the real tensors come from `state`
    weights = {k: v for k, v in state.items()
               if not (isinstance(k, str) and k.startswith(_IGNORED_PREFIXES))}
    _check_state(weights, model.state_dict(), source)
    model.load_state_dict(weights, strict=True, assign=True)
    model.to(device=device, dtype=dtype)
    model.eval()
    model.requires_grad_(False)
    return model


def _check_state(state: Mapping[str, object], expected: Mapping[str, Tensor], source: str) -> None:
    """Raise ModelError unless `state` has exactly the expected keys, shapes and float tensors."""
    missing = expected.keys() - state.keys()
    if missing:
        raise ModelError(f"{source}: missing {len(missing)} BEATs weights: {_some(missing)}")
    unexpected = state.keys() - expected.keys()
    if unexpected:
        raise ModelError(f"{source}: {len(unexpected)} unexpected weights: {_some(unexpected)}")
    for key, want in expected.items():
        value = state[key]
        if not isinstance(value, Tensor) or not value.is_floating_point():
            raise ModelError(f"{source}: {key} is not a floating-point tensor")
        if value.shape != want.shape:
            raise ModelError(f"{source}: {key} has shape {list(value.shape)}, "
                             f"the cfg implies {list(want.shape)}")
    tables = [k for k in expected if k.endswith("self_attn.relative_attention_bias.weight")]
    # The official model shares one table between all layers; differing copies mean a broken file.
    for key in tables[1:]:
        if not torch.equal(state[key], state[tables[0]]):
            raise ModelError(f"{source}: {key} differs from {tables[0]}; BEATs shares one "
                             f"relative position table across layers")
