"""Skipped samples, counted by reason, and the failure limit that stops a run on broken data.

One rule, `SkipCounter.check`: once at least `MIN_SAMPLES` samples were seen, a failure rate above
`max_failure_rate` raises `DataError` naming the most common reason and the shard with the most
failures. It is applied in each reader (a pass over the data that is mostly broken stops at once,
even before it yields a batch) and over the whole run in the training process
(`clsp.training.counters.DataCounters` adds every batch's counts), so a small data set read many
times stops too: 3 bad samples of 7 pass no reader's minimum, but the run's count passes it in a
few epochs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from clsp.errors import DataFailure

# Counted by SkipCounter.skip: these are failures and count toward max_failure_rate.
SKIP_REASONS: tuple[str, ...] = (
    "open_error",
    "corrupt_tar",
    "no_json",
    "bad_json",
    "no_audio",
    "decode_error",
    "empty_audio",
    "nan_audio",
    "no_caption",
    "empty_caption",
)
# Events that are counted but are not failures.
EVENTS: tuple[str, ...] = ("caption_fallback", "decoder_caption_fallback", "no_negative")
# Samples seen before the failure rate is judged: large enough that a few bad samples at the start
# of a healthy data set do not stop it, small enough that a small broken one stops within a few passes.
MIN_SAMPLES = 50


class DataError(DataFailure):
    """Too many bad samples (or a bad sample with handler="raise"): the message says where and why."""


class SkipCounter:
    """Counts skipped samples by reason and stops the run when the failure rate passes a limit.

    `skip()` counts a failure; `note()` counts an event that is not a failure (e.g. a caption
    fallback); `ok()` counts a good sample; `add()` adds counts made elsewhere (a batch's).
    `drain()` returns what was counted since the previous drain (what a batch reports), `totals`
    everything.
    """

    def __init__(self, max_failure_rate: float | None = 0.1, min_samples: int = MIN_SAMPLES):
        if max_failure_rate is not None and not 0.0 <= max_failure_rate <= 1.0:
            raise ValueError(f"max_failure_rate must be in [0, 1] or None, got {max_failure_rate}")
        self.max_failure_rate = max_failure_rate
        self.min_samples = min_samples
        self.good = 0
        self.failures = 0
        self.totals: Counter[str] = Counter()
        self.by_url: Counter[str] = Counter()
        self._pending: Counter[str] = Counter()

    @property
    def seen(self) -> int:
        return self.good + self.failures

    @property
    def failure_rate(self) -> float:
        return self.failures / self.seen if self.seen else 0.0

    def ok(self) -> None:
        self.good += 1

    def note(self, name: str, n: int = 1) -> None:
        self.totals[name] += n
        self._pending[name] += n

    def skip(self, reason: str, url: str = "") -> None:
        self.failures += 1
        self.totals[reason] += 1
        self._pending[reason] += 1
        self.by_url[url] += 1
        self.check()

    def add(self, counts: Mapping[str, int], good: int) -> None:
        """Add counts made elsewhere (a batch's `skipped` and its sample count), then check the limit."""
        self.good += int(good)
        for reason, n in counts.items():
            self.totals[reason] += int(n)
            if reason in SKIP_REASONS:
                self.failures += int(n)
        self.check()

    def failures_by_reason(self) -> dict[str, int]:
        return {r: n for r, n in self.totals.items() if r in SKIP_REASONS and n}

    def check(self) -> None:
        """Raise DataError when the failure rate is above the limit (after min_samples samples)."""
        if self.max_failure_rate is None or self.seen < self.min_samples:
            return
        if self.failure_rate > self.max_failure_rate:
            failures = self.failures_by_reason()
            reason, count = max(failures.items(), key=lambda kv: kv[1])
            where = ""
            if self.by_url:
                url, url_count = self.by_url.most_common(1)[0]
                where = f"most failures in shard {url} ({url_count}); "
            raise DataError(
                f"data failure rate {self.failure_rate:.1%} ({self.failures} of {self.seen} samples) exceeds "
                f"max_failure_rate={self.max_failure_rate:.1%}; top reason: {reason} ({count}); "
                f"{where}all: {failures}"
            )

    def drain(self) -> dict[str, int]:
        out = dict(self._pending)
        self._pending.clear()
        return out
