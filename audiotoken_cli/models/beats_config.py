"""The BEATs checkpoint's ``cfg``: parsed, type-checked and validated; it sets every size."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# 1-based layers whose outputs AudioToken concatenates (the reference keeps indices 3, 7, 11).
OUTPUT_LAYERS = (4, 8, 12)


def _some(names: Iterable[str], limit: int = 3) -> str:
    """'a, b, c and 4 more': a few names for a one-line message."""
    names = sorted(map(str, names))
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


@dataclass(frozen=True)
class BEATsConfig:
    """The sizes and switches of a BEATs model, as stored in a checkpoint's `cfg` dict.

    Field names are the official ones. Training-only settings (dropouts, layer drop, gradient
    decay, predictor) are not kept.
    """

    input_patch_size: int  # side of the square fbank patches (16)
    embed_dim: int  # channels of the patch embedding (512)
    conv_bias: bool  # whether the patch embedding conv has a bias
    encoder_layers: int  # transformer layers (12)
    encoder_embed_dim: int  # transformer width D (768)
    encoder_ffn_embed_dim: int  # feed-forward hidden width (3072)
    encoder_attention_heads: int  # attention heads (12)
    conv_pos: int  # kernel size of the convolutional positional embedding (128)
    conv_pos_groups: int  # groups of that convolution (16)
    deep_norm: bool  # scale residuals by (2·layers)^¼ before each post-LN
    relative_position_embedding: bool  # add a bucketed relative position bias to attention
    num_buckets: int  # buckets of that bias (320)
    max_distance: int  # distance beyond which buckets saturate (800)
    gru_rel_pos: bool  # gate the bias per query (grep_linear, grep_a)
    activation_fn: str  # only "gelu" is supported
    layer_norm_first: bool  # only False (post-LN) is supported

    def __post_init__(self) -> None:
        _check_config(self)

    @classmethod
    def from_dict(cls, cfg: Mapping[str, object]) -> BEATsConfig:
        """Build from a checkpoint's `cfg` dict, ignoring keys we do not need.

        Raises ValueError naming missing keys, wrongly typed values or unsupported settings.
        """
        fields = dataclasses.fields(cls)
        missing = [f.name for f in fields if f.name not in cfg]
        if missing:
            raise ValueError(f"BEATs cfg lacks {_some(missing)}")
        values = {f.name: cfg[f.name] for f in fields}
        for f in fields:
            _check_type(f.name, values[f.name], f.type)
        return cls(**values)

    def to_dict(self) -> dict[str, object]:
        """The fields as a plain dict, in the official key names."""
        return dataclasses.asdict(self)

    @property
    def head_dim(self) -> int:
        return self.encoder_embed_dim // self.encoder_attention_heads

    @property
    def output_dim(self) -> int:
        """Width of `BEATs.forward`'s output: one D per entry of OUTPUT_LAYERS."""
        return len(OUTPUT_LAYERS) * self.encoder_embed_dim


def _check_type(name: str, value: object, type_name: str) -> None:
    # Annotations are strings under `from __future__ import annotations`.
    if type_name == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif type_name == "bool":
        ok = isinstance(value, bool)
    else:
        ok = isinstance(value, str)
    if not ok:
        raise ValueError(f"BEATs cfg {name} should be {type_name}, got {value!r}")


def _check_config(cfg: BEATsConfig) -> None:
    sizes = ("input_patch_size", "embed_dim", "encoder_layers", "encoder_embed_dim",
             "encoder_ffn_embed_dim", "encoder_attention_heads", "conv_pos", "conv_pos_groups",
             "num_buckets", "max_distance")
    for name in sizes:
        if getattr(cfg, name) <= 0:
            raise ValueError(f"BEATs cfg {name} must be positive, got {getattr(cfg, name)}")
    if cfg.activation_fn != "gelu":
        raise ValueError(f"BEATs cfg activation_fn {cfg.activation_fn!r} is not supported (gelu)")
    if cfg.layer_norm_first:
        raise ValueError("BEATs cfg layer_norm_first=True (pre-LN) is not supported")
    if cfg.encoder_layers < max(OUTPUT_LAYERS):
        raise ValueError(f"BEATs cfg encoder_layers is {cfg.encoder_layers}; "
                         f"AudioToken needs at least {max(OUTPUT_LAYERS)}")
    if cfg.encoder_embed_dim % cfg.encoder_attention_heads:
        raise ValueError(f"BEATs cfg encoder_embed_dim {cfg.encoder_embed_dim} is not divisible "
                         f"by encoder_attention_heads {cfg.encoder_attention_heads}")
    if cfg.encoder_embed_dim % cfg.conv_pos_groups:
        raise ValueError(f"BEATs cfg encoder_embed_dim {cfg.encoder_embed_dim} is not divisible "
                         f"by conv_pos_groups {cfg.conv_pos_groups}")
    # The log-spaced buckets start at num_buckets // 4; max_distance must lie beyond that.
    if cfg.relative_position_embedding and not 0 < cfg.num_buckets // 4 < cfg.max_distance:
        raise ValueError(f"BEATs cfg needs 4 <= num_buckets and num_buckets // 4 < max_distance, "
                         f"got {cfg.num_buckets} and {cfg.max_distance}")
