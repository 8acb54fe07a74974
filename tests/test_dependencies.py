"""pyproject's dependencies match what clsp imports: every third-party import is declared (a core
dependency or an extra), and every core dependency is imported somewhere in clsp."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
tomllib = pytest.importorskip("tomllib")  # Python 3.11+


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _imports() -> set[str]:
    """Top-level third-party modules imported anywhere in clsp, function-level imports included."""
    found: set[str] = set()
    for path in (ROOT / "clsp").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return {m for m in found if m != "clsp" and m not in sys.stdlib_module_names and m != "__future__"}


def test_dependencies_match_imports():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {_name(r) for r in project["dependencies"]}
    extras = {_name(r) for reqs in project["optional-dependencies"].values() for r in reqs}
    dists = {m: {d.lower().replace("_", "-") for d in ds} for m, ds in packages_distributions().items()}
    imported_dists: set[str] = set()
    undeclared = []
    for module in sorted(_imports()):
        names = dists.get(module, {module.replace("_", "-")})  # not installed (an extra): its own name
        imported_dists |= names
        if not names & (core | extras):
            undeclared.append(f"{module} (from {sorted(names)})")
    assert not undeclared, f"imported by clsp but not declared in pyproject.toml: {undeclared}"
    unused = sorted(core - imported_dists)
    assert not unused, f"declared in pyproject.toml but never imported by clsp: {unused}"
