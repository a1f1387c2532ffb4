"""Download progress: huggingface_hub takes any tqdm-like class; ours draws with rich."""

from __future__ import annotations

from audiotoken_cli.hub.specs import FetchOptions


class _progress:
    """Context manager giving a tqdm-like class whose bars are rich progress bars (bytes,
    speed, ETA) on stderr, or nothing with ``--quiet``."""

    def __init__(self, options: FetchOptions):
        self.options = options
        self.progress = None

    def __enter__(self):
        if self.options.quiet:
            return _SilentBar
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        console = Console(stderr=True)
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                 TransferSpeedColumn(), TimeRemainingColumn(),
                                 console=console, transient=True, disable=not console.is_terminal)
        self.progress.start()
        progress = self.progress

        class RichBar(_SilentBar):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                self._task = None
                if kwargs.get("unit", "B") == "B":
                    self._task = progress.add_task(self._label(), total=self._total or None,
                                                   completed=kwargs.get("initial", 0) or 0,
                                                   visible=False)

            def _label(self) -> str:
                desc = self.desc or "download"
                return "download" if desc.startswith(("Reconstructing", "Downloading bytes")) else desc

            def _sync(self) -> None:
                if self._task is not None:
                    progress.update(self._task, total=self._total or None, completed=self.n,
                                    visible=self.n > 0)

        return RichBar

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.stop()
        return False


class _SilentBar:
    """The part of tqdm's interface huggingface_hub uses; it draws nothing."""

    def __init__(self, *args, total=None, initial=0, desc=None, **kwargs):
        self._total = total
        self.n = initial or 0
        self.desc = desc

    @property
    def total(self):
        return self._total

    @total.setter
    def total(self, value):
        self._total = value
        self._sync()

    def update(self, n=1):
        self.n += n or 0
        self._sync()

    def _sync(self) -> None:
        pass

    def refresh(self, *args, **kwargs):
        self._sync()

    def close(self):
        pass

    def set_postfix_str(self, *args, **kwargs):
        pass

    def set_description(self, desc=None, *args, **kwargs):
        self.desc = desc

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __getattr__(self, name):  # any other tqdm method: accept and ignore
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *args, **kwargs: None
