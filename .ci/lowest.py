"""Print pip constraints pinning every direct dependency to its declared lowest version.

CI installs the project a second time with these (``pip install -c``) and runs the tests, so the
floors in pyproject.toml are proven, not guessed. torch is left out: CI installs it first, from
a local CPU wheel where there is one, and a floor of torch needs a wheel this machine may lack.
"""

import re
import sys
import tomllib
from pathlib import Path

SKIP = {"torch"}

project = tomllib.loads(Path(sys.argv[1] if len(sys.argv) > 1 else "pyproject.toml").read_text())["project"]
requirements = list(project["dependencies"]) + list(project["optional-dependencies"]["test"])
for requirement in requirements:
    match = re.match(r"^\s*([A-Za-z0-9_.-]+)\s*(?:\[[^\]]*\])?\s*([^;]*)", requirement)
    name, specifiers = match.group(1), match.group(2)
    floor = re.search(r">=\s*([^,\s]+)", specifiers)
    if floor is None:
        sys.exit(f"{requirement}: no >= floor; every direct dependency must declare one")
    if name.lower() not in SKIP:
        print(f"{name}=={floor.group(1)}")
