"""FLOPs per sample counted on a meta twin equal FLOPs counted on the real model, and the peak table."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from clsp import checks
from clsp.config import CLSPConfig
from clsp.flops import FlopCounter, count_flops, peak_tflops
from clsp.model import CLSPModel


def _eager(tower: str) -> CLSPModel:
    # Eager attention on the real model: FlopCounterMode has no formula for torch's CPU flash kernel.
    cfg = CLSPConfig.tiny(tower).to_dict()
    for side in ("audio", "text"):
        cfg[side]["attn_implementation"] = "eager"
    return CLSPModel(CLSPConfig.from_dict(cfg)).train()


def _real(run) -> tuple[float, float]:
    """(forward, forward + backward) FLOPs of `run()` on the real model."""
    with checks.disabled():
        with FlopCounterMode(display=False) as forward:
            out = run()
        with FlopCounterMode(display=False) as backward:
            out.sum().backward()
    return forward.get_total_flops(), forward.get_total_flops() + backward.get_total_flops()


@pytest.mark.parametrize("tower", ["whisper", "htsat"])
def test_twin_counts_equal_the_real_model_per_sample(tower):
    model = _eager(tower)
    flops = count_flops(model, 3.0, 20)
    assert all(p.grad is None for p in model.parameters())  # the real model was never run
    wave, lengths = torch.zeros(3, 3 * model.sample_rate), torch.full((3,), 3 * model.sample_rate)
    ids, mask = torch.zeros(3, 20, dtype=torch.long), torch.ones(3, 20, dtype=torch.long)
    audio = _real(lambda: model.embed_audio(wave, lengths).embeds)
    text = _real(lambda: model.embed_text(ids, mask).embeds)
    # Three samples cost three times one (the towers treat samples independently; HTSAT's BatchNorm aside).
    assert flops.audio_forward * 3 == pytest.approx(audio[0], rel=1e-3)
    assert flops.audio * 3 == pytest.approx(audio[1], rel=1e-3)
    assert (flops.text_forward * 3, flops.text * 3) == pytest.approx(text, rel=1e-6)
    assert 2.2 < flops.total / flops.forward <= 3  # backward ~ 2 x forward, less the input layers' input gradients


def test_counts_are_cached_and_interpolated_between_grid_points():
    counter = FlopCounter(_eager("whisper"), audio_grid_s=1.0, text_grid=16)
    at_two, at_three = counter.audio(2.0), counter.audio(3.0)
    assert at_two == counter.exact_audio(2.0) and len(counter._audio) == 2  # grid points, each counted once
    between = counter.audio(2.5)
    assert len(counter._audio) == 2 and at_two < between < at_three
    assert between == pytest.approx(counter.exact_audio(2.5), rel=0.01)  # exact vs interpolated
    assert counter.audio(60.0) == counter.exact_audio(counter.max_seconds)  # the window caps the audio
    assert counter.text(24) == pytest.approx(counter.exact_text(24), rel=0.01)
    assert counter.step(4, 2.0, 6, 16) == 4 * at_two + 6 * counter.exact_text(16)


def test_peak_table():
    assert peak_tflops("NVIDIA H200") == 989.0
    assert peak_tflops("NVIDIA H100 PCIe") == 756.0  # the longer name wins over "H100"
    assert peak_tflops("NVIDIA GH200 480GB") == 989.0
    assert peak_tflops("Some CPU") is None
