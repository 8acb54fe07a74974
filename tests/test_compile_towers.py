"""`CLSPModel.compile_towers`: a bounded number of graphs over batches of varied size and length, and
the results of the eager towers.

Compiled with aot_eager: dynamo and autograd tracing as in real compiles, without inductor's code
generation, which would take minutes on a CPU. Graphs are dynamo's count of the graphs it built."""

from __future__ import annotations

import pytest
import torch
import torch._dynamo
from torch._dynamo.utils import counters

from clsp import checks
from clsp.config import CLSPConfig
from clsp.model import CLSPModel


def _batches(n: int, sample_rate: int, max_seconds: float, seed: int = 0):
    """`n` (waveforms, lengths, ids, mask) of 2-6 clips, 0.5 s to `max_seconds`, and 4-60 tokens."""
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        b = int(torch.randint(2, 7, (), generator=g))
        width = int(sample_rate * (0.5 + float(torch.rand((), generator=g)) * (max_seconds - 0.5)))
        lengths = torch.randint(width // 2, width + 1, (b,), generator=g)
        lengths[0] = width
        wave = 0.1 * torch.randn(b, width, generator=g) * (torch.arange(width) < lengths[:, None])
        tokens = int(torch.randint(4, 61, (), generator=g))
        caption_lengths = torch.randint(2, tokens + 1, (b,), generator=g)
        caption_lengths[0] = tokens
        mask = (torch.arange(tokens) < caption_lengths[:, None]).long()
        ids = torch.where(mask.bool(), torch.randint(3, 900, (b, tokens), generator=g), 1)
        yield wave, lengths, ids, mask


def _step(model: CLSPModel, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    wave, lengths, ids, mask = batch
    with checks.disabled():  # as in the training step
        audio = model.embed_audio(wave, lengths).embeds
        text = model.embed_text(ids, mask).embeds
    (audio @ text.T).logsumexp(1).sum().backward()
    return audio.detach(), text.detach(), model.audio_head[0].weight.grad


def _graphs() -> int:
    return int(counters["stats"]["unique_graphs"])


@pytest.mark.parametrize("tower, seconds", [("whisper", 8.0), ("htsat", 10.0)])
def test_twenty_varied_batches_compile_one_graph_per_tower(tower, seconds):
    torch._dynamo.reset()
    counters.clear()
    model = CLSPModel(CLSPConfig.tiny(tower)).train()
    model.compile_towers(backend="aot_eager")
    batches = list(_batches(20, model.sample_rate, seconds))
    assert len({(b[0].shape, b[2].shape) for b in batches}) == 20  # every batch a new (size, length, tokens)
    for batch in batches:
        _step(model, batch)
        model.zero_grad()
    assert _graphs() == 2, f"{_graphs()} graphs for 2 towers over 20 shapes"  # no graph break, no recompile
    wave, lengths, ids, mask = batches[0]
    _step(model, (wave[:1], lengths[:1], ids[:1], mask[:1]))  # batch size 1: torch specialises it
    assert _graphs() == 4


@pytest.mark.parametrize("tower", ["whisper", "htsat"])
def test_compiled_towers_equal_eager(tower):
    torch._dynamo.reset()
    torch.manual_seed(0)
    eager = CLSPModel(CLSPConfig.tiny(tower)).eval()  # eval: the same (centre) crops on both sides
    compiled = CLSPModel(CLSPConfig.tiny(tower)).eval()
    compiled.load_state_dict(eager.state_dict())
    compiled.compile_towers(backend="aot_eager")
    for batch in _batches(3, eager.sample_rate, 6.0, seed=2):
        for got, want in zip(_step(compiled, batch), _step(eager, batch), strict=True):
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        compiled.zero_grad()
        eager.zero_grad()
