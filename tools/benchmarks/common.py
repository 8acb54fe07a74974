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


class LiveTensorBytes:
    """Peak bytes of tensor storage allocated while active (inputs created before it are not counted).

    CPU: a TorchDispatchMode sees every op's outputs and follows each new storage until it is freed
    (a weakref finalizer), so the figure is counted live tensor bytes, unmoved by allocator caching or
    other processes (RSS growth read 2.8x-10.9x for the same code). Autograd's CPU backward runs in this
    thread, so saved tensors and gradients are counted too. CUDA: torch.cuda.max_memory_allocated.
    """

    def __init__(self, device: str = "cpu"):
        self.device = device
        self.peak = 0

    def __enter__(self) -> LiveTensorBytes:
        import torch

        if self.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
        else:
            self._mode = _LiveBytesMode()
            self._mode.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        import torch

        if self.device == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self._base
        else:
            self._mode.__exit__(*exc)
            self.peak = self._mode.peak


def _LiveBytesMode():
    import weakref

    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    class Mode(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.live = self.peak = 0
            self.owned: dict[int, int] = {}

        def _free(self, key: int, n: int) -> None:
            self.live -= n
            self.owned.pop(key, None)

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in tree_leaves(out):
                if not isinstance(t, torch.Tensor):
                    continue
                storage = t.untyped_storage()
                key, n = storage.data_ptr(), storage.nbytes()
                if n == 0 or key in self.owned:  # views and in-place results share a counted storage
                    continue
                self.owned[key] = n
                self.live += n
                self.peak = max(self.peak, self.live)
                weakref.finalize(storage, self._free, key, n)
            return out

    return Mode()
