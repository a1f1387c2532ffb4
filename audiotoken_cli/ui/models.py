"""The models every tab shares: loaded once, on the first request that needs them, and used by
one request at a time."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


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
    _models: dict = field(default_factory=dict)
    _loading: threading.Lock = field(default_factory=threading.Lock)

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
