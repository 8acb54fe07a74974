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

STEPS, ROUNDS = 200, 5


def _step(weights: torch.Tensor, grads: torch.Tensor) -> None:
    for _ in range(4):
        weights = torch.tanh(weights @ weights)
    dist.all_reduce(grads)  # the gradient all-reduce every DDP step does


def _worker(rank: int, port: int, out) -> None:
    from clsp.training.preemption import Preemption

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    weights, grads = torch.randn(128, 128) / 16, torch.zeros(250_000)
    callback = Preemption()
    callback._group = dist.group.WORLD
    trainer = SimpleNamespace(global_step=0, world_size=2)

    def plain() -> None:
        for _ in range(STEPS):
            _step(weights, grads)

    def handled() -> None:
        for _ in range(STEPS):
            _step(weights, grads)
            trainer.global_step += 1
            callback.on_train_batch_end(trainer, None, None, None, 0)

    times: dict[str, list[float]] = {"plain": [], "handled": []}
    plain(), handled()  # warm up
    for _ in range(ROUNDS):
        for name, fn in (("plain", plain), ("handled", handled)):
            dist.barrier()
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) / STEPS)
    calls = []
    for _ in range(ROUNDS):  # the handler's own work per step, without a training step around it
        dist.barrier()
        start = time.perf_counter()
        for _ in range(STEPS):
            trainer.global_step += 1
            callback.on_train_batch_end(trainer, None, None, None, 0)
        calls.append((time.perf_counter() - start) / STEPS)
    callback.on_train_end(trainer, None)
    if rank == 0:
        out.put({k: statistics.median(v) for k, v in times.items()} | {"alone": statistics.median(calls)})
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
    result = out.get(timeout=600)
    for p in procs:
        p.join()
    plain, handled = result["plain"], result["handled"]
    print(f"   2 processes, gloo: step {plain * 1e3:.3f} ms plain, {handled * 1e3:.3f} ms with the handler "
          f"(ratio {handled / plain:.3f}x, {(handled - plain) * 1e6:+.0f} us a step)")
    print(f"   the handler's step-boundary work alone: {result['alone'] * 1e6:.0f} us a step "
          "(one async 1-element all-reduce on a CPU tensor; no host-device sync)")


BENCHMARKS = {"preemption": preemption}
