"""User-facing errors.

Every error a user can cause (a bad file, a wrong option, an unusable weight file) is raised as one
of these. The CLI prints ``str(error)`` as a single line and exits non-zero; anything else is a bug
and shows a traceback. Messages name the thing that was wrong first: ``"dog.wav: not an audio file"``.
"""

from __future__ import annotations


class AudioTokenError(Exception):
    """Base class: an error whose message is meant for the user, not a bug."""


class InputError(AudioTokenError):
    """An input file (audio or video) is missing, unreadable, empty or not audio."""


class ModelError(AudioTokenError):
    """A weight file or model folder is missing, malformed or does not fit the others."""


class UsageError(AudioTokenError):
    """Options that do not make sense together, or a value outside its valid choices."""
