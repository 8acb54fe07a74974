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


def test_a_fitted_quadratic_gives_every_length_from_eight_counts():
    counter = FlopCounter(_eager("whisper"))
    for seconds in (0.7, 2.5, 3.37, 7.3, 30.0):  # within 1/positions: Whisper's stride-2 conv rounds them up
        assert counter.audio(seconds) == pytest.approx(counter.audio_counts(seconds)[1], rel=5e-3)
    for tokens in (5, 24, 77):
        assert counter.text(tokens) == pytest.approx(counter.text_counts(tokens)[1], rel=1e-3)
    counted = len(counter._audio) + len(counter._text)
    assert counter.audio(60.0) == pytest.approx(counter.audio_counts(30.0)[1], rel=1e-3)  # the window caps the audio
    counter.audio(11.1), counter.text(33)
    assert len(counter._audio) + len(counter._text) == counted  # fitted: no new count
    assert counter.step(4, 2.0, 6, 16) == 4 * counter.audio(2.0) + 6 * counter.text(16)
    assert counter._fitted("cubic", lambda x: x ** 3, 5.0, 10.0) == 125.0  # not quadratic: counted as is


def test_peak_table():
    assert peak_tflops("NVIDIA H200") == 989.0
    assert peak_tflops("NVIDIA H100 PCIe") == 756.0  # the longer name wins over "H100"
    assert peak_tflops("NVIDIA GH200 480GB") == 989.0
    assert peak_tflops("Some CPU") is None
