"""Where the Hydra configs and recipes live.

`configs/` and `recipes/` sit at the top of the repository. A wheel installs them inside the
package (`clsp/configs`, `clsp/recipes`, mapped by `[tool.setuptools.package-dir]` in
pyproject.toml, no links); a checkout reads the top-level folders live.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

_PACKAGE = Path(__file__).resolve().parent


def _find(name: str) -> Path:
    """<package>/<name> in an installed wheel, else <checkout>/<name>."""
    installed = _PACKAGE / name
    return installed if installed.is_dir() else _PACKAGE.parent / name


def config_dir() -> Path:
    return _find("configs")


def recipe_dir() -> Path:
    return _find("recipes")


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML file into plain Python containers (interpolations resolved)."""

    return OmegaConf.to_container(OmegaConf.load(str(path)), resolve=True)
