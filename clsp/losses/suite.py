"""The weighted sum of a run's loss terms, each reported on its own."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

from torch import Tensor, nn

from clsp.losses.base import ContrastiveOutputs


class LossSuite(nn.Module):
    """Weighted sum of named loss terms; forward returns (total, unweighted detached parts)."""

    def __init__(self, terms: Mapping[str, tuple[nn.Module, float]]) -> None:
        super().__init__()
        if not terms:
            raise ValueError("LossSuite needs at least one loss term")
        for name, value in terms.items():
            if not isinstance(name, str) or not name or "." in name:
                raise ValueError(f"loss term name must be a non-empty string without '.', got {name!r}")
            if not (isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], nn.Module)):
                raise ValueError(f"loss term {name!r}: expected (nn.Module, weight), got {value!r}")
        self.terms = nn.ModuleDict({name: module for name, (module, _) in terms.items()})
        self.weights: dict[str, float] = {}
        for name, (_, weight) in terms.items():
            self.weights[name] = _check_weight(name, weight)

    def _flag(self, attr: str) -> bool:
        return any(getattr(m, attr, False) for m in self.terms.values())

    @property
    def needs_tokens(self) -> bool:
        return self._flag("needs_tokens")

    @property
    def needs_negatives(self) -> bool:
        return self._flag("needs_negatives")

    @property
    def needs_all_captions(self) -> bool:
        return self._flag("needs_all_captions")

    @property
    def needs_captions(self) -> bool:
        return self._flag("needs_captions")

    @property
    def needs_embeddings(self) -> bool:
        """Whether any term reads the clip and caption embeddings (a loss without the flag is assumed to)."""
        return any(getattr(m, "needs_embeddings", True) for m in self.terms.values())

    def forward(self, out: ContrastiveOutputs) -> tuple[Tensor, dict[str, Tensor]]:
        for name, module in self.terms.items():
            missing = [f for f in getattr(module, "requires", ()) if getattr(out, f) is None]
            if missing:
                raise ValueError(
                    f"loss term {name!r} ({type(module).__name__}) needs ContrastiveOutputs fields {missing}"
                )
        total: Tensor | None = None
        parts: dict[str, Tensor] = {}
        for name, module in self.terms.items():
            value = module(out)
            parts[name] = value.detach()
            weighted = value * self.weights[name]
            total = weighted if total is None else total + weighted
        assert total is not None  # non-empty, checked in __init__
        return total, parts


def _check_weight(term: str, weight: object) -> float:
    if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not math.isfinite(float(weight)):
        raise ValueError(f"loss term {term!r}: weight must be a finite number, got {weight!r}")
    if weight < 0:
        raise ValueError(f"loss term {term!r}: weight must be >= 0, got {weight!r}")
    return float(weight)
