"""The models every tab shares: loaded once, on the first request that needs them, and used by
one request at a time."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from audiotoken_cli.errors import UsageError


@dataclass
class SharedModels:
    """``load()``'s options, and the models made from them on first use.

    ``--fast`` is fixed when a model loads (``load(fast=True)`` adds the LCM-LoRA and TAESD), so
    the page's fast switch needs a second model. It loads lazily, the first time someone ticks
    the switch: a server whose users never do pays nothing for it, and flipping the switch never
    reloads either model. Both stay resident, since reloading would cost far more than the
    memory of a second pipeline.
    """

    options: dict
    fast_options: dict = field(default_factory=dict)
    unet: threading.Lock = field(default_factory=threading.Lock)
    """Held around every render: two browser tabs never run the UNet at the same time."""
    closing: threading.Event = field(default_factory=threading.Event)
    _models: dict = field(default_factory=dict)
    _loading: threading.Lock = field(default_factory=threading.Lock)

    def check_open(self) -> None:
        """Called between steps and frames: once the server is stopping, the render in flight
        ends at its next step instead of running on into interpreter shutdown."""
        if self.closing.is_set():
            raise UsageError("the server is shutting down")

    def close(self, timeout: float = 60.0) -> None:
        """Stop taking renders and wait for the one in flight to end."""
        self.closing.set()
        if self.unet.acquire(timeout=timeout):
            self.unet.release()

    def loaded(self, fast: bool) -> bool:
        return fast in self._models

    def get(self, fast: bool = False):
        """The plain or the fast model, loading it on the first call (other callers wait)."""
        with self._loading:
            if fast not in self._models:
                import audiotoken_cli as audiotoken

                extra = {**self.fast_options, "fast": True} if fast else {}
                self._models[fast] = audiotoken.load(**self.options, **extra)
            return self._models[fast]
