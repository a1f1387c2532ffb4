"""``audiotoken ui``: a local gradio app over the Python API (issue 18; docs/ui.md).

Nothing here renders or decodes: every tab calls ``audiotoken.load``, ``AudioToken.generate``,
``generate_from_token``, ``embed``/``save_token``, ``video`` and ``probe``. gradio is an optional
extra (``pip install "audiotoken-cli[ui]"``), imported only when the command runs.
"""

from audiotoken_cli.ui.folders import Limits
from audiotoken_cli.ui.server import UiOptions, build_app, serve

__all__ = ["Limits", "UiOptions", "build_app", "serve"]
