"""Duration bucketing: batches of clips of similar length, cut from a shuffle buffer kept sorted.

Whisper pads a batch to its longest clip, so a random batch of 2-30 s speech costs nearly the 30 s
price. With bucketing the shuffle buffer is kept sorted by duration (read from each sample's audio
header, not decoded) and batches are cut from runs of neighbouring durations: while streaming, one
of the buffer's complete batches is chosen at random (seeded), so order stays random across batches
but clips within one are alike (as open_clip's audio loader and lhotse's DynamicBucketingSampler do).
Without a budget every batch holds `batch_size` clips, so batch counts per epoch are exactly those
without bucketing and ranks stay even. `max_batch_seconds` instead fills each batch up to a budget of
*padded* seconds (clips x longest clip, what the towers pay for) with at most `batch_size` clips.
`Batch.padding_efficiency` (real / padded samples) reports what bucketing buys.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any


def bucket_batches(
    items: Iterator[Any],
    seconds_of: Callable[[Any], float],
    rng: random.Random,
    *,
    batch_size: int,
    buffer_size: int,
    max_batch_seconds: float | None = None,
    shuffle: bool = True,
    drop_last: bool = False,
) -> Iterator[list[Any]]:
    """Groups of items of similar duration, one batch each, from a buffer kept sorted by duration.

    While streaming, once the buffer holds `buffer_size` items (at least two batches), one of its
    complete batches is taken at random (the first when not shuffling); at the end the rest follow
    in random order, the one short batch last (dropped with drop_last, unless a budget is set).
    """
    size = max(buffer_size, 2 * batch_size)
    seconds: list[float] = []  # sorted; items held[i] has duration seconds[i]
    held: list[Any] = []
    for item in items:
        d = seconds_of(item)
        i = bisect.bisect_right(seconds, d)  # after equal durations: arrival order breaks ties
        seconds.insert(i, d)
        held.insert(i, item)
        if len(held) >= size:
            # Every piece but the last is complete (the last may still grow with new arrivals).
            pieces = _pieces(seconds, batch_size, max_batch_seconds)[:-1]
            start, end = pieces[rng.randrange(len(pieces))] if shuffle else pieces[0]
            group = held[start:end]
            del held[start:end], seconds[start:end]
            yield group
    if not held:
        return
    pieces = _pieces(seconds, batch_size, max_batch_seconds)
    last = pieces.pop()
    if shuffle:
        rng.shuffle(pieces)
    yield from (held[a:b] for a, b in pieces)
    if max_batch_seconds is not None or not drop_last or last[1] - last[0] == batch_size:
        yield held[last[0]:last[1]]


def _pieces(seconds: Sequence[float], max_clips: int, budget: float | None) -> list[tuple[int, int]]:
    """Cut sorted durations into consecutive batches [start, end): `max_clips` each, or, with a budget,
    as many clips as keep clips x longest <= budget (at least one). Binary search per batch: the
    padded cost (end - start) * seconds[end - 1] only grows with end, as durations are sorted."""
    pieces, start, n = [], 0, len(seconds)
    while start < n:
        lo, hi = start + 1, min(n, start + max_clips)
        if budget is not None:
            while lo < hi:  # the largest end in [lo, hi] within the budget
                mid = (lo + hi + 1) // 2
                if (mid - start) * seconds[mid - 1] <= budget:
                    lo = mid
                else:
                    hi = mid - 1
        else:
            lo = hi
        pieces.append((start, lo))
        start = lo
    return pieces
