"""Decoding many files in order, as a stream: the one entry point every command decodes through.

``decode_windows`` is the contract that the streaming generate pipeline and the embed/train paths
consume. This first version decodes in the calling process; the hostile-inputs work replaces it
with a worker process and a watchdog, keeping the signature.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import torch

from audiotoken_cli.audio.decode import load_window
from audiotoken_cli.config import Window
from audiotoken_cli.errors import AudioTokenError

DEFAULT_TIMEOUT_SECONDS = 60.0
"""How long one file may take to decode before it is reported and skipped."""


def decode_windows(sources: Iterable[Path], window: Window, *, lookahead: int = 4,
                   timeout: float = DEFAULT_TIMEOUT_SECONDS
                   ) -> Iterator[tuple[Path, torch.Tensor | AudioTokenError]]:
    """Yield ``(source, waveform (S,) float32 16 kHz)`` or ``(source, error)`` per source, in order.

    ``sources`` is consumed lazily. ``lookahead`` bounds how many decoded windows may be held ahead
    of the consumer; ``timeout`` bounds one file's decoding. A failure is yielded, never raised, so
    one bad file cannot stop the stream.
    """
    del lookahead, timeout  # honoured by the worker-process implementation
    for source in sources:
        try:
            yield source, load_window(source, window)
        except AudioTokenError as error:
            yield source, error
