"""What the preemption handler costs a training step (clsp.training.preemption).

    python tools/bench.py preemption

Two processes in a gloo group run the same steps side by side, interleaved: a stand-in training step
(a few matmuls and a gradient-sized all-reduce, as DDP does) with and without the handler's step-boundary
work (`Preemption.on_train_batch_end`: read the all-reduce launched a step earlier, launch the next).
The flag is a one-element CPU tensor on a gloo group, so a quiet step adds no host-device sync on a GPU;
what it adds is one tiny asynchronous all-reduce, measured here per step. One process adds nothing but an
attribute read (no agreement needed).
"""

from __future__ import annotations

import os
import socket
import statistics
import time
from types import SimpleNamespace

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

STEPS, ROUNDS = 100, 9


def _step(weights: torch.Tensor, grads: torch.Tensor) -> None:
    for _ in range(4):
        weights = torch.tanh(weights @ weights)
    dist.all_reduce(grads)  # the gradient all-reduce every DDP step does


def _per_step(fn, steps: int = STEPS) -> float:
    dist.barrier()
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) / steps


def _measure(group) -> dict[str, float]:
    """Median seconds a step: plain, with the handler (interleaved), and the handler's work alone."""
    from clsp.training.preemption import Preemption

    weights, grads = torch.randn(128, 128) / 16, torch.zeros(250_000)
    callback = Preemption()
    callback._group = group
    trainer = SimpleNamespace(global_step=0, world_size=2)

    inside = [0.0]  # seconds the training thread spends in the handler (gloo's own thread not counted)

    def boundary() -> None:
        trainer.global_step += 1
        start = time.perf_counter()
        callback.on_train_batch_end(trainer, None, None, None, 0)
        inside[0] += time.perf_counter() - start

    def plain() -> None:
        for _ in range(STEPS):
            _step(weights, grads)

    def handled() -> None:
        for _ in range(STEPS):
            _step(weights, grads)
            boundary()

    def alone() -> None:
        for _ in range(STEPS):
            boundary()

    plain(), handled()  # warm up
    times: dict[str, list[float]] = {"plain": [], "handled": [], "alone": [], "inside": []}
    for _ in range(ROUNDS):
        for name, fn in (("plain", plain), ("handled", handled), ("alone", alone)):
            inside[0] = 0.0
            times[name].append(_per_step(fn))
            if name == "handled":
                times["inside"].append(inside[0] / STEPS)
    callback.on_train_end(trainer, None)
    return {k: statistics.median(v) for k, v in times.items()}


def _worker(rank: int, port: int, out) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    # The default group, as a CPU (gloo) run uses it; a group of its own, as the handler makes beside NCCL.
    results = {"gloo default group": _measure(dist.group.WORLD),
               "separate gloo group": _measure(dist.new_group(backend="gloo"))}
    if rank == 0:
        out.put(results)
    dist.destroy_process_group()


def preemption() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    procs = [ctx.Process(target=_worker, args=(rank, port, out)) for rank in range(2)]
    for p in procs:
        p.start()
    results = out.get(timeout=900)
    for p in procs:
        p.join()
    for name, r in results.items():
        plain, handled = r["plain"], r["handled"]
        print(f"   2 processes, {name}: step {plain * 1e3:.3f} ms plain, {handled * 1e3:.3f} ms with the handler "
              f"(ratio {handled / plain:.3f}x, {(handled - plain) * 1e6:+.0f} us a step, {r['inside'] * 1e6:.0f} us "
              f"of it in the training thread); the handler alone, back to back: {r['alone'] * 1e6:.0f} us a step")
    print("   a quiet step adds one async 1-element all-reduce on a CPU tensor: no host-device sync")


BENCHMARKS = {"preemption": preemption}
