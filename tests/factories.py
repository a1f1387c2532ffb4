"""Builders for test inputs: media files written with PyAV, tiny models in the real formats.

Everything is made inside the test, on the CPU, in milliseconds; nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import torch

from audiotoken_cli.embedder import PAPER_KEYS, AudioEmbedder
from audiotoken_cli.config import EmbedderConfig


def tone(seconds: float, rate: int = 16000, freq: float = 440.0, channels: int = 1,
         amplitude: float = 0.5, seed: int = 0) -> np.ndarray:
    """A tone with a little noise, (channels, samples) float32; channels differ slightly."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * rate)) / rate
    rows = [amplitude * np.sin(2 * np.pi * freq * (1 + 0.1 * c) * t)
            + 0.01 * rng.standard_normal(t.size) for c in range(channels)]
    return np.stack(rows).astype(np.float32)


def write_audio(path: Path, samples: np.ndarray, rate: int = 16000, codec: str | None = None) -> Path:
    """Encode (channels, samples) float audio to ``path``; the container follows the suffix.

    WAV is 16-bit PCM so its decoded values are known exactly (int16 / 32768).
    """
    path = Path(path)
    samples = np.atleast_2d(np.asarray(samples, dtype=np.float32))
    channels = samples.shape[0]
    codec = codec or {".wav": "pcm_s16le", ".flac": "flac", ".mp3": "mp3", ".ogg": "libopus",
                      ".opus": "libopus", ".m4a": "aac"}[path.suffix]
    layout = "mono" if channels == 1 else "stereo"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate, layout=layout)
        _encode_audio(container, stream, samples, rate, layout)
    return path


def write_video(path: Path, samples: np.ndarray | None, rate: int = 16000, seconds: float = 2.0,
                color: tuple[int, int, int] = (200, 40, 40), fps: int = 10) -> Path:
    """A small solid-colour video, with an audio track unless ``samples`` is None."""
    path = Path(path)
    with av.open(str(path), "w") as container:
        webm = path.suffix == ".webm"
        video = container.add_stream("libvpx" if webm else "mpeg4", rate=fps)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = None
        if samples is not None:
            audio = container.add_stream("libopus" if webm else "aac", rate=rate, layout="mono")
        frame = np.zeros((48, 64, 3), dtype=np.uint8) + np.array(color, dtype=np.uint8)
        for _ in range(round(seconds * fps)):
            for packet in video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
        if audio is not None:
            _encode_audio(container, audio, np.atleast_2d(samples), rate, "mono")
    return path


def _encode_audio(container, stream, samples: np.ndarray, rate: int, layout: str) -> None:
    """Feed the encoder in 1024-sample frames (some codecs require a fixed frame size)."""
    clipped = np.clip(samples, -1.0, 1.0)
    pcm16 = stream.codec_context.name.startswith("pcm_s16")
    step = stream.codec_context.frame_size or 1024
    for begin in range(0, clipped.shape[1], step):
        chunk = clipped[:, begin:begin + step]
        if pcm16:
            packed = (chunk * 32767).round().astype(np.int16).T.reshape(1, -1).copy()
            frame = av.AudioFrame.from_ndarray(packed, format="s16", layout=layout)
        else:
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp",
                                               layout=layout)
        frame.sample_rate = rate
        frame.pts = begin
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)


def make_paper_embedder(path: Path, input_dim: int, token_dim: int, seed: int = 0) -> Path:
    """A random embedder saved the way the paper's code saves it: a pickled state dict with its
    key names and 1×1 Conv1d weight shapes (out, in, 1)."""
    generator = torch.Generator().manual_seed(seed)
    model = AudioEmbedder(EmbedderConfig(input_dim, input_dim, token_dim))
    state = {}
    for ours, paper in PAPER_KEYS.items():
        tensor = model.state_dict()[ours]
        values = torch.randn(tensor.shape, generator=generator) * 0.2
        is_conv = paper.startswith("fga.") and paper.endswith("weight")
        state[paper] = values.unsqueeze(-1) if is_conv else values
    torch.save(state, path)
    return Path(path)
