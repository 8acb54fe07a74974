"""Loss benchmarks: chunked TokenInfoNCE vs the naive full-tensor version, and GlobalInfoNCE.

    python tools/bench.py token_infonce global_infonce

Peak memory is measured as resident-set growth in a fresh subprocess per variant: torch's CPU
tensors are invisible to tracemalloc, and RSS sees every byte the allocator really took. The
subprocess fixes glibc's mmap threshold (MALLOC_MMAP_THRESHOLD_) so large freed blocks go back to
the OS instead of being cached, which makes peak RSS track peak live tensor memory; the figure is
ru_maxrss after one forward+backward minus the RSS just before it (inputs already allocated).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.common import interleaved, report

ROOT = Path(__file__).resolve().parents[2]
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
    labels = torch.arange(a.shape[0])
    return (F.cross_entropy(scale * s_t2a.T, labels) + F.cross_entropy(scale * s_a2t, labels)) / 2


def _clsp_token_loss(a, am, t, tm, scale: float = 10.0, chunk: int = 16):
    from clsp.losses import ContrastiveOutputs, TokenInfoNCE

    out = ContrastiveOutputs(
        audio=a[:, 0], text=t[:, 0], caption_to_clip=torch.arange(a.shape[0]), logit_scale=torch.tensor(scale),
        audio_tokens=a, audio_mask=am, text_tokens=t, text_mask=tm,
    )
    return TokenInfoNCE(chunk_size=chunk)(out)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _measure_peak(variant: str, b: int) -> None:
    """Child process: print the peak extra bytes of one forward+backward."""
    import resource

    a, am, t, tm = _token_inputs(b)
    fn = _clsp_token_loss if variant == "clsp" else _naive_token_loss
    before = _rss_bytes()
    fn(a, am, t, tm).backward()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    print(max(peak - before, 0))


def _peak_in_subprocess(variant: str, b: int) -> int:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072", "PYTHONPATH": f"{ROOT}:{ROOT / 'tools'}"}
    code = f"from benchmarks.losses import _measure_peak; _measure_peak({variant!r}, {b})"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"peak-memory subprocess for {variant} failed:\n{result.stderr[-2000:]}")
    return int(result.stdout.strip().splitlines()[-1])


def token_infonce() -> None:
    """TokenInfoNCE forward+backward at B=256, Ta=32, Tt=77, D=512: chunked (clsp) vs naive."""
    # The naive [B, B, Ta, Tt] float32 block is 0.6 GiB at B=256 and autograd keeps several such
    # tensors (masked copies, amax gradients): a few GiB, which fits in 24 GiB, so both run at B=256.
    print(f"   B={B} Ta={TA} Tt={TT} D={D}, chunk_size=16, float32, CPU threads={torch.get_num_threads()}")
    mem_clsp = _peak_in_subprocess("clsp", B)
    mem_naive = _peak_in_subprocess("naive", B)
    print(f"   peak extra memory: clsp {mem_clsp / 2**20:.0f} MiB  naive {mem_naive / 2**20:.0f} MiB  "
          f"ratio {mem_naive / max(mem_clsp, 1):.1f}x lower (target >= 8x)")

    a, am, t, tm = _token_inputs(B)

    def run(fn):
        def step():
            a.grad = t.grad = None
            fn(a, am, t, tm).backward()

        return step

    t_clsp, t_naive = interleaved(run(_clsp_token_loss), run(_naive_token_loss), repeats=2)
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
