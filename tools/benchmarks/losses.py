"""Loss benchmarks: chunked TokenInfoNCE vs the naive full-tensor version, and GlobalInfoNCE.

    python tools/bench.py token_infonce global_infonce

Peak memory is counted, not sampled: the peak bytes of live tensor storage during one
forward+backward (benchmarks.common.LiveTensorBytes: a dispatch mode following every new storage
until it is freed on the CPU, torch.cuda.max_memory_allocated on CUDA), inputs excluded. Process
RSS growth, used before, read 2.8x on a loaded machine and 10.9x on a quiet one for the same code.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from benchmarks.common import LiveTensorBytes, interleaved, report

B, TA, TT, D = 256, 32, 77, 512


def _token_inputs(b: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    a = F.normalize(torch.randn(b, TA, D, generator=g), dim=-1).requires_grad_()
    t = F.normalize(torch.randn(b, TT, D, generator=g), dim=-1).requires_grad_()
    # Realistic padding: variable numbers of valid frames and tokens.
    am = torch.arange(TA)[None] < torch.randint(TA // 2, TA + 1, (b,), generator=g)[:, None]
    tm = torch.arange(TT)[None] < torch.randint(8, TT + 1, (b,), generator=g)[:, None]
    return a, am, t, tm


def _naive_token_loss(a, am, t, tm, scale: float = 10.0):
    """Baseline: late interaction over the full [B, B, Ta, Tt] tensor, autograd all the way."""
    sim = torch.einsum("ifd,jtd->ijft", a, t)
    s_t2a = sim.masked_fill(~am[:, None, :, None], -math.inf).amax(2)
    s_t2a = torch.where(tm[None], s_t2a, 0).sum(-1) / tm.sum(-1)[None]
    s_a2t = sim.masked_fill(~tm[None, :, None, :], -math.inf).amax(3)
    s_a2t = torch.where(am[:, None], s_a2t, 0).sum(-1) / am.sum(-1)[:, None]
    labels = torch.arange(a.shape[0], device=a.device)
    return (F.cross_entropy(scale * s_t2a.T, labels) + F.cross_entropy(scale * s_a2t, labels)) / 2


def _clsp_token_loss(a, am, t, tm, scale: float = 10.0, chunk: int = 16):
    from clsp.losses import ContrastiveOutputs, TokenInfoNCE

    out = ContrastiveOutputs(
        audio=a[:, 0], text=t[:, 0], caption_to_clip=torch.arange(a.shape[0], device=a.device),
        scale=torch.tensor(scale, device=a.device),
        audio_tokens=a, audio_mask=am, text_tokens=t, text_mask=tm,
    )
    return TokenInfoNCE(chunk_size=chunk)(out)


def _peak_bytes(fn, a, am, t, tm) -> int:
    """Counted peak live tensor bytes of one forward+backward of `fn` (inputs already allocated)."""
    with LiveTensorBytes(a.device.type) as live:
        fn(a, am, t, tm).backward()
    a.grad = t.grad = None
    return live.peak


def token_infonce() -> None:
    """TokenInfoNCE forward+backward at B=256, Ta=32, Tt=77, D=512: chunked (clsp) vs naive."""
    # The naive [B, B, Ta, Tt] float32 block is 0.6 GiB at B=256 and autograd keeps several such
    # tensors (masked copies, amax gradients): a few GiB, which fits in 24 GiB, so both run at B=256.
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"   B={B} Ta={TA} Tt={TT} D={D}, chunk_size=16, float32, {device}"
          + (f" threads={torch.get_num_threads()}" if device == "cpu" else f" ({torch.cuda.get_device_name()})"))
    a, am, t, tm = (x.to(device).detach().requires_grad_(x.requires_grad) for x in _token_inputs(B))
    mem_clsp = _peak_bytes(_clsp_token_loss, a, am, t, tm)
    mem_naive = _peak_bytes(_naive_token_loss, a, am, t, tm)
    print(f"   peak live tensor bytes (counted): clsp {mem_clsp / 2**20:.0f} MiB  naive {mem_naive / 2**20:.0f} MiB  "
          f"ratio {mem_naive / max(mem_clsp, 1):.1f}x lower (target >= 8x)")

    def run(fn):
        def step():
            a.grad = t.grad = None
            fn(a, am, t, tm).backward()

        return step

    def synced(fn):
        def step():
            fn()
            if device == "cuda":
                torch.cuda.synchronize()

        return step

    t_clsp, t_naive = interleaved(synced(run(_clsp_token_loss)), synced(run(_naive_token_loss)), repeats=2)
    report("fwd+bwd time", t_clsp, t_naive)
    print(f"   time clsp/naive = {t_clsp / t_naive:.2f} (target <= 1.5)")


def global_infonce() -> None:
    """GlobalInfoNCE forward+backward at B=256, D=512 vs a plain CLIP-loss implementation."""
    from clsp.losses import ContrastiveOutputs, GlobalInfoNCE

    g = torch.Generator().manual_seed(0)
    a = F.normalize(torch.randn(256, D, generator=g), dim=-1).requires_grad_()
    t = F.normalize(torch.randn(256, D, generator=g), dim=-1).requires_grad_()
    scale = torch.tensor(1 / 0.07, requires_grad=True)
    loss_fn = GlobalInfoNCE()
    out = ContrastiveOutputs(a, t, torch.arange(256), scale)

    def clsp_step():
        loss_fn(out).backward()

    def baseline_step():
        logits = scale * a @ t.T
        labels = torch.arange(256)
        ((F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2).backward()

    t_clsp, t_base = interleaved(clsp_step, baseline_step, repeats=50)
    report("B=256 D=512 fwd+bwd", t_clsp, t_base)
    print(f"   clsp {t_clsp * 1e3:.2f} ms per step (the lead adds the fraction of a training step)")


BENCHMARKS = {"token_infonce": token_infonce, "global_infonce": global_infonce}
