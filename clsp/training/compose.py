"""Compose a run's config from configs/ + a recipe + command-line overrides, with one-line errors.

Which keys exist and their types are the schema's business (`clsp.training.schema`, merged first):
a misspelt key is reported with its close matches, a key renamed since an earlier version with its
new name. Each section then checks its own ranges and choices (`typed_config`), and the sections are
checked against each other (a loss that needs two captions per clip with a caption policy that gives
one), all before any model or data is built.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import typing

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    InterpolationKeyError,
    OmegaConfBaseException,
    ValidationError,
)

from clsp.errors import ConfigError
from clsp.resources import config_dir, recipe_dir
from clsp.training.components import build_losses
from clsp.training.schema import TrainConfig, register

# Keys renamed since earlier versions: an override or recipe that uses one gets a one-line "renamed to".
RENAMED = {
    "optim.name": "optim.optimizer._target_",
    "optim.betas": "optim.optimizer.betas",
    "optim.eps": "optim.optimizer.eps",
    "optim.warmup_steps": "optim.scheduler.warmup_steps",
    "optim.schedule": "optim.scheduler.schedule",
    "optim.min_lr_ratio": "optim.scheduler.min_lr_ratio",
    "trainer.progress_bar": "trainer.enable_progress_bar",
    "model.audio.tower": "model.audio._target_",
    "data.text_lowercase": "model.text.lowercase",
    "data.max_text_length": "model.text.max_length",
}
# Old names by pattern; the new name may use the pattern's groups (\1).
_RENAMED_PATTERNS = ((re.compile(r"^loss\.([^.]+)\.name$"), r"loss.\1._target_"),
                     (re.compile(r"^loss\.[^.]+\.caption_schedule(\..*)?$"), r"data.caption_schedule\1"),
                     (re.compile(r"^caption_schedule(\..*)?$"), r"data.caption_schedule\1"),
                     (re.compile(r"^logger\.wandb_(\w+)$"), r"logger.wandb.\1"))


def renamed_to(key: str) -> str | None:
    """The current name of a key renamed since an earlier version, or None."""
    if key in RENAMED:
        return RENAMED[key]
    match = next((m for m in (p.match(key) for p, _ in _RENAMED_PATTERNS) if m), None)
    return match.expand(dict(_RENAMED_PATTERNS)[match.re]) if match else None


def check_renamed(overrides: list[str]) -> None:
    """A one-line error for an override that names a key by its old name."""
    for item in overrides:
        key = item.partition("=")[0].lstrip("+~")
        new = renamed_to(key)
        if new is not None:
            raise ConfigError(f"{key} was renamed to {new}", f"write {new}=... instead")


def available_recipes() -> list[str]:
    return sorted(p.stem for p in recipe_dir().glob("*.yaml"))


def recipe_descriptions() -> dict[str, str]:
    """Each recipe's one-line description: the first comment line of its file after `# @package`."""
    out = {}
    for name in available_recipes():
        lines = (recipe_dir() / f"{name}.yaml").read_text(encoding="utf-8").splitlines()
        comments = [ln.lstrip("#").strip() for ln in lines if ln.startswith("#") and "@package" not in ln]
        out[name] = next((c for c in comments if c), "")
    return out


_BRACES = re.compile(r"\{[^{}:]*(\.\.|,)[^{}:]*\}")


def quote_shard_patterns(overrides: list[str]) -> list[str]:
    """Quote values holding shard brace patterns ('train-{000000..000511}.tar') or split fractions
    ('train=0.8,val=0.1,test=0.1').

    The shell already ate the user's quotes, and Hydra's override grammar would read the braces as a
    dictionary and the commas as a sweep.
    """
    out = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if sep and (_BRACES.search(value) or "=" in value) and value[:1] not in "'\"":
            value = "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
        out.append(f"{key}{sep}{value}")
    return out


_INTEGRAL = re.compile(r"^[+-]?\d+\.0*$")


def integral_numbers(overrides: list[str]) -> list[str]:
    """`key=8.0` as `key=8` where the schema types `key` as an integer (a common command-line slip)."""
    out = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if sep and _INTEGRAL.match(value.strip()) and _field_type(TrainConfig, key.lstrip("+~").split(".")) is int:
            item = f"{key}={int(float(value))}"
        out.append(item)
    return out


def _field_type(cls: type, path: list[str]) -> type | None:
    """The type of the field at `path` in a dataclass tree (Optional[X] as X), or None."""
    hints = typing.get_type_hints(cls) if dataclasses.is_dataclass(cls) else {}
    kind = hints.get(path[0])
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    kind = args[0] if len(args) == 1 and kind not in (int, float, str, bool) else kind
    return kind if len(path) == 1 else _field_type(kind, path[1:])


def compose_config(overrides: list[str], *, allow_missing: bool = False) -> DictConfig:
    """Hydra compose of configs/train.yaml with `recipe=NAME` and any `group=choice` / `key=value`,
    checked (`typed_config`). `allow_missing` leaves required settings as `???` (for --print-config)."""
    overrides = integral_numbers(quote_shard_patterns(list(overrides)))
    for item in overrides:
        if item.startswith("recipe=") and item.split("=", 1)[1] not in available_recipes():
            raise ConfigError(f"unknown recipe {item.split('=', 1)[1]!r}",
                              f"choose one of {', '.join(available_recipes())} (`python -m clsp.train --recipes`)")
    check_renamed(overrides)
    register()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3", job_name="clsp"):
            cfg = compose(config_name="train", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as exc:
        raise _hydra_error(exc) from None
    finally:
        GlobalHydra.instance().clear()
    try:
        OmegaConf.resolve(cfg)
    except InterpolationKeyError as exc:
        raise _interpolation_error(cfg, exc) from None
    except (HydraException, OmegaConfBaseException) as exc:
        raise _hydra_error(exc) from None
    finally:
        GlobalHydra.instance().clear()
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing and not allow_missing:
        raise ConfigError(f"required setting(s) not given: {', '.join(missing)}",
                          "add them as overrides, e.g. " + " ".join(f"{k}=..." for k in missing))
    check_added_keys(cfg, overrides)
    if not missing:
        typed_config(cfg)
    return cfg


def check_added_keys(cfg: DictConfig, overrides: list[str]) -> None:
    """`+key=value` adds a key: allowed in free-form sections (loss terms, loggers, callbacks, a
    `_target_`'s arguments), a one-line error where a typed section has no such field (a misspelling)."""
    for item in overrides:
        if not item.startswith("+") or item.startswith("++"):
            continue
        parent_key, _, name = item[1:].partition("=")[0].rpartition(".")
        parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
        fields = _dataclass_fields(parent)
        if fields is not None and name not in fields:
            close = difflib.get_close_matches(name, fields, n=3)
            where = f"{parent_key}." if parent_key else ""
            todo = f"did you mean {', '.join(where + c for c in close)}?" if close else \
                f"known keys in {parent_key or 'the config'}: {', '.join(fields)}"
            raise ConfigError(f"unknown config key {where + name!r}", todo)


def _dataclass_fields(node: object) -> list[str] | None:
    """The field names of a typed (dataclass) config node, or None for a free-form one."""
    if not OmegaConf.is_dict(node):
        return None
    kind = OmegaConf.get_type(node)
    return [f.name for f in dataclasses.fields(kind)] if dataclasses.is_dataclass(kind) else None


def typed_config(cfg: DictConfig) -> TrainConfig:
    """The config as dataclass objects, each section having checked its values; then the sections
    checked against each other. A problem is a ConfigError naming the key."""
    try:
        typed = OmegaConf.to_object(cfg)
    except ValueError as exc:  # a section's __post_init__: "data.batch_size=0 is not valid; give ..."
        raise ConfigError.from_exception(exc) from None
    except OmegaConfBaseException as exc:
        raise _schema_error(exc) or ConfigError(str(exc).splitlines()[0]) from None
    check_sections(typed)
    return typed


def check_sections(cfg: TrainConfig) -> None:
    """Rules that join two sections: which captions the data gives and which the losses need; a captioning term
    needs a decoder."""
    losses = build_losses(cfg.loss)
    both = cfg.data.caption_policy == "both"
    if losses.needs_all_captions and not both:
        raise ConfigError(f"the loss needs two captions per clip but data.caption_policy={cfg.data.caption_policy} "
                          "gives one", "set data.caption_policy=both")
    if both and not losses.needs_all_captions:
        raise ConfigError("data.caption_policy=both gives two captions per clip but no loss term uses the second",
                          "add a multi-positive term (loss=multipositive) or choose short, long or random")
    if losses.needs_captions and cfg.model.decoder is None and not cfg.run.init_from:  # init_from: build_model checks
        raise ConfigError("a loss term trains the caption decoder but model.decoder is not set",
                          "choose a model with a decoder (e.g. model=tiny_whisper_caption) or drop the captioning term")
    if losses.needs_negatives != bool(cfg.data.hard_negatives):
        raise ConfigError(f"data.hard_negatives={str(cfg.data.hard_negatives).lower()} but "
                          f"{'a' if losses.needs_negatives else 'no'} loss term uses hard negatives",
                          f"set data.hard_negatives={str(losses.needs_negatives).lower()}")


def _interpolation_error(cfg: DictConfig, exc: InterpolationKeyError) -> ConfigError:
    """A `${key}` that points at nothing, named with the settings that refer to it."""
    found = re.search(r"Interpolation key '([^']+)'", str(exc))
    target = found.group(1) if found else "?"
    flat = _leaves(OmegaConf.to_container(cfg, resolve=False))
    users = [key for key, value in flat.items() if isinstance(value, str) and "${" + target in value]
    if not users:
        return ConfigError(f"${{{target}}} refers to a setting that is not there", f"set {target}")
    return ConfigError(f"{', '.join(users)} refer{'s' if len(users) == 1 else ''} to ${{{target}}}, which is not set",
                       f"give {' '.join(u + '=...' for u in users)} yourself, or set {target}")


def _leaves(node: object, prefix: str = "") -> dict[str, object]:
    if isinstance(node, dict):
        return {k: v for key, child in node.items() for k, v in _leaves(child, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): node}


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


_TYPE_WORDS = {"Float": "a number", "Integer": "an integer", "Boolean": "true or false"}


def _schema_error(exc: Exception) -> ConfigError | None:
    """A key the schema lacks (with the close matches) or a value of the wrong type, from OmegaConf's error
    (raised directly, or as the cause of Hydra's override error); None for other errors."""
    cause = exc
    while cause is not None and not isinstance(cause, (ConfigKeyError, ConfigAttributeError, ValidationError)):
        cause = cause.__cause__ or cause.__context__
    if cause is None:
        return None
    full_key = str(getattr(cause, "full_key", "") or "")
    if isinstance(cause, ValidationError):
        value = getattr(cause, "value", None) if hasattr(cause, "value") else None
        first = str(cause).splitlines()[0].strip()
        what = f"{full_key}={value!r} is not valid" if value is not None else f"{full_key}: {first}"
        wanted = next((words for name, words in _TYPE_WORDS.items() if f"converted to {name}" in first), None)
        return ConfigError(what, f"give {wanted}" if wanted else first)
    key = getattr(cause, "key", None) or full_key.rsplit(".", 1)[-1]
    if renamed_to(full_key):  # an old name in a recipe or config file
        return ConfigError(f"{full_key} was renamed to {renamed_to(full_key)}", f"write {renamed_to(full_key)} instead")
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
