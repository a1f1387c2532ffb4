"""The hidden work folder that lets an interrupted ``video`` resume where it stopped.

``.<name>.work/`` sits beside the output and holds what is finished: each keyframe's token
(safetensors) and image (PNG, lossless), and each keyframe interval's rendered in-between frames
(one compressed ``.npz`` per interval). Every file is written atomically, so an interrupt leaves
only whole files. ``settings.json`` records the hash of everything that decides the pixels; a run
with other settings (or another version of the audio) clears the folder and starts afresh. The
folder is removed once the video is complete.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import torch

from audiotoken_cli.files import write_atomically


def settings_hash(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


class WorkFolder:
    def __init__(self, folder: Path, settings: dict):
        self.folder = Path(folder)
        self.digest = settings_hash(settings)
        marker = self.folder / "settings.json"
        if self.folder.exists():
            try:
                same = json.loads(marker.read_text())["hash"] == self.digest
            except (OSError, ValueError, KeyError):
                same = False
            if not same:
                shutil.rmtree(self.folder)
        if not self.folder.exists():
            self.folder.mkdir(parents=True)
            write_atomically(marker, lambda tmp: tmp.write_text(
                json.dumps({"hash": self.digest, "settings": settings}, indent=1, default=str)))

    # -- keyframes ----------------------------------------------------------------------------

    def _token_path(self, index: int) -> Path:
        return self.folder / f"token_{index:06d}.safetensors"

    def _image_path(self, index: int) -> Path:
        return self.folder / f"keyframe_{index:06d}.png"

    def token(self, index: int) -> torch.Tensor | None:
        from safetensors.torch import load_file

        path = self._token_path(index)
        return load_file(str(path))["token"] if path.exists() else None

    def save_token(self, index: int, token: torch.Tensor) -> None:
        from safetensors.torch import save_file

        tensor = token.detach().float().cpu().contiguous()
        write_atomically(self._token_path(index), lambda tmp: save_file({"token": tensor}, str(tmp)))

    def has_image(self, index: int) -> bool:
        return self._image_path(index).exists()

    def image(self, index: int) -> np.ndarray:
        """Keyframe ``index`` as (H, W, 3) uint8."""
        from PIL import Image

        with Image.open(self._image_path(index)) as image:
            return np.asarray(image.convert("RGB"))

    def save_image(self, index: int, image: np.ndarray) -> None:
        from PIL import Image

        picture = Image.fromarray(image)
        write_atomically(self._image_path(index), lambda tmp: picture.save(tmp, format="PNG"))

    # -- in-between frames --------------------------------------------------------------------

    def _chunk_path(self, key: int) -> Path:
        return self.folder / f"frames_{key:06d}.npz"

    def chunk(self, key: int) -> np.ndarray | None:
        """The rendered frames of interval ``key``, (n, H, W, 3) uint8, or None."""
        path = self._chunk_path(key)
        if not path.exists():
            return None
        with np.load(path) as stored:
            return stored["frames"]

    def save_chunk(self, key: int, frames: np.ndarray) -> None:
        def write(tmp: Path) -> None:
            with open(tmp, "wb") as handle:
                np.savez_compressed(handle, frames=frames)

        write_atomically(self._chunk_path(key), write)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
