"""Write constraints.txt: the exact version of every package `pip install -e ".[dev]"` installs,
as installed in this environment (run after the test suite passed here):

    python .ci/freeze_constraints.py > constraints.txt

The README's two commands install with `-c constraints.txt`; pyproject.toml keeps the lower bounds.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata

from packaging.markers import default_environment
from packaging.requirements import Requirement


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(root: str, extras: tuple[str, ...]) -> dict[str, str]:
    env = default_environment()
    seen: dict[str, str] = {}
    todo: list[tuple[str, tuple[str, ...]]] = [(root, extras)]
    while todo:
        name, ex = todo.pop()
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional dependency not installed here (a marker for another platform)
        key = _norm(dist.metadata["Name"])
        if key != _norm(root):
            seen[key] = dist.version
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is not None and not any(req.marker.evaluate({**env, "extra": e}) for e in (*ex, "")):
                continue
            if _norm(req.name) not in seen:
                todo.append((req.name, tuple(req.extras)))
    return seen


if __name__ == "__main__":
    pins = closure("m2r", ("dev",))
    print("# Exact versions the CI passed with (python .ci/freeze_constraints.py > constraints.txt); used by the README's commands.")
    print(f"# Python {sys.version.split()[0]}; pyproject.toml keeps the lower bounds.")
    for name in sorted(pins):
        print(f"{name}=={pins[name]}")
