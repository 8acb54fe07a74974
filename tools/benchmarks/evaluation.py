"""Chunked retrieval metrics vs one dense similarity matrix: time and peak memory.

The target scale is 20k clips x 100k captions (5 per clip) of random 512-d embeddings. The
dense matrix there is 100k x 20k fp32 = 8 GB (plus a 2 GB comparison mask), too much next to
other work on a 24 GiB machine, so the dense baseline is *measured* at 1/16 of the size
(5k x 25k) side by side with the chunked code, and only *extrapolated* (clearly labelled) to
the full size, where the chunked code is measured for real. The dense baseline is the same
counting algorithm in a single block (chunk_size = all rows), so the ratio isolates chunking.
With CUDA available, everything runs on the GPU and peak memory is torch's allocator peak;
on CPU it is the peak RSS growth (VmHWM, reset before the call) of a fresh subprocess.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks.common import interleaved, report

_REPO = Path(__file__).resolve().parents[2]

# Runs in a fresh interpreter so that peak RSS belongs to one measurement only.
_CHILD = r"""
import json, sys, time, torch
from clsp.evaluation.metrics import retrieval_metrics
n, per, d, chunk, device = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
g = torch.Generator().manual_seed(0)
audio = torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=-1).to(device)
c2c = torch.arange(n).repeat_interleave(per).to(device)
text = torch.nn.functional.normalize(audio[c2c] + torch.randn(n * per, d, generator=g).to(device), dim=-1)
chunk = None if chunk == "auto" else (n * per if chunk == "dense" else int(chunk))
def status(field):
    line = next(l for l in open("/proc/self/status") if l.startswith(field + ":"))
    return int(line.split()[1]) * 1024
if device == "cuda":
    torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats(); base = torch.cuda.memory_allocated()
else:
    open("/proc/self/clear_refs", "w").write("5")  # reset the peak-RSS mark (VmHWM) to the current RSS
    base = status("VmRSS")
start = time.perf_counter()
m = retrieval_metrics(audio, text, c2c, chunk_size=chunk)
if device == "cuda":
    torch.cuda.synchronize(); peak = torch.cuda.max_memory_allocated() - base
else:
    peak = status("VmHWM") - base
print(json.dumps({"seconds": time.perf_counter() - start, "peak_bytes": peak, "metrics": m}))
"""


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _child(n: int, per: int, d: int, chunk: str, device: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(n), str(per), str(d), chunk, device],
        capture_output=True, text=True, cwd=_REPO, check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _gb(b: float) -> str:
    return f"{b / 2**30:.2f} GiB"


def retrieval_metrics_chunked_vs_dense() -> None:
    import torch

    from clsp.evaluation.metrics import retrieval_metrics

    device, d, per = _device(), 512, 5
    small_n, full_n = 5_000, 20_000
    print(f"   device {device}; {per} captions per clip, {d}-d fp32 embeddings")

    # 1) measured side by side at 5k clips x 25k captions.
    g = torch.Generator().manual_seed(0)
    audio = torch.nn.functional.normalize(torch.randn(small_n, d, generator=g), dim=-1).to(device)
    c2c = torch.arange(small_n).repeat_interleave(per).to(device)
    text = torch.nn.functional.normalize(audio[c2c] + torch.randn(small_n * per, d, generator=g).to(device), dim=-1)
    results = {}

    def chunked():
        results["chunked"] = retrieval_metrics(audio, text, c2c)
        if device == "cuda":
            torch.cuda.synchronize()

    def dense():
        results["dense"] = retrieval_metrics(audio, text, c2c, chunk_size=small_n * per)
        if device == "cuda":
            torch.cuda.synchronize()

    t_chunk, t_dense = interleaved(chunked, dense, repeats=3)
    assert results["chunked"] == results["dense"], "chunked and dense metrics differ"
    report(f"time, {small_n} x {small_n * per} (measured)", t_chunk, t_dense)
    mem_chunk = _child(small_n, per, d, "auto", device)["peak_bytes"]
    mem_dense = _child(small_n, per, d, "dense", device)["peak_bytes"]
    print(f"   peak memory, {small_n} x {small_n * per} (measured): clsp {_gb(mem_chunk)}  "
          f"dense {_gb(mem_dense)}  ratio {mem_dense / max(mem_chunk, 1):.1f}x")

    # 2) the target scale: chunked measured; dense measured only on a GPU with room for it, else
    #    extrapolated (x16 elements) and labelled so.
    full = _child(full_n, per, d, "auto", device)
    scale = (full_n / small_n) ** 2
    dense_bytes = full_n * full_n * per * (4 + 1)  # fp32 similarities + bool comparison mask
    print(f"   {full_n} x {full_n * per} chunked (measured): {full['seconds']:.2f}s, peak {_gb(full['peak_bytes'])}; "
          f"t2a/R@1 {full['metrics']['t2a/R@1']:.2f}")
    if device == "cuda" and torch.cuda.mem_get_info()[0] > 2 * dense_bytes:
        dense_full = _child(full_n, per, d, "dense", device)
        assert dense_full["metrics"] == full["metrics"], "chunked and dense metrics differ"
        report(f"time, {full_n} x {full_n * per} (measured, one run each)", full["seconds"], dense_full["seconds"])
        print(f"   peak memory, {full_n} x {full_n * per} (measured): clsp {_gb(full['peak_bytes'])}  "
              f"dense {_gb(dense_full['peak_bytes'])}  ratio {dense_full['peak_bytes'] / max(full['peak_bytes'], 1):.1f}x")
    else:
        print(f"   {full_n} x {full_n * per} dense (EXTRAPOLATED, not run): ~{t_dense * scale:.1f}s, "
              f">= {_gb(dense_bytes)} (matrix + mask) -> memory ratio ~{dense_bytes / max(full['peak_bytes'], 1):.0f}x")


BENCHMARKS = {"retrieval_metrics": retrieval_metrics_chunked_vs_dense}
