"""The wheel carries configs/ and recipes/ (as clsp/configs, clsp/recipes; no links) and composes a recipe."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # end-to-end: `make test` runs it, `pytest -m "not slow"` skips it

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # Build from a copy so the checkout gets no build/ or egg-info folders.
    src = tmp_path_factory.mktemp("src")
    for name in ("clsp", "configs", "recipes"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    out = tmp_path_factory.mktemp("wheel")
    # The build backend pip runs, called directly so its warnings are seen (pip -q hides them).
    proc = subprocess.run([sys.executable, "-c", "import sys; from setuptools import build_meta; "
                           "build_meta.build_wheel(sys.argv[1])", str(out)],
                          cwd=src, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    warnings = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "Warning" in ln or "absent" in ln]
    assert not warnings, "the build warns (`make install` prints these):\n" + "\n".join(warnings[:10])
    return next(out.glob("clsp-*.whl"))


def test_wheel_holds_the_package_configs_and_recipes(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "clsp").rglob("*.py")}
    assert modules <= names, f"modules missing from the wheel (add the package to pyproject): {modules - names}"
    for folder in ("configs", "recipes"):
        files = {f"clsp/{folder}/{p.relative_to(ROOT / folder).as_posix()}" for p in (ROOT / folder).rglob("*.yaml")}
        assert files and files <= names, files - names
    assert not [p for p in (ROOT / "clsp").rglob("*") if p.is_symlink()]


def test_installed_wheel_composes_a_recipe(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    env = {**os.environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1"}
    code = ("import clsp, sys; from clsp.resources import recipe_dir; "
            "assert str(recipe_dir()).startswith(sys.argv[1]), recipe_dir(); "
            "from clsp.train import main; sys.exit(main(['recipe=fcaps_stage2', 'data.train=/x', '--print-config']))")
    proc = subprocess.run([sys.executable, "-c", code, str(site)], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "clsp.losses.MultiPositiveInfoNCE" in proc.stdout and "recipe_name: fcaps_stage2" in proc.stdout
