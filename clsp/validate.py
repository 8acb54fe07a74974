"""Value checks for the typed config sections: each section's dataclass checks its own fields.

    require("data", "batch_size", self.batch_size, int, ge=1)
    require("data", "caption_policy", self.caption_policy, choices=CAPTION_POLICIES)

A failed check raises `ValueError("data.batch_size=0 is not valid; give an integer >= 1")`: one line
naming the key and what it may be. The allowed-value lists live beside the code that reads them
(`clsp.data.captions.CAPTION_POLICIES`, ...) and are only imported here by the sections. Types that
OmegaConf already enforces on a typed field (a string given for an int) fail before these run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

_KINDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def describe(kind: type | None = None, *, ge: float | None = None, gt: float | None = None,
             le: float | None = None, lt: float | None = None, choices: Sequence[Any] = (),
             null: bool = False) -> str:
    """What a value may be, in words: 'an integer >= 1', 'one of short, long', '... (or null)'."""
    if choices:
        text = f"one of {', '.join(map(str, choices))}"
    else:
        text = _KINDS.get(kind, "a value")
        bounds = [f"{op} {v:g}" for op, v in ((">=", ge), (">", gt), ("<=", le), ("<", lt)) if v is not None]
        text += f" {' and '.join(bounds)}" if bounds else ""
    return text + (" (or null)" if null else "")


def _fits(value: Any, kind: type | None, ge, gt, le, lt, choices) -> bool:
    if choices:
        return value in choices
    if kind is bool:
        return isinstance(value, bool)
    if kind in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        if kind is int and value != int(value):
            return False
        return all(b is None or ok for b, ok in ((ge, ge is None or value >= ge), (gt, gt is None or value > gt),
                                                 (le, le is None or value <= le), (lt, lt is None or value < lt)))
    return kind is None or isinstance(value, kind)


def require(section: str, name: str, value: Any, kind: type | None = None, *, ge: float | None = None,
            gt: float | None = None, le: float | None = None, lt: float | None = None,
            choices: Sequence[Any] = (), null: bool = False, example: str = "") -> None:
    """Raise a one-line ValueError naming `section.name` unless `value` fits."""
    if value is None and null:
        return
    if value is not None and _fits(value, kind, ge, gt, le, lt, choices):
        return
    what = describe(kind, ge=ge, gt=gt, le=le, lt=lt, choices=choices, null=null)
    hint = f", e.g. {example}" if example else ""
    raise ValueError(f"{section}.{name}={value!r} is not valid; give {what}{hint}")
