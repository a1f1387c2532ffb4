"""Wav2CLIP's audio encoder (Wu et al., ICASSP 2022), loading its released checkpoint.

Written here because the ``wav2clip`` package needs torchaudio and librosa (torchaudio must stay
out of this project, and its wheels pin another torch). The module follows the package's
``ResNetExtractor(transform=True)``: a power spectrogram (n_fft 512, hop 353, Hann window,
centred, reflect padding), log(x + 1e-7), standardised by its own mean and std, a ResNet-18 with
one input channel, global average pooling, then a two-layer MLP (Linear, ReLU, Linear) into
CLIP's 512-d space. Keys match the released file: ``audio_encoder.*`` and
``audio_transform.sequential.{0,3}.*``, at the top level (the file the package downloads) or under
a Lightning ``state_dict``. Widths are read from the weights, so a small checkpoint in the same
format loads too. tests/test_eval_reference.py proves the embeddings equal to the package's own.

The package standardises over the whole batch it is given; we embed one sound at a time, as its
``embed_audio`` does for a single clip, so a sound's embedding never depends on its neighbours.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from audiotoken_cli.errors import ModelError

# The URL the wav2clip package (0.1.0) downloads its weights from.
WAV2CLIP_URL = ("https://github.com/descriptinc/lyrebird-wav2clip/releases/download/v0.1.0-alpha/"
                "Wav2CLIP.pt")
SAMPLE_RATE = 16_000
N_FFT, HOP = 512, 353


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class AudioResNet(nn.Module):
    """ResNet-18 on a log power spectrogram, without a classifier (as the package's)."""

    def __init__(self, width: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        widths = [width, width * 2, width * 4, width * 8]
        cin = width
        for index, cout in enumerate(widths, start=1):
            stride = 1 if index == 1 else 2
            setattr(self, f"layer{index}", nn.Sequential(BasicBlock(cin, cout, stride),
                                                         BasicBlock(cout, cout, 1)))
            cin = cout
        self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)

    def spectrogram(self, waves: torch.Tensor) -> torch.Tensor:
        """(N, samples) → standardised log power spectrogram (N, 1, 257, frames)."""
        spec = torch.stft(waves, N_FFT, HOP, window=self.window, center=True,
                          pad_mode="reflect", return_complex=True).abs().pow(2)
        spec = torch.log(spec + 1e-7)
        return ((spec - spec.mean()) / (spec.std() + 1e-9)).unsqueeze(1)

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(self.spectrogram(waves))))
        x = F.max_pool2d(x, 3, stride=2, padding=1)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return F.adaptive_avg_pool2d(x, 1).flatten(1)


class Wav2CLIP(nn.Module):
    """16 kHz mono waves (N, samples) → (N, 512) embeddings in CLIP ViT-B/32's space."""

    def __init__(self, width: int = 64, hidden: int = 512, out: int = 512):
        super().__init__()
        self.audio_encoder = AudioResNet(width)
        self.audio_transform = nn.Module()
        self.audio_transform.sequential = nn.Sequential(
            nn.Linear(width * 8, hidden), nn.ReLU(), nn.Dropout(0.1), nn.Linear(hidden, out))

    @torch.no_grad()
    def embed(self, wave: torch.Tensor) -> torch.Tensor:
        """One sound (samples,) → (out,); standardised on its own (see the module docstring)."""
        return self.audio_transform.sequential(self.audio_encoder(wave[None]))[0]


def load_wav2clip(path: Path) -> Wav2CLIP:
    """Wav2CLIP from either layout, read without running pickled code: the released
    ``Wav2CLIP.pt`` as the ``wav2clip`` package (0.1.0) reads it (``audio_encoder.*`` and
    ``audio_transform.*`` at the top level), or a Lightning training checkpoint (the same keys
    under ``state_dict``)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - an unreadable file is the user's to fix
        raise ModelError(f"{path}: not a Wav2CLIP checkpoint ({error})") from error
    state = _weights(checkpoint)
    if state is None:
        raise ModelError(f"{path}: not a Wav2CLIP checkpoint (no audio_encoder weights at the "
                         "top level or under state_dict)")
    wanted = {k: v for k, v in state.items()
              if k.startswith(("audio_encoder.", "audio_transform."))
              and k != "audio_encoder.spectrogram.window"  # the Hann window: rebuilt, not loaded
              and not k.startswith("audio_encoder.fc.")}  # a classifier the embedding never uses
    try:
        first = wanted["audio_transform.sequential.0.weight"]
        last = wanted["audio_transform.sequential.3.weight"]
        model = Wav2CLIP(width=wanted["audio_encoder.conv1.weight"].shape[0],
                         hidden=first.shape[0], out=last.shape[0])
        model.load_state_dict(wanted, strict=True)
    except (KeyError, RuntimeError) as error:
        raise ModelError(f"{path}: not Wav2CLIP's layout ({str(error).splitlines()[0]})") from error
    return model.eval()


def _weights(checkpoint) -> dict | None:
    """The dict that holds ``audio_encoder.*``: the checkpoint itself, or its ``state_dict``."""
    if not isinstance(checkpoint, dict):
        return None
    for candidate in (checkpoint, checkpoint.get("state_dict")):
        if isinstance(candidate, dict) and "audio_encoder.conv1.weight" in candidate:
            return candidate
    return None
