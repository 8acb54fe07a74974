"""Small timing helpers shared by the benchmarks."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def best_time(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of `fn` over `repeats` runs, after `warmup` untimed runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved(a: Callable[[], object], b: Callable[[], object], repeats: int = 5) -> tuple[float, float]:
    """Median times of `a` and `b`, run alternately so machine noise hits both alike."""
    a(), b()
    ta, tb = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        a()
        ta.append(time.perf_counter() - start)
        start = time.perf_counter()
        b()
        tb.append(time.perf_counter() - start)
    return statistics.median(ta), statistics.median(tb)


def report(label: str, clsp_s: float, base_s: float, unit: str = "s") -> None:
    print(f"   {label}: clsp {clsp_s:.4f}{unit}  baseline {base_s:.4f}{unit}  ratio {base_s / clsp_s:.2f}x")
