"""Presets and component specs: what the user typed, parsed; which weights a preset names."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from audiotoken_cli.errors import AudioTokenError, ModelError, UsageError

DEFAULT_PRESET = "vggsound"
ROLES = ("sd", "audio_encoder", "embedder", "lora", "lcm_lora", "taesd")
ROLE_OPTIONS = {"sd": "--sd", "audio_encoder": "--audio-encoder", "embedder": "--embedder",
                "lora": "--lora", "lcm_lora": "--lcm-lora", "taesd": "--taesd",
                "clip_b32": "--clip-b32", "clip_l14": "--clip-l14", "wav2clip": "--wav2clip",
                "inception": "--inception"}
FAST_ROLES = ("lcm_lora", "taesd")
"""Optional: fetched only for ``generate --fast`` (or ``download --fast``)."""
EVAL_ROLES = ("clip_b32", "clip_l14", "wav2clip", "inception")
EVAL_COMPONENTS = {
    "clip_b32": "openai/clip-vit-base-patch32",
    "clip_l14": "openai/clip-vit-large-patch14",
    "wav2clip": ("https://github.com/descriptinc/lyrebird-wav2clip/releases/download/"
                 "v0.1.0-alpha/Wav2CLIP.pt"),
    "inception": ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                  "pt_inception-2015-12-05-6726825d.pth"),
}
"""The models `audiotoken eval` scores with (docs/eval.md); `--clip-b32` etc. override them.
No sha256 is listed: none is published for these files, and we do not invent one; eval.json
records the hash of the file actually used."""
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")
FILE_SUFFIXES = WEIGHT_SUFFIXES + (".json", ".txt", ".toml", ".npz")
_HUB_ID = re.compile(
    r"^(?P<space>spaces/)?(?P<owner>[A-Za-z0-9][\w.-]*)/(?P<name>[\w.-]+)"
    r"(?:@(?P<revision>[\w./-]+?))?(?:/(?P<path>.+))?$"
)


class NetworkError(AudioTokenError):
    """A download could not reach its server."""


class ChecksumError(ModelError):
    """A downloaded file is not the file its preset or spec names."""


# ---------------------------------------------------------------------------------------------
# Component specs


@dataclass(frozen=True)
class Spec:
    """Where a component comes from, parsed from what the user typed."""

    text: str
    kind: str  # "local" | "url" | "hub"
    repo_id: str = ""
    repo_type: str = "model"
    revision: str | None = None
    path: str = ""  # a file or folder inside the repository; "" for the whole repository

    @property
    def is_file(self) -> bool:
        return self.kind == "url" or Path(self.path).suffix in FILE_SUFFIXES

    def describe(self) -> str:
        if self.kind != "hub":
            return self.text
        where = ("Space " if self.repo_type == "space" else "") + self.repo_id
        revision = f"@{self.revision}" if self.revision else ""
        return f"{where}{revision}" + (f", file {self.path}" if self.path else "")


def parse_spec(text: str) -> Spec:
    """Local path, URL or hub id; see the module docstring for the syntax."""
    text = text.strip()
    if text.startswith(("https://", "http://")):
        return Spec(text, "url")
    expanded = Path(text).expanduser()
    looks_local = text.startswith(("/", "./", "../", "~", ".\\")) or re.match(r"^[A-Za-z]:[\\/]", text)
    if expanded.exists() or looks_local:
        return Spec(str(expanded), "local")
    match = _HUB_ID.match(text)
    if match is None:
        raise UsageError(f"{text!r} is not an existing file, an https:// URL or a hub id "
                         "(owner/name[@revision][/path], spaces/owner/name/... for a Space)")
    return Spec(text, "hub", repo_id=f"{match['owner']}/{match['name']}",
                repo_type="space" if match["space"] else "model",
                revision=match["revision"], path=(match["path"] or "").strip("/"))


# ---------------------------------------------------------------------------------------------
# Presets


@dataclass(frozen=True)
class Preset:
    """A named bundle of the components; ``sha256`` maps a role to its file's known hash."""

    name: str
    sd: str
    audio_encoder: str
    embedder: str
    lora: str | None = None
    lcm_lora: str | None = None
    taesd: str | None = None
    description: str = ""
    sha256: dict[str, str] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    source: str = "built in"

    def component(self, role: str) -> str | None:
        return getattr(self, role)


PAPER_SPACE = "spaces/GuyYariv/AudioToken"
OPTIONAL_ROLES = FAST_ROLES

BUILTIN_PRESETS = {
    "vggsound": Preset(
        name="vggsound",
        description="AudioToken trained on VGGSound (the paper's published weights), SD 1.4",
        sd="CompVis/stable-diffusion-v1-4",
        audio_encoder=f"{PAPER_SPACE}/models/BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt",
        embedder=f"{PAPER_SPACE}/models/embedder_learned_embeds.bin",
        lcm_lora="latent-consistency/lcm-lora-sdv1-5/pytorch_lora_weights.safetensors",
        taesd="madebyollin/taesd",
        sha256={"audio_encoder":
                "e5815275a04b6885e7b8af63d120b29bffae2cd2225cf4915e1ec6d819d3022c"},
        # The BEATs file is exact; the others are estimates from the parameter counts, shown
        # with "~" until cached: SD 1.4 in float32 safetensors (UNet 3.44 GB, safety checker
        # 1.22 GB, text encoder 0.49 GB, VAE 0.33 GB; about half where fp16 files exist), the
        # embedder's 8.85 M float32 parameters; --fast's LCM-LoRA (67 M float16 parameters) and
        # TAESD (2.4 M float32 parameters, the diffusers folder).
        sizes={"audio_encoder": 363_145_291, "sd": 5_480_000_000, "embedder": 35_414_028,
               "lcm_lora": 134_600_000, "taesd": 9_800_000},
    ),
    "sdxl": Preset(
        name="sdxl",
        description="Stable Diffusion XL base 1.0; no published embedder: needs --embedder "
                    "from `audiotoken train --model sdxl`",
        sd="stabilityai/stable-diffusion-xl-base-1.0",
        audio_encoder=f"{PAPER_SPACE}/models/BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt",
        embedder="",  # none is published; resolve_components says so in one line
        lcm_lora="latent-consistency/lcm-lora-sdxl/pytorch_lora_weights.safetensors",
        taesd="madebyollin/taesdxl",
        sha256={"audio_encoder":
                "e5815275a04b6885e7b8af63d120b29bffae2cd2225cf4915e1ec6d819d3022c"},
        # Estimates from the parameter counts in float16 (the repository offers fp16 files for
        # every part, which download prefers): UNet 2.57 G parameters (5.14 GB), text_encoder
        # 123 M (0.25 GB), text_encoder_2 695 M (1.39 GB), two VAE folders (vae, vae_1_0) of
        # 84 M each (0.33 GB); the LCM-LoRA's 197 M float16 parameters; TAESDXL as TAESD.
        sizes={"audio_encoder": 363_145_291, "sd": 7_110_000_000, "lcm_lora": 393_900_000,
               "taesd": 9_800_000},
    ),
}


def download_advice(role: str) -> str:
    """What a user without the file can do. Not "run `audiotoken download`": that is what fails
    when the network is the problem, including inside `download` itself."""
    if role in EVAL_ROLES:
        return (f"connect to the network (and unset HF_HUB_OFFLINE), set HF_ENDPOINT to a mirror "
                f"of the hub, or copy the file onto this machine and pass {ROLE_OPTIONS[role]} PATH")
    sizes = BUILTIN_PRESETS[DEFAULT_PRESET].sizes
    total = sum(size for role_, size in sizes.items() if role_ not in OPTIONAL_ROLES)
    return (f"connect to the network (and unset HF_HUB_OFFLINE), set HF_ENDPOINT to a mirror of "
            f"the hub, or copy the files onto this machine and pass {ROLE_OPTIONS[role]} PATH "
            f"(the default preset is about {total / 1e9:.1f} GB; `audiotoken download --list` "
            "shows each part)")


def user_presets_file() -> Path:
    from platformdirs import user_config_dir

    return Path(user_config_dir("audiotoken")) / "presets.toml"


def load_presets() -> dict[str, Preset]:
    """The built-in presets plus the user's ``presets.toml`` (which may override them)."""
    presets = dict(BUILTIN_PRESETS)
    path = user_presets_file()
    if not path.is_file():
        return presets
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UsageError(f"{path}: not valid TOML ({error})") from error
    for name, table in data.items():
        presets[name] = _preset_from_table(path, name, table)
    return presets


def _preset_from_table(path: Path, name: str, table: object) -> Preset:
    if not isinstance(table, dict):
        raise UsageError(f"{path}: [{name}] must be a table of components")
    missing = [key for key in ("sd", "audio_encoder", "embedder") if not table.get(key)]
    if missing:
        raise UsageError(f"{path}: preset [{name}] needs {', '.join(missing)}")
    hashes = {role: str(table[f"{role}_sha256"]).lower() for role in ROLES
              if table.get(f"{role}_sha256")}
    return Preset(name=name, sd=str(table["sd"]), audio_encoder=str(table["audio_encoder"]),
                  embedder=str(table["embedder"]), lora=table.get("lora"),
                  lcm_lora=table.get("lcm_lora"), taesd=table.get("taesd"),
                  description=str(table.get("description", "")), sha256=hashes,
                  source=str(path))


def missing_embedder(preset: Preset) -> UsageError:
    """A preset that names no embedder (``sdxl``: none is published) used where one is needed."""
    return UsageError(f"model preset {preset.name!r} has no embedder: none is published for "
                      f"{preset.sd}; pass --embedder RUN with one trained for it "
                      f"(`audiotoken train DATA -o RUN --model {preset.name}`)")


def get_preset(name: str) -> Preset:
    presets = load_presets()
    if name not in presets:
        raise UsageError(f"unknown model preset {name!r}; choose one of {', '.join(presets)} "
                         f"(add your own in {user_presets_file()})")
    return presets[name]



@dataclass(frozen=True)
class FetchOptions:
    offline: bool = False
    quiet: bool = False
    notice: Callable[[str], None] = lambda message: None
