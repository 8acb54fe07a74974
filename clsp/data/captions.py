"""Which captions a clip contributes: one rule for training, one for evaluation, both written here.

Training (`select_captions`, `data.caption_policy`):
- "short" / "long": one caption of that kind (a clip without it falls back to the other kind,
  counted as `caption_fallback`);
- "random": any one caption;
- "both": two captions per clip for multi-positive training (CLSP stage 2). The primary is a long
  caption (else a short one); the second is the short caption ("short+long" steps) or another long
  one ("two longs" steps), as `CaptionSchedule` draws for the step. A clip without the second kind
  contributes its primary only.
`caption_choice` picks which caption of a kind: "random" (training) or "first".

Caption decoder (`decoder_caption`, `data.decoder_captions`), only in runs that train one: one caption
per clip, "short" / "long" (a clip without that kind falls back to the other, counted as
`decoder_caption_fallback`) or "random" (any one), picked by `caption_choice` independently of the
contrastive captions: the same rule as a one-caption `caption_policy`.

Evaluation (`eval_captions`, `data.val_caption_policy` / `clsp.eval --captions`): every caption of
the kind ("short", "long" or "all", in stored order). A clip with no caption of the kind is left out
of retrieval and counted as `no_<kind>_caption`: scoring it against captions of another kind would
mix two tasks in one number, and validation, the end-of-run test and `clsp.eval` all read this rule.
"""

from __future__ import annotations

import numbers
import random
from dataclasses import dataclass

CAPTION_POLICIES = ("short", "long", "random", "both")
CAPTION_CHOICES = ("random", "first")
DECODER_CAPTIONS = ("short", "long", "random")
EVAL_CAPTIONS = ("short", "long", "all")
PAIRINGS = ("short+long", "two_longs")


@dataclass
class CaptionSchedule:
    """How "both" pairs captions per step: p(two longs) ramps linearly from p_start to p_end over
    ramp_steps training steps (CLSP: p = min(0.05 + 0.45 * step / 10000, 0.5))."""

    p_start: float = 0.05
    p_end: float = 0.5
    ramp_steps: int = 10000

    def __post_init__(self) -> None:
        for name in ("p_start", "p_end"):
            p = getattr(self, name)
            if not (isinstance(p, numbers.Real) and 0.0 <= p <= 1.0):
                raise ValueError(f"caption_schedule.{name} must be a probability in [0, 1], got {p!r}")
        if not (isinstance(self.ramp_steps, numbers.Integral) and self.ramp_steps > 0):
            raise ValueError(f"caption_schedule.ramp_steps must be a positive integer, got {self.ramp_steps!r}")

    def p_two_longs(self, step: int) -> float:
        if step < 0:
            raise ValueError(f"caption schedule: step must be >= 0, got {step}")
        p = self.p_start + (self.p_end - self.p_start) * step / self.ramp_steps
        # min() for a rising ramp as in the reference; the clamp also keeps a falling ramp at p_end.
        return min(p, self.p_end) if self.p_end >= self.p_start else max(p, self.p_end)

    def draw(self, step: int, rng: random.Random) -> str:
        """"short+long" or "two_longs" for `step`; deterministic given the generator's state."""
        return "two_longs" if rng.random() < self.p_two_longs(step) else "short+long"


def select_captions(captions: dict[str, list[str]], policy: str, rng: random.Random, choice: str = "random",
                    pairing: str = "short+long") -> tuple[list[tuple[str, str]], bool]:
    """[(text, kind), ...] with the primary caption first, and whether a fallback kind was used."""
    short, long = captions.get("short", []), captions.get("long", [])

    def pick(texts: list[str]) -> int:
        return rng.randrange(len(texts)) if choice == "random" and len(texts) > 1 else 0

    if policy == "random":
        pool = [(t, "short") for t in short] + [(t, "long") for t in long]
        return [pool[pick(pool)]], False
    if policy in ("short", "long"):
        want, other = (short, long) if policy == "short" else (long, short)
        if want:
            return [(want[pick(want)], policy)], False
        return [(other[pick(other)], "long" if policy == "short" else "short")], True
    if policy != "both":
        raise ValueError(f"caption_policy must be one of {CAPTION_POLICIES}, got {policy!r}")
    if not long:  # no long caption: the primary is short, a second short one pairs with it
        i = pick(short)
        out = [(short[i], "short")]
        if pairing == "short+long" and len(short) > 1:
            out.append((short[(i + 1) % len(short)], "short"))
        return out, True
    i = pick(long)
    out = [(long[i], "long")]
    if pairing == "short+long" and short:
        out.append((short[pick(short)], "short"))
    elif pairing == "two_longs" and len(long) > 1:
        j = rng.choice([k for k in range(len(long)) if k != i]) if choice == "random" else (1 if i == 0 else 0)
        out.append((long[j], "long"))
    return out, False


def decoder_caption(captions: dict[str, list[str]], kind: str, rng: random.Random,
                    choice: str = "random") -> tuple[str, bool]:
    """The caption the decoder trains on for one clip, and whether the other kind stood in for `kind`."""
    if kind not in DECODER_CAPTIONS:
        raise ValueError(f"decoder_captions must be one of {DECODER_CAPTIONS}, got {kind!r}")
    chosen, fallback = select_captions(captions, kind, rng, choice)
    return chosen[0][0], fallback


def eval_captions(captions: dict[str, list[str]], kind: str) -> tuple[list[str], list[str]]:
    """(texts, kinds) of every caption of `kind` ("short", "long" or "all") in stored order; empty when
    the clip has none of that kind (the clip is then left out and counted, see the module doc)."""
    if kind not in EVAL_CAPTIONS:
        raise ValueError(f"captions must be one of {EVAL_CAPTIONS}, got {kind!r}")
    texts, kinds = [], []
    for k in ("short", "long"):
        if kind in ("all", k):
            items = list(captions.get(k, []))
            texts += items
            kinds += [k] * len(items)
    return texts, kinds


def missing_reason(kind: str) -> str:
    """The skip-count name of a clip without a caption of `kind`."""
    return "no_caption" if kind == "all" else f"no_{kind}_caption"
