"""All-gather across ranks, with gradients, for losses that score the global batch.

The backward of `gather_with_grad` sums the gradients over ranks and keeps this rank's rows, so with
DDP's gradient averaging a gathered loss updates the model exactly as the single-process loss on the
concatenated batch (see `clsp.losses`). Ranks may hold different row counts.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def world_and_rank() -> tuple[int, int]:
    """(world size, rank); (1, 0) when torch.distributed is not in use."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def gather_sizes(counts: list[int], device: torch.device) -> list[list[int]]:
    """All-gather a few per-rank counts; returns sizes[k][rank] for each count k."""
    size, _ = world_and_rank()
    mine = torch.tensor(counts, dtype=torch.long, device=device)
    bufs = [torch.empty_like(mine) for _ in range(size)]
    dist.all_gather(bufs, mine)
    table = torch.stack(bufs).tolist()  # [world, len(counts)]
    return [[row[k] for row in table] for k in range(len(counts))]


def all_gather_padded(x: Tensor, sizes: list[int]) -> Tensor:
    """Concatenate `x` from every rank along dim 0; ranks may hold different row counts."""
    longest = max(sizes)
    if x.shape[0] < longest:  # collectives need equal shapes: pad, then trim below
        x = torch.cat([x, x.new_zeros((longest - x.shape[0], *x.shape[1:]))])
    bufs = [torch.empty_like(x) for _ in sizes]
    dist.all_gather(bufs, x.contiguous())
    return torch.cat([buf[:n] for buf, n in zip(bufs, sizes)])


class _GatherWithGrad(torch.autograd.Function):
    """All-gather whose backward sums the incoming gradients over ranks and keeps this rank's rows.

    Each rank's loss depends on every rank's rows, so the gradient of sum-over-ranks of the
    losses w.r.t. my rows needs the other ranks' contributions (an all-reduce).
    """

    @staticmethod
    def forward(ctx, x: Tensor, sizes: list[int], rank: int) -> Tensor:  # type: ignore[override]
        ctx.start = sum(sizes[:rank])
        ctx.count = sizes[rank]
        return all_gather_padded(x, sizes)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        grad = grad.contiguous().clone()  # all_reduce is in place; never touch autograd's buffer
        dist.all_reduce(grad)
        return grad[ctx.start : ctx.start + ctx.count], None, None


def gather_with_grad(x: Tensor, sizes: list[int] | None = None) -> Tensor:
    """All-gather `x` [n, ...] over ranks along dim 0, differentiably; identity without distributed.

    `sizes` (rows per rank) is exchanged when not given, so unequal batch sizes work.
    """
    size, rank = world_and_rank()
    if size == 1:
        return x
    if sizes is None:
        sizes = gather_sizes([x.shape[0]], x.device)[0]
    return _GatherWithGrad.apply(x, sizes, rank)
