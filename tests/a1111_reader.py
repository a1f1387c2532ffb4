"""Run A1111's own ``parse_generation_parameters`` on a ``parameters`` chunk, from a copy of
stable-diffusion-webui's ``modules/infotext_utils.py`` (and its ``infotext_versions.py``) found on
this machine. Nothing of A1111's is in this repository: the files are read at run time.

The webui pieces the parser only reaches through its settings (gradio, ``shared.opts``, the
prompt-style database) stand in with A1111's default settings; the parsing code itself, its
regular expression and its ``unquote`` are A1111's, unchanged.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from contextlib import contextmanager
from pathlib import Path

ENV = "AUDIOTOKEN_A1111_INFOTEXT"
"""Path to webui's ``modules/infotext_utils.py`` (``infotext_versions.py`` and
``prompt_parser.py``, which needs the ``lark`` package, beside it)."""

# A1111's defaults (modules/shared_options.py) for the settings the parser reads. With no saved
# styles, "Ignore" and the default "Apply if any" give the same result.
DEFAULT_OPTS = {"infotext_styles": "Ignore", "infotext_skip_pasting": [],
                "use_old_hires_fix_width_height": False, "auto_backcompat": True}
STAND_INS = ("modules.paths", "modules.shared", "modules.ui_tempdir", "modules.script_callbacks",
             "modules.processing", "modules.images", "modules.errors")
STUBBED = ("gradio", "modules", *STAND_INS, "modules.prompt_parser", "modules.infotext_versions",
           "modules.infotext_utils", "modules.generation_parameters_copypaste")


def infotext_file() -> Path | None:
    path = os.environ.get(ENV)
    return Path(path) if path and Path(path).is_file() else None


@contextmanager
def a1111_parser(path: Path):
    """Yield A1111's ``parse_generation_parameters`` loaded from ``path``; ``sys.modules`` is
    restored afterwards (the stand-in ``gradio`` must not leak into other tests)."""
    saved = {name: sys.modules.get(name) for name in STUBBED}
    try:
        _install_stand_ins()
        _load("modules.infotext_versions", path.with_name("infotext_versions.py"))
        _load("modules.prompt_parser", path.with_name("prompt_parser.py"))
        yield _load("modules.infotext_utils", path).parse_generation_parameters
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def _install_stand_ins() -> None:
    gradio = types.ModuleType("gradio")
    gradio.update = lambda **kwargs: {"__type__": "update", **kwargs}
    sys.modules["gradio"] = gradio
    package = types.ModuleType("modules")
    package.__path__ = []
    sys.modules["modules"] = package
    for name in STAND_INS:
        module = types.ModuleType(name)
        sys.modules[name] = module
        setattr(package, name.split(".")[1], module)
    sys.modules["modules.paths"].data_path = "."
    sys.modules["modules.shared"].opts = types.SimpleNamespace(**DEFAULT_OPTS)


def _load(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    setattr(sys.modules["modules"], name.split(".")[1], module)
    spec.loader.exec_module(module)
    return module
