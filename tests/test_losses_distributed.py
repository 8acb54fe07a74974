"""Two CPU processes (gloo): gathered losses equal the single-process loss on the concatenated batch.

Contract (clsp.losses docstring): the mean over ranks of the loss equals the single-process loss,
and each rank's gradient w.r.t. its own inputs is W x the single-process gradient of those rows
(DDP then averages over W). Ranks hold different batch sizes to exercise the padding path.
"""

from __future__ import annotations

import socket
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from clsp.losses import CaptioningLoss, ContrastiveOutputs, GlobalInfoNCE, MultiPositiveInfoNCE, SigLIPLoss

pytestmark = pytest.mark.slow  # end-to-end: `make test` runs it, `pytest -m "not slow"` skips it

WORLD = 2
SIZES = [4, 3]  # clips per rank (unequal on purpose)
EXTRA = [2, 3]  # extra captions per rank, for the multi-positive loss
DIM = 8


def _data():
    """The global batch, identical on every process."""
    g = torch.Generator().manual_seed(1234)
    n = sum(SIZES)
    audio = F.normalize(torch.randn(n, DIM, generator=g, dtype=torch.float64), dim=-1)
    text = F.normalize(torch.randn(n, DIM, generator=g, dtype=torch.float64), dim=-1)
    extra_text = F.normalize(torch.randn(sum(EXTRA), DIM, generator=g, dtype=torch.float64), dim=-1)
    extra_owner = [int(torch.randint(0, SIZES[r], (1,), generator=g)) for r in range(WORLD) for _ in range(EXTRA[r])]
    return audio, text, extra_text, extra_owner


def _inputs(rank: int | None):
    """Leaf tensors for one rank (rank=None: the whole concatenated batch)."""
    audio, text, extra_text, extra_owner = _data()
    ranks = range(WORLD) if rank is None else [rank]
    a_rows: list[int] = []
    clip_offset, extra_offset = 0, 0
    primary, extras, extra_owners = [], [], []
    for r in range(WORLD):
        rows = list(range(clip_offset, clip_offset + SIZES[r]))
        ex = list(range(extra_offset, extra_offset + EXTRA[r]))
        if r in ranks:
            base = sum(SIZES[q] for q in ranks if q < r)  # clip index within the returned batch
            a_rows += rows
            primary += rows
            extras += ex
            extra_owners += [base + o for o in extra_owner[extra_offset : extra_offset + EXTRA[r]]]
        clip_offset += SIZES[r]
        extra_offset += EXTRA[r]
    b = len(a_rows)
    a = audio[a_rows].clone().requires_grad_()
    t_all = torch.cat([text[primary], extra_text[extras]]).clone().requires_grad_()
    owners = torch.cat([torch.arange(b), torch.tensor(extra_owners, dtype=torch.long)])
    scale = torch.tensor(9.0, dtype=torch.float64, requires_grad=True)
    bias = torch.tensor(-4.0, dtype=torch.float64, requires_grad=True)
    return a, t_all, owners, scale, bias


def _run(loss_fn, rank: int | None, primary_only: bool):
    a, t, owner, scale, bias = _inputs(rank)
    if primary_only:
        b = a.shape[0]
        t = t[:b].detach().clone().requires_grad_()
        owner = owner[:b]
    loss = loss_fn(ContrastiveOutputs(a, t, owner, scale, logit_bias=bias))
    loss.backward()
    return loss.detach(), a.grad, t.grad, scale.grad, bias.grad


def _local_slices(rank: int, primary_only: bool):
    start = sum(SIZES[:rank])
    clips = slice(start, start + SIZES[rank])
    if primary_only:
        return clips, clips
    extra_start = sum(SIZES) + sum(EXTRA[:rank])
    return clips, torch.cat([torch.arange(start, start + SIZES[rank]),
                             torch.arange(extra_start, extra_start + EXTRA[rank])])


def _worker(rank: int, port: int) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD,
                            timeout=timedelta(seconds=30))
    try:
        # (name, distributed loss, single-process reference on the concatenated batch, primary captions only)
        cases = [
            ("global", GlobalInfoNCE(), GlobalInfoNCE(gather=False), True),
            ("global_local", GlobalInfoNCE(local_loss=True), GlobalInfoNCE(gather=False), True),
            ("siglip", SigLIPLoss(), SigLIPLoss(gather=False), True),
            ("multipositive", MultiPositiveInfoNCE(), MultiPositiveInfoNCE(gather=False), False),
        ]
        for name, loss_fn, ref_fn, primary_only in cases:
            loss, ga, gt, gs, gb = _run(loss_fn, rank, primary_only)
            ref_loss, ref_ga, ref_gt, ref_gs, ref_gb = _run(ref_fn, None, primary_only)
            mean_loss = loss.clone()
            dist.all_reduce(mean_loss)
            mean_loss /= WORLD
            torch.testing.assert_close(mean_loss, ref_loss, atol=1e-6, rtol=0, msg=f"{name}: loss")
            if name in ("global", "multipositive"):  # full loss: every rank returns the global value
                torch.testing.assert_close(loss, ref_loss, atol=1e-6, rtol=0, msg=f"{name}: rank loss")
            clips, captions = _local_slices(rank, primary_only)
            torch.testing.assert_close(ga, WORLD * ref_ga[clips], atol=1e-6, rtol=0, msg=f"{name}: audio grad")
            torch.testing.assert_close(gt, WORLD * ref_gt[captions], atol=1e-6, rtol=0, msg=f"{name}: text grad")
            for got, want, what in [(gs, ref_gs, "scale"), (gb, ref_gb, "bias")]:
                if want is None:
                    continue
                mean = got.clone()
                dist.all_reduce(mean)  # what DDP does with parameter gradients: average over ranks
                torch.testing.assert_close(mean / WORLD, want, atol=1e-6, rtol=0, msg=f"{name}: {what} grad")
        _check_captioning(rank)
    finally:
        dist.destroy_process_group()


def _caption_inputs(rank: int | None):
    """Decoder logits [n, L, V] per rank (rank=None: all rows) with unequal real-token counts per rank."""
    g = torch.Generator().manual_seed(99)
    lengths = torch.tensor([6, 2, 5, 3, 6, 4, 2])  # rank 0: rows 0-3 (16 tokens), rank 1: rows 4-6 (12)
    logits = torch.randn(7, 6, 5, generator=g, dtype=torch.float64)
    ids = torch.randint(0, 5, (7, 6), generator=g)
    mask = torch.arange(6)[None] < lengths[:, None]
    rows = slice(None) if rank is None else slice(sum(SIZES[:rank]), sum(SIZES[: rank + 1]))
    return logits[rows].clone().requires_grad_(), ids[rows], mask[rows], rows


def _check_captioning(rank: int) -> None:
    results = []
    for r, fn in ((rank, CaptioningLoss()), (None, CaptioningLoss(gather=False))):
        logits, ids, mask, rows = _caption_inputs(r)
        dummy = torch.zeros(ids.shape[0], DIM, dtype=torch.float64)
        loss = fn(ContrastiveOutputs(dummy, dummy, torch.arange(ids.shape[0]), torch.tensor(1.0), caption_logits=logits,
                                     caption_ids=ids, caption_mask=mask))
        loss.backward()
        results.append((loss.detach(), logits.grad, rows))
    (loss, grad, rows), (ref_loss, ref_grad, _) = results
    mean_loss = loss.clone()
    dist.all_reduce(mean_loss)
    torch.testing.assert_close(mean_loss / WORLD, ref_loss, atol=1e-9, rtol=0, msg="captioning: loss")
    torch.testing.assert_close(grad, WORLD * ref_grad[rows], atol=1e-9, rtol=0, msg="captioning: logits grad")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_gathered_losses_match_single_process():
    mp.spawn(_worker, args=(_free_port(),), nprocs=WORLD, join=True)


def test_reference_data_is_consistent():
    # The per-rank pieces concatenate to the whole batch used as the reference.
    a0, t0, *_ = _inputs(0)
    a1, t1, *_ = _inputs(1)
    a, t, owner, *_ = _inputs(None)
    torch.testing.assert_close(torch.cat([a0, a1]), a)
    torch.testing.assert_close(torch.cat([t0[:4], t1[:3]]), t[:7])
    assert owner[:7].tolist() == list(range(7)) and owner[7:].max() < 7
