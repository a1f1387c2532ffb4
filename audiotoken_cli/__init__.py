"""audiotoken: turn sounds into pictures with AudioToken (Yariv et al., Interspeech 2023).

    import audiotoken_cli as audiotoken

    model = audiotoken.load()                         # presets, cache and checks as the CLI
    token = model.embed("dog.wav")                    # (d,) float32
    images = model.generate("dog.wav", n=4, seed=7)   # PIL images with their settings
    result = model.video("song.mp3", seed=7)          # an MP4 that moves with the sound
    audiotoken.probe("dog.wav").duration              # seconds, from the header, no decoding

The names in ``__all__`` are the public API; everything else is private and may change. Heavy
libraries load on first use, so ``import audiotoken_cli`` and ``audiotoken --help`` stay instant.
"""

from audiotoken_cli.errors import AudioTokenError, InputError, ModelError, UsageError

__version__ = "0.1.0"

__all__ = [
    "AudioToken",
    "AudioTokenError",
    "InputError",
    "MediaInfo",
    "ModelError",
    "UsageError",
    "VideoEvents",
    "VideoResult",
    "__version__",
    "load",
    "probe",
    "save_image",
    "train",
]

_FROM_API = {"AudioToken", "VideoEvents", "VideoResult", "load", "save_image", "train"}
_FROM_MEDIA = {"MediaInfo", "probe"}


def __getattr__(name: str):
    # PEP 562: the API module (and torch with it) is imported on first use, not at import time.
    if name in _FROM_API:
        from audiotoken_cli import api

        return getattr(api, name)
    if name in _FROM_MEDIA:  # PyAV loads on the first probe, not here
        from audiotoken_cli.audio import media

        return getattr(media, name)
    raise AttributeError(f"module 'audiotoken_cli' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _FROM_API | _FROM_MEDIA)
