"""Compose a run's config from configs/ + a recipe + command-line overrides, with one-line errors.

Which keys exist is the schema's business (`clsp.training.schema`, merged first): a misspelt key is
reported with its close matches. The types and ranges of the values that would otherwise fail deep
inside torch or Lightning (`optim.lr=abc`, `trainer.devices=0`) are checked here, from the `CHECKS`
table, before any model or data is built.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from clsp.errors import UserError
from clsp.resources import config_dir, recipe_dir


class ConfigError(UserError):
    """A bad recipe, override or value: reported as one line, before any model is built."""

    def __init__(self, what: str, todo: str | None = None) -> None:
        super().__init__(what, todo or "fix it with a key=value override or in the recipe "
                                       "(`python -m clsp.train --help`)")


@dataclass(frozen=True)
class Check:
    """What a config value may be: a type, an inclusive or exclusive range, or a list of choices.

    `other` accepts further forms (e.g. Lightning's `devices="auto"` or a list of device ids);
    `example` is the fix the error suggests.
    """

    kind: type
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple[str, ...] = ()
    null: bool = False
    other: Callable[[Any], bool] | None = None
    example: str = ""

    def describe(self) -> str:
        if self.choices:
            text = f"one of {', '.join(self.choices)}"
        else:
            text = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}[self.kind]
            bounds = [f"{op} {v:g}" for op, v in ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt))
                      if v is not None]
            text += f" {' and '.join(bounds)}" if bounds else ""
        return text + (" (or null)" if self.null else "")


def _device_ids(value: Any) -> bool:
    """Lightning's other `devices` forms: "auto", -1 (all), a list of ids or "0,1"."""
    if value == -1 or value == "auto":
        return True
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    items = list(value) if isinstance(value, (list, tuple)) or OmegaConf.is_list(value) else None
    return bool(items) and all(str(v).strip().isdigit() for v in items)


_PRECISIONS = ("32-true", "32", "16-mixed", "16", "bf16-mixed", "bf16", "16-true", "bf16-true", "64-true", "64",
               "transformer-engine", "transformer-engine-float16")

# Config keys whose values are checked when the config is composed. A key the config lacks is skipped.
CHECKS: dict[str, Check] = {
    "run.seed": Check(int, ge=0),
    "optim.lr": Check(float, gt=0, example="optim.lr=1e-4"),
    "optim.tower_lr": Check(float, gt=0, null=True, example="optim.tower_lr=1e-5"),
    "optim.weight_decay": Check(float, ge=0),
    "optim.optimizer.eps": Check(float, gt=0),
    "optim.scheduler.warmup_steps": Check(int, ge=0),
    "optim.scheduler.schedule": Check(str, choices=("cosine", "constant")),
    "optim.scheduler.min_lr_ratio": Check(float, ge=0, le=1),
    "trainer.accelerator": Check(str, choices=("auto", "cpu", "gpu", "cuda", "mps", "tpu", "xla", "hpu")),
    "trainer.devices": Check(int, ge=1, other=_device_ids, example="trainer.devices=1 (or auto, -1 = all, 0,1)"),
    "trainer.num_nodes": Check(int, ge=1),
    "trainer.precision": Check(str, choices=_PRECISIONS),
    "trainer.max_steps": Check(int, ge=1, null=True, other=lambda v: v == -1),
    "trainer.max_epochs": Check(int, ge=1, null=True),
    "trainer.val_check_interval": Check(float, gt=0, null=True),
    "trainer.check_val_every_n_epoch": Check(int, ge=1, null=True),
    "trainer.log_every_n_steps": Check(int, ge=1),
    "trainer.gradient_clip_val": Check(float, ge=0, null=True),
    "trainer.accumulate_grad_batches": Check(int, ge=1),
    "trainer.checkpoint_every_n_steps": Check(int, ge=1),
    "trainer.ema_decay": Check(float, gt=0, lt=1, null=True, example="trainer.ema_decay=0.999"),
    "trainer.compile": Check(bool),
    "trainer.enable_progress_bar": Check(bool),
    "data.batch_size": Check(int, ge=1),
    "data.num_workers": Check(int, ge=0),
    "data.shuffle_buffer": Check(int, ge=0),
    "data.samples_per_epoch": Check(int, ge=1, null=True),
    "data.epoch_mode": Check(bool),
    "data.max_failure_rate": Check(float, ge=0, le=1, null=True),
    "data.caption_policy": Check(str, choices=("short", "long", "both", "random")),
    "data.val_caption_policy": Check(str, choices=("short", "long", "all")),
    "model.audio.sample_rate": Check(int, ge=1),
    "model.audio.max_seconds": Check(float, gt=0),
    "model.text.max_length": Check(int, ge=2),
    "model.head.dim": Check(int, ge=1),
}


def _coerce(value: Any, check: Check) -> Any:
    """The value as `check.kind` (a number for int/float), or raise ValueError. Text like '1e-4' is a number."""
    if check.kind is bool:
        if isinstance(value, bool):
            return value
        raise ValueError
    if check.kind is str:
        text = str(value)
        if check.choices and text not in check.choices:
            raise ValueError
        return text if isinstance(value, str) else value
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError
    number = float(value)  # ValueError for 'abc'
    if not math.isfinite(number):
        raise ValueError
    if check.kind is int:
        if number != int(number):
            raise ValueError
        number = int(number)
    for bound, ok in ((check.ge, lambda b: number >= b), (check.gt, lambda b: number > b),
                      (check.le, lambda b: number <= b), (check.lt, lambda b: number < b)):
        if bound is not None and not ok(bound):
            raise ValueError
    return number


def check_values(cfg: DictConfig, checks: dict[str, Check] = CHECKS) -> None:
    """Check (and normalise: '1e-4' -> 1e-4) the values named in `checks`; ConfigError names the key."""
    absent = object()
    for key, check in checks.items():
        value = OmegaConf.select(cfg, key, default=absent)
        if value is absent or (value is None and check.null):
            continue
        if value is not None and check.other is not None and check.other(value):
            continue
        try:
            if value is None:
                raise ValueError
            fixed = _coerce(value, check)
        except ValueError:
            shown = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
            todo = f"give {check.describe()}" + (f", e.g. {check.example}" if check.example else "")
            raise ConfigError(f"{key}={shown!r} is not valid", todo) from None
        # Numbers given as text become numbers; an int stays an int where a number is asked for
        # (Lightning reads val_check_interval=2000 as batches, 2000.0 as a fraction).
        if (isinstance(value, str) and fixed != value) or (check.kind is int and type(value) is float):
            OmegaConf.update(cfg, key, fixed, merge=False, force_add=True)
    trainer = cfg.get("trainer") or {}
    if trainer.get("ema_decay") and "deepspeed" in str(trainer.get("strategy")):
        # DeepSpeed saves the module's weights itself and drops the averaged `state_dict`.
        raise ConfigError("trainer.ema_decay does not work with DeepSpeed strategies",
                          "use trainer=gpu (DDP) for EMA, or trainer.ema_decay=null")


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
    from clsp.training.schema import register

    register()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3", job_name="clsp"):
            cfg = compose(config_name="train", overrides=list(overrides))
        OmegaConf.resolve(cfg)
    except (HydraException, OmegaConfBaseException) as exc:
        raise _hydra_error(exc) from None
    finally:
        GlobalHydra.instance().clear()
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(f"required setting(s) not given: {', '.join(missing)}",
                          "add them as overrides, e.g. " + " ".join(f"{k}=..." for k in missing))
    check_values(cfg)
    return cfg


def _hydra_error(exc: Exception) -> ConfigError:
    """Hydra's multi-line message as one line: the problem, then its own hint or the choices."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    message = lines[0] if lines else type(exc).__name__
    schema = _schema_error(exc)
    if schema is not None:
        return schema
    if "Could not find" in message:  # an unknown group choice: list the available ones
        options = [ln for ln in lines[1:] if not ln.startswith(("Available", "Config search", "provider="))]
        return ConfigError(f"bad override: {message}", f"choose one of {', '.join(options)}" if options else None)
    if "override" in message.lower() or "append" in message.lower() or "Could not" in message:
        hint = " ".join(lines[1:]).replace("To append to your config use", "check the spelling, or to add a new key use")
        return ConfigError(f"bad override: {message.rstrip('.')}", hint or None)
    return ConfigError(message, " ".join(lines[1:]) or None)


def _schema_error(exc: Exception) -> ConfigError | None:
    """A key the schema lacks (with the close matches) or a value of the wrong type, from OmegaConf's error
    (raised directly, or as the cause of Hydra's override error); None for other errors."""
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

    cause = exc
    while cause is not None and not isinstance(cause, (ConfigKeyError, ConfigAttributeError, ValidationError)):
        cause = cause.__cause__ or cause.__context__
    if cause is None:
        return None
    full_key = str(getattr(cause, "full_key", "") or "")
    if isinstance(cause, ValidationError):
        check = CHECKS.get(full_key)
        value = getattr(cause, "value", None) if hasattr(cause, "value") else None
        first = str(cause).splitlines()[0].strip()
        what = f"{full_key}={value!r} is not valid" if value is not None else f"{full_key}: {first}"
        return ConfigError(what, f"give {check.describe()}" if check else first)
    key = getattr(cause, "key", None) or full_key.rsplit(".", 1)[-1]
    parent = full_key.rsplit(".", 1)[0] if "." in full_key else ""
    node = getattr(cause, "parent_node", None) or getattr(cause, "object", None)
    known: list[str] = []
    try:
        known = [str(k) for k in node.keys()] if node is not None else []
    except Exception:  # noqa: BLE001 - the hint is optional
        known = []
    close = difflib.get_close_matches(str(key), known, n=3)
    where = f" in {parent}" if parent else ""
    todo = (f"did you mean {', '.join((parent + '.' if parent else '') + c for c in close)}?" if close
            else f"known keys{where}: {', '.join(known)}" if known else "check the spelling")
    return ConfigError(f"unknown config key {full_key or key!r}", todo)
