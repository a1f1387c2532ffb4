"""The FID Inception: InceptionV3 as TensorFlow's FID code ran it, loading pytorch-fid's weights,
and the two ways of bringing a picture to its 299×299 input (``--fid-protocol``).

Written here because the maintained copies (torchvision's InceptionV3, pytorch-fid,
torch-fidelity, clean-fid) all need torchvision, which fails to import beside the CPU torch wheel.
The network follows torch-fidelity's ``FeatureExtractorInceptionV3`` (the one torchmetrics runs):
average pools that exclude padding, a max pool in the last block; it loads
``pt_inception-2015-12-05-6726825d.pth`` by its own key names. Its output is the 2048-d pool3
feature. tests/test_eval_reference.py proves both protocols against the libraries themselves.

- ``torchmetrics``: what ``torchmetrics.image.fid.FrechetInceptionDistance(feature=2048)`` does by
  default (torchmetrics 1.9, ``antialias=True``): the uint8 values as floats, bilinear resize with
  antialiasing to 299×299, then ``(x − 128) / 128``.
- ``clean``: clean-fid's ``mode="clean"`` (``make_resizer("PIL", False, "bicubic", (299, 299))``):
  each channel resized on its own as a 32-bit float PIL image, bicubic, clipped to [0, 255], then
  ``(x − 128) / 128`` inside its Inception wrapper. MACS computes its FID and KID this way.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from audiotoken_cli.errors import ModelError

INCEPTION_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                 "pt_inception-2015-12-05-6726825d.pth")
INPUT_SIZE = 299
FID_PROTOCOLS = ("clean", "torchmetrics")
DEFAULT_FID_PROTOCOL = "torchmetrics"  # the library we depend on; MACS' clean-fid figures: "clean"


class Conv(nn.Module):
    """Convolution without bias, batch norm (TensorFlow's epsilon), ReLU."""

    def __init__(self, cin: int, cout: int, kernel, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


def _avg(x):
    # The FID graph averages over the window's real pixels only (count_include_pad=False).
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class BlockA(nn.Module):
    def __init__(self, cin: int, pool_features: int):
        super().__init__()
        self.branch1x1 = Conv(cin, 64, 1)
        self.branch5x5_1 = Conv(cin, 48, 1)
        self.branch5x5_2 = Conv(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = Conv(cin, 64, 1)
        self.branch3x3dbl_2 = Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = Conv(96, 96, 3, padding=1)
        self.branch_pool = Conv(cin, pool_features, 1)

    def forward(self, x):
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(_avg(x)),
        ], 1)


class BlockB(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3 = Conv(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = Conv(cin, 64, 1)
        self.branch3x3dbl_2 = Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = Conv(96, 96, 3, stride=2)

    def forward(self, x):
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, 3, stride=2),
        ], 1)


class BlockC(nn.Module):
    def __init__(self, cin: int, c7: int):
        super().__init__()
        self.branch1x1 = Conv(cin, 192, 1)
        self.branch7x7_1 = Conv(cin, c7, 1)
        self.branch7x7_2 = Conv(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = Conv(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = Conv(cin, c7, 1)
        self.branch7x7dbl_2 = Conv(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = Conv(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = Conv(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = Conv(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = Conv(cin, 192, 1)

    def forward(self, x):
        seven = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        double = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                      self.branch7x7dbl_5):
            double = layer(double)
        return torch.cat([self.branch1x1(x), seven, double, self.branch_pool(_avg(x))], 1)


class BlockD(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3_1 = Conv(cin, 192, 1)
        self.branch3x3_2 = Conv(192, 320, 3, stride=2)
        self.branch7x7x3_1 = Conv(cin, 192, 1)
        self.branch7x7x3_2 = Conv(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = Conv(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = Conv(192, 192, 3, stride=2)

    def forward(self, x):
        seven = x
        for layer in (self.branch7x7x3_1, self.branch7x7x3_2, self.branch7x7x3_3,
                      self.branch7x7x3_4):
            seven = layer(seven)
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), seven,
                          F.max_pool2d(x, 3, stride=2)], 1)


class BlockE(nn.Module):
    def __init__(self, cin: int, max_pool: bool):
        super().__init__()
        self.max_pool = max_pool  # the FID graph's last block (Mixed_7c) max-pools
        self.branch1x1 = Conv(cin, 320, 1)
        self.branch3x3_1 = Conv(cin, 384, 1)
        self.branch3x3_2a = Conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = Conv(cin, 448, 1)
        self.branch3x3dbl_2 = Conv(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = Conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = Conv(cin, 192, 1)

    def forward(self, x):
        three = self.branch3x3_1(x)
        three = torch.cat([self.branch3x3_2a(three), self.branch3x3_2b(three)], 1)
        double = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        double = torch.cat([self.branch3x3dbl_3a(double), self.branch3x3dbl_3b(double)], 1)
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _avg(x)
        return torch.cat([self.branch1x1(x), three, double, self.branch_pool(pooled)], 1)


class FIDInception(nn.Module):
    """(N, 3, 299, 299) pictures prepared by ``prepare`` in, (N, 2048) pool3 features out."""

    num_features = 2048

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = Conv(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = Conv(32, 32, 3)
        self.Conv2d_2b_3x3 = Conv(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = Conv(64, 80, 1)
        self.Conv2d_4a_3x3 = Conv(80, 192, 3)
        self.Mixed_5b = BlockA(192, 32)
        self.Mixed_5c = BlockA(256, 64)
        self.Mixed_5d = BlockA(288, 64)
        self.Mixed_6a = BlockB(288)
        self.Mixed_6b = BlockC(768, 128)
        self.Mixed_6c = BlockC(768, 160)
        self.Mixed_6d = BlockC(768, 160)
        self.Mixed_6e = BlockC(768, 192)
        self.Mixed_7a = BlockD(768)
        self.Mixed_7b = BlockE(1280, max_pool=False)
        self.Mixed_7c = BlockE(2048, max_pool=True)
        self.fc = nn.Linear(2048, 1008)  # in the weights file; FID does not use the logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3"):
            x = getattr(self, name)(x)
        x = F.max_pool2d(x, 3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, stride=2)
        for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c",
                     "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"):
            x = getattr(self, name)(x)
        return F.adaptive_avg_pool2d(x, 1).flatten(1)


def prepare(picture, protocol: str) -> torch.Tensor:
    """An RGB PIL picture of any size → the Inception's (3, 299, 299) input, by ``protocol``."""
    import numpy as np

    pixels = np.asarray(picture.convert("RGB"), dtype=np.uint8)  # (H, W, 3)
    if protocol == "clean":
        resized = torch.from_numpy(_clean_resize(pixels)).permute(2, 0, 1)
    elif protocol == "torchmetrics":
        values = torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].float()
        resized = F.interpolate(values, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear",
                                align_corners=False, antialias=True)[0]
    else:
        raise ValueError(f"unknown FID protocol {protocol!r} (choose from {FID_PROTOCOLS})")
    # Both libraries normalise in this order: subtract 128, then divide by 128.
    return (resized - 128) / 128


def _clean_resize(pixels):
    """clean-fid's resize, by hand because its package needs torchvision: each channel a 32-bit
    float PIL image, bicubic to 299×299, clipped to [0, 255]. (H, W, 3) uint8 → (299, 299, 3)."""
    import numpy as np
    from PIL import Image

    channels = []
    for index in range(3):
        channel = Image.fromarray(pixels[:, :, index].astype(np.float32))  # mode "F"
        channel = channel.resize((INPUT_SIZE, INPUT_SIZE), resample=Image.Resampling.BICUBIC)
        channels.append(np.asarray(channel).clip(0, 255))
    return np.stack(channels, axis=2).astype(np.float32)


def load_inception(path: Path) -> FIDInception:
    """The FID Inception with the weights of pytorch-fid's file (a plain state dict)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise ModelError(f"{path}: not a pytorch-fid Inception weights file ({error})") from error
    if not isinstance(state, dict):
        raise ModelError(f"{path}: not a pytorch-fid Inception weights file (no state dict)")
    model = FIDInception()
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        first = str(error).splitlines()[1:2] or [str(error)]
        raise ModelError(f"{path}: not the FID Inception's layout ({first[0].strip()})") from error
    return model.eval()
