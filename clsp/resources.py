"""Where the packaged Hydra configs and recipes live.

`configs/` and `recipes/` sit at the top of the repository; the package links to them
(`clsp/configs`, `clsp/recipes`), so a wheel ships copies and a checkout reads them live.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

_PACKAGE = Path(__file__).resolve().parent


def config_dir() -> Path:
    return _PACKAGE / "configs"


def recipe_dir() -> Path:
    return _PACKAGE / "recipes"


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML file into plain Python containers (interpolations resolved)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(str(path)), resolve=True)
