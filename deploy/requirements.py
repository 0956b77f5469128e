"""Print the requirements of autoglm-mcp and the given extras, from pyproject.toml alone.

The Dockerfile installs these before it copies the sources, so a code change reuses the layer:
`python deploy/requirements.py worker,real-models`; no argument (or `""`) lists the core only.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path


def requirements(pyproject: Path, extras: str) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    chosen = [e.strip() for e in extras.split(",") if e.strip()]
    unknown = [e for e in chosen if e not in optional]
    if unknown:
        raise SystemExit(f"unknown extras {unknown}; known: {sorted(optional)}")
    return list(project["dependencies"]) + [d for e in chosen for d in optional[e]]


if __name__ == "__main__":
    here = Path(sys.argv[2]) if len(sys.argv) > 2 else Path("pyproject.toml")
    print("\n".join(requirements(here, sys.argv[1] if len(sys.argv) > 1 else "")))
