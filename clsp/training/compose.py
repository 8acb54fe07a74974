"""Compose a run's config from configs/ + a recipe + command-line overrides, with one-line errors."""

from __future__ import annotations

import re

from omegaconf import DictConfig, OmegaConf

from clsp.resources import config_dir, recipe_dir


class ConfigError(ValueError):
    """A bad recipe, override or value: reported as one line, before any model is built."""


def available_recipes() -> list[str]:
    return sorted(p.stem for p in recipe_dir().glob("*.yaml"))


_BRACES = re.compile(r"\{[^{}:]*(\.\.|,)[^{}:]*\}")


def quote_shard_patterns(overrides: list[str]) -> list[str]:
    """Quote values holding shard brace patterns ('train-{000000..000511}.tar').

    The shell already ate the user's quotes, and Hydra's override grammar would read the
    braces as a dictionary.
    """
    out = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if sep and _BRACES.search(value) and value[:1] not in "'\"":
            value = "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
        out.append(f"{key}{sep}{value}")
    return out


def compose_config(overrides: list[str]) -> DictConfig:
    """Hydra compose of configs/train.yaml with `recipe=NAME` and any `group=choice` / `key=value`."""
    overrides = quote_shard_patterns(list(overrides))
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    for item in overrides:
        if item.startswith("recipe=") and item.split("=", 1)[1] not in available_recipes():
            raise ConfigError(f"unknown recipe {item.split('=', 1)[1]!r}; choose one of {available_recipes()}")
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3", job_name="clsp"):
            cfg = compose(config_name="train", overrides=list(overrides))
        OmegaConf.resolve(cfg)
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(_first_line(exc)) from None
    finally:
        GlobalHydra.instance().clear()
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(f"required setting(s) not given: {', '.join(missing)} (e.g. data.train=/path/to/shards)")
    return cfg


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    message = text[0] if text else type(exc).__name__
    if "Could not find" in message or "override" in message.lower():
        return f"bad override: {message}"
    return message
