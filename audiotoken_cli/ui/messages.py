"""What the page says when something goes wrong: one line, the CLI's own text, no traceback."""

from __future__ import annotations

import logging
from pathlib import Path

from audiotoken_cli.errors import AudioTokenError

log = logging.getLogger("audiotoken.ui")


def one_line(error: BaseException, upload: Path | None = None) -> str:
    """The error as the CLI prints it. A server path in it (the upload's place in the temporary
    folder) is shown as the file's own name. Anything that is not an AudioTokenError is a bug:
    its traceback goes to the server's log, never to the page."""
    if isinstance(error, AudioTokenError):
        text = str(error)
    else:
        log.exception("unexpected error while serving a request", exc_info=error)
        text = f"internal error ({type(error).__name__}); the server's log has the details"
    if upload is not None:
        text = text.replace(str(upload), upload.name)
    text = " ".join(text.split())
    return f"error: {text}"
