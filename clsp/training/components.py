"""Build the run's components from `_target_` entries with `hydra.utils.instantiate`.

A config names each component by its import path (`_target_: clsp.losses.GlobalInfoNCE`,
`torch.optim.AdamW`, `lightning.pytorch.loggers.CSVLogger`), so any class with the right interface
plugs in without a registry. What instantiate does not give is a one-line error that names the config
key; `instantiate` here adds that.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import get_class
from hydra.utils import instantiate as hydra_instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from clsp.errors import ConfigError
from clsp.losses import LossSuite


def instantiate(node: Mapping[str, Any] | DictConfig, where: str, *, partial: bool = False, **kwargs: Any) -> Any:
    """`hydra.utils.instantiate(node, **kwargs)`; a bad `_target_` or argument is a ConfigError naming `where`.

    `partial=True` returns the callable with the config's arguments bound (`functools.partial`), for
    arguments only known at run time that a config cannot hold (parameter groups, an optimizer).
    """
    if OmegaConf.is_config(node):
        node = OmegaConf.to_container(node, resolve=True)
    if not isinstance(node, Mapping) or "_target_" not in node:
        raise ConfigError(f"{where}: needs a `_target_` (the import path of the class to build), got {node!r}")
    try:
        return hydra_instantiate(dict(node), _convert_="all", _partial_=partial, **kwargs)
    except InstantiationException as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and "HYDRA_FULL_ERROR" not in ln]
        text = " ".join(lines) or str(exc).split(",")[0]
        raise ConfigError(f"{where}: {text}", f"check {where}._target_ and its arguments") from None


def component_class(path: str, where: str) -> type:
    """The class a `_target_` names, for components built with run-time arguments (the data module)."""
    try:
        return get_class(path)
    except (ImportError, ValueError) as exc:
        raise ConfigError(f"{where}={path!r} is not an importable class ({' '.join(str(exc).split())})",
                          f"check {where}") from None


def call(factory: Any, where: str, *args: Any, **kwargs: Any) -> Any:
    """Call a partial from `instantiate(..., partial=True)`; wrong arguments are a ConfigError naming `where`."""
    try:
        return factory(*args, **kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {' '.join(str(exc).split())}", f"check the arguments under {where}") from None


def build_losses(spec: Mapping[str, Any] | DictConfig) -> LossSuite:
    """The weighted loss terms of `loss:`; a term is `{_target_: <loss class>, weight: w, **arguments}`."""
    if OmegaConf.is_config(spec):
        spec = OmegaConf.to_container(spec, resolve=True)
    if not isinstance(spec, Mapping) or not spec:
        raise ConfigError(f"loss: needs at least one term, got {spec!r}", "choose a loss config, e.g. loss=global")
    terms: dict[str, tuple[nn.Module, float]] = {}
    for term, settings in spec.items():
        where = f"loss.{term}"
        if not isinstance(settings, Mapping):
            raise ConfigError(f"{where}: a term is a mapping with `_target_` and `weight`, got {settings!r}")
        settings = dict(settings)
        weight = settings.pop("weight", 1.0)
        if "caption_schedule" in settings:
            raise ConfigError(f"{where}.caption_schedule was renamed to data.caption_schedule",
                              "captions are chosen in the data: move the schedule there")
        module = instantiate(settings, where)
        if not isinstance(module, nn.Module):
            raise ConfigError(f"{where}: {settings['_target_']} is not a loss module (torch.nn.Module)")
        terms[str(term)] = (module, weight)
    try:
        return LossSuite(terms)
    except ValueError as exc:
        raise ConfigError(f"loss: {exc}") from None
