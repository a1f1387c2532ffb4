"""What the page says when something goes wrong: one line, the CLI's own text, no traceback."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from audiotoken_cli.errors import AudioTokenError

log = logging.getLogger("audiotoken.ui")


def one_line(error: BaseException, root: Path) -> str:
    """The error as the CLI prints it. A path under the server's folder ``root`` (an upload's
    place there) is shown as the file's own name: the page never learns the server's paths.
    Anything that is not an AudioTokenError is a bug: its traceback goes to the server's log,
    never to the page."""
    if isinstance(error, AudioTokenError):
        text = str(error)
    else:
        log.exception("unexpected error while serving a request", exc_info=error)
        text = f"internal error ({type(error).__name__}); the server's log has the details"
    text = re.sub(re.escape(str(root)) + r"/(?:[^/\s]+/)*", "", text)
    text = " ".join(text.split())
    return f"error: {text}"
