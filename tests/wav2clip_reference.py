"""Run in a child process by tests/test_eval_reference.py: the `wav2clip` package (0.1.0), with its
own classes and loader, makes a random checkpoint in the layout its loader reads, loads it back
through ``wav2clip.get_model()`` and embeds each sound with ``wav2clip.embed_audio``.

    python tests/wav2clip_reference.py TORCH_HOME OUT.npz SOUND.wav...

The package needs torchaudio, whose wheels load only beside their own torch build. The child gets
torchaudio's Python code (a ``--target`` install, on PYTHONPATH) without its compiled extension:
``torchaudio.transforms.Spectrogram``, which the package runs, is plain torch (``torch.stft``);
the compiled ops (forced alignment, filters) are never called, so the extension's module is
replaced by a stand-in that says it is absent. librosa is imported by the package only for framed
embeddings (``frame_length``/``hop_length``), which this run does not use: a stand-in too.
This runs in its own process so that no other test sees that torchaudio.
"""

from __future__ import annotations

import importlib.util
import sys
import types
import wave
from pathlib import Path

import numpy as np
import torch


def import_torchaudio_without_extension() -> None:
    spec = importlib.util.find_spec("torchaudio")
    if spec is None:
        raise SystemExit("torchaudio's Python code is not on PYTHONPATH")
    package = types.ModuleType("torchaudio")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["torchaudio"] = package
    extension = types.ModuleType("torchaudio._extension")
    extension._IS_TORCHAUDIO_EXT_AVAILABLE = False
    extension.fail_if_no_align = lambda function: function
    sys.modules["torchaudio._extension"] = extension
    import torchaudio.transforms  # noqa: F401 - sets the attribute the package reads

    sys.modules["librosa"] = types.ModuleType("librosa")  # framed mode only: not exercised


def random_released_checkpoint(path: Path) -> None:
    """The package's own classes with random weights, saved as the released file: a flat dict
    with ``audio_encoder.*`` (the ResNet) and ``audio_transform.*`` (the MLP)."""
    from wav2clip.model.encoder import MLPLayers, ResNetExtractor

    torch.manual_seed(5)
    encoder = ResNetExtractor(scenario="supervise").encoder
    for module in encoder.modules():  # batch-norm statistics that are not the identity
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    transform = MLPLayers(units=[512, 512, 512])
    state = {f"audio_encoder.{k}": v for k, v in encoder.state_dict().items()}
    state.update({f"audio_transform.{k}": v for k, v in transform.state_dict().items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)


def read_wav(path: Path) -> np.ndarray:
    """16-bit mono WAV samples as float32 in [-1, 1), as librosa.load gives them at 16 kHz."""
    with wave.open(str(path)) as handle:
        assert handle.getframerate() == 16000 and handle.getnchannels() == 1
        frames = handle.readframes(handle.getnframes())
    return np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768


def main() -> None:
    torch_home, out, sounds = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
    import_torchaudio_without_extension()
    import wav2clip

    # torch.hub reads a file already in its cache instead of downloading it.
    random_released_checkpoint(torch_home / "hub" / "checkpoints" / "Wav2CLIP.pt")
    torch.hub.set_dir(str(torch_home / "hub"))
    model = wav2clip.get_model()
    embeddings = {Path(s).stem: wav2clip.embed_audio(read_wav(Path(s)), model)[0] for s in sounds}
    np.savez(out, **embeddings)


if __name__ == "__main__":
    main()
