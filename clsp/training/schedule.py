"""The caption schedule of multi-positive training (CLSP stage 2), set on the loss term that uses it:

    loss.multipositive.caption_schedule: {p_start: 0.05, p_end: 0.5, ramp_steps: 10000}

It decides, per step, which captions the batch pairs; the loss itself (`clsp.losses.MultiPositiveInfoNCE`)
only sees the captions it is given.
"""

from __future__ import annotations

import numbers
import random
from dataclasses import dataclass
from typing import Literal

import torch


@dataclass
class MultiPositiveSchedule:
    """Stage-2 caption pairing schedule: p(two longs) ramps linearly from p_start to p_end.

    REFERENCE (CLSP): p = min(0.05 + 0.45 * step / 10000, 0.5).
    """

    p_start: float = 0.05
    p_end: float = 0.5
    ramp_steps: int = 10000

    def __post_init__(self) -> None:
        for name in ("p_start", "p_end"):
            p = getattr(self, name)
            if not (isinstance(p, numbers.Real) and 0.0 <= p <= 1.0):
                raise ValueError(f"MultiPositiveSchedule.{name} must be a probability in [0, 1], got {p!r}")
        if not (isinstance(self.ramp_steps, numbers.Integral) and self.ramp_steps > 0):
            raise ValueError(f"MultiPositiveSchedule.ramp_steps must be a positive int, got {self.ramp_steps!r}")

    def p_two_longs(self, step: int) -> float:
        if step < 0:
            raise ValueError(f"MultiPositiveSchedule: step must be >= 0, got {step}")
        p = self.p_start + (self.p_end - self.p_start) * step / self.ramp_steps
        # min() for a rising ramp as in the reference; the clamp also keeps a falling ramp at p_end.
        return min(p, self.p_end) if self.p_end >= self.p_start else max(p, self.p_end)

    def draw(self, step: int, generator: torch.Generator | random.Random) -> Literal["short+long", "two_longs"]:
        """Pick the caption pairing for `step`; deterministic given the generator's state."""
        p = self.p_two_longs(step)
        if isinstance(generator, random.Random):
            u = generator.random()
        elif isinstance(generator, torch.Generator):
            u = float(torch.rand((), generator=generator))
        else:
            raise ValueError(f"MultiPositiveSchedule.draw: generator must be torch.Generator or random.Random, "
                             f"got {type(generator).__name__}")
        return "two_longs" if u < p else "short+long"
