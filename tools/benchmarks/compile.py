"""A training step of the tiny Whisper + RoBERTa pair, eager vs `CLSPModel.compile_towers()` (inductor),
after warm-up, on batches of varied size and length (as duration buckets give).

    python tools/bench.py compile

Warm-up compiles (minutes on a CPU) on batches of other shapes than the timed ones, so the timing also
shows that new lengths reuse the graphs: the number of graphs is printed.
"""

from __future__ import annotations

import time

import torch
from torch._dynamo.utils import counters

from benchmarks.common import interleaved, report
from clsp import checks
from clsp.config import CLSPConfig
from clsp.losses import ContrastiveOutputs, GlobalInfoNCE
from clsp.model import CLSPModel


def _batches(n: int, sample_rate: int, device: str, seed: int):
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        clips, width, tokens = int(torch.randint(6, 11, (), generator=g)), int(sample_rate * (
            2 + 6 * float(torch.rand((), generator=g)))), int(torch.randint(12, 40, (), generator=g))
        lengths = torch.randint(width // 2, width + 1, (clips,), generator=g)
        wave = 0.1 * torch.randn(clips, width, generator=g) * (torch.arange(width) < lengths[:, None])
        ids = torch.randint(3, 900, (clips, tokens), generator=g)
        yield tuple(t.to(device) for t in (wave, lengths, ids, torch.ones_like(ids)))


def compile() -> None:  # noqa: A001 (the benchmark's name)
    """Tiny-model training step, eager vs compiled (after warm-up)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    models = {"eager": CLSPModel(CLSPConfig.tiny("whisper")).to(device).train()}
    models["compiled"] = CLSPModel(CLSPConfig.tiny("whisper")).to(device).train()
    models["compiled"].load_state_dict(models["eager"].state_dict())
    loss = GlobalInfoNCE()
    optimizers = {k: torch.optim.AdamW(m.parameters(), lr=1e-4, foreach=True) for k, m in models.items()}
    torch._dynamo.reset()
    counters.clear()
    models["compiled"].compile_towers()

    def step(kind: str, batch) -> None:
        model, wave, lengths, ids, mask = models[kind], *batch
        with checks.disabled():
            audio, text = model.embed_audio(wave, lengths).embeds, model.embed_text(ids, mask).embeds
            loss(ContrastiveOutputs(audio, text, torch.arange(len(audio), device=device), model.scale())).backward()
        optimizers[kind].step()
        optimizers[kind].zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()

    start = time.perf_counter()
    for batch in _batches(2, 16000, device, seed=0):
        step("compiled", batch)
    warmup = time.perf_counter() - start
    timed = list(_batches(4, 16000, device, seed=1))

    def run(kind: str):
        return lambda: [step(kind, batch) for batch in timed]

    compiled_s, eager_s = interleaved(run("compiled"), run("eager"), repeats=3)
    report(f"tiny whisper + roberta step on {device}, 4 batches of new shapes (compiled vs eager)", compiled_s, eager_s)
    print(f"   warm-up (compiling) {warmup:.0f}s; {counters['stats']['unique_graphs']} graphs for 2 towers over "
          "6 batch shapes")


BENCHMARKS = {"compile": compile}
