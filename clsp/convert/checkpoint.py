"""Reading released training checkpoints safely, and accounting for every key in them.

`torch.load(weights_only=True)` refuses any global it does not know. Released CLAP/WavCaps/HTSAT
files hold tensors, dicts, strings and sometimes numpy scalars (an epoch or a metric saved with
numpy); only what those scalars need is allowed here (the numpy scalar constructor under its
numpy 1 and numpy 2 module names, `numpy.dtype` and the dtype classes of the scalars they hold).
Nothing else is unpickled.

`KeyLedger` makes a converter say what it did with every source key: used (mapped onto a clsp
weight) or dropped from a documented list. Whatever is left over is an error naming the key, so a
checkpoint of a slightly different architecture never converts silently into something else.
"""

from __future__ import annotations

import fnmatch
import os
import pickle
import re
from collections.abc import Iterable
from pathlib import Path

import torch

from clsp.errors import UserError


def _numpy_globals() -> list:
    import numpy as np

    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy 1
        from numpy.core.multiarray import scalar
    dtypes = [type(np.dtype(t)) for t in ("float16", "float32", "float64", "int32", "int64", "bool")]
    # Files written under numpy 1 name the scalar constructor numpy.core.multiarray.scalar.
    return [scalar, (scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar"),
            np.dtype, *dtypes]


def load_checkpoint(path: str | os.PathLike, expected: str) -> dict:
    """The dict inside a torch checkpoint file, loaded with weights_only=True.

    `expected` names what the file should be (used in the one-line errors)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file", f"pass {expected}")
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            data = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        detail = found.group(1) if found else (str(exc).strip().splitlines() or ["?"])[0][:120]
        raise UserError(f"{path}: holds objects a safe load refuses ({detail})", f"expected {expected}") from None
    except Exception as exc:  # a damaged or foreign file can fail anywhere inside the unpickler
        reason = (str(exc).splitlines() or [type(exc).__name__])[0].split(". ")[0][:100]
        raise UserError(f"{path}: not a readable torch checkpoint, truncated or damaged ({reason})",
                        f"expected {expected}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: holds a {type(data).__name__}, not a checkpoint dict", f"expected {expected}")
    return data


def state_dict_of(data: dict, path: str | os.PathLike, field: str, expected: str) -> dict[str, torch.Tensor]:
    """`data[field]` as a flat {name: tensor} dict, or a one-line error."""
    state = data.get(field)
    if not isinstance(state, dict) or not state:
        have = sorted(k for k in data if isinstance(k, str))[:8]
        raise UserError(f"{path}: no '{field}' weights (top-level keys: {have})", f"expected {expected}")
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise UserError(f"{path}: '{field}' entry {bad[0]!r} is not a tensor", f"expected {expected}")
    return state


class KeyLedger:
    """Tracks which source keys a converter used; `finish()` fails on any key neither used nor dropped."""

    def __init__(self, state: dict[str, torch.Tensor], source: str, drop: Iterable[str] = ()):
        self.state = state
        self.source = source
        self.drop = tuple(drop)  # fnmatch patterns of keys the target model does not need
        self.used: set[str] = set()

    def __contains__(self, key: str) -> bool:
        return key in self.state

    def take(self, key: str) -> torch.Tensor:
        """The tensor under `key`, marked used; a missing key is an error naming it."""
        if key not in self.state:
            raise UserError(f"{self.source}: missing weight {key!r}", "the checkpoint is incomplete or of another "
                            "architecture")
        self.used.add(key)
        return self.state[key]

    def shape(self, key: str, todo: str) -> tuple[int, ...]:
        """The shape under `key` (not marked used: the weight itself is taken later); missing: an error."""
        if key not in self.state:
            raise UserError(f"{self.source}: missing weight {key!r}", todo)
        return tuple(self.state[key].shape)

    def keys(self, prefix: str) -> list[str]:
        return [k for k in self.state if k.startswith(prefix)]

    def finish(self) -> list[str]:
        """The dropped keys; raises on keys neither used nor on the drop list."""
        dropped, left = [], []
        for key in self.state:
            if key in self.used:
                continue
            (dropped if any(fnmatch.fnmatchcase(key, p) for p in self.drop) else left).append(key)
        if left:
            more = f" (and {len(left) - 1} more)" if len(left) > 1 else ""
            raise UserError(f"{self.source}: unexpected weight {left[0]!r}{more}",
                            "the checkpoint is of another architecture than the converter expects")
        return dropped
