"""Audio towers: Whisper variable length, HTSAT crops and determinism."""

from __future__ import annotations

import numpy as np
import torch

from clsp import CLSPConfig, CLSPModel


def test_whisper_batch_invariance_and_lengths():
    torch.manual_seed(0)
    model = CLSPModel(CLSPConfig.tiny("whisper")).eval()
    rng = np.random.default_rng(0)
    clips = [rng.normal(0, 0.1, n).astype(np.float32) for n in (16000 * 5, 16000 * 2 + 123, 16000 * 12)]
    together = model.encode_audio(clips)
    for i, clip in enumerate(clips):
        torch.testing.assert_close(model.encode_audio([clip])[0], together[i], atol=1e-5, rtol=0)


def test_whisper_not_padded_to_30s():
    model = CLSPModel(CLSPConfig.tiny("whisper")).eval()
    out = model.encode_audio([np.zeros(16000 * 5, np.float32) + 0.01], return_tokens=True)
    assert out.tokens.shape[1] == 250  # 5 s -> 500 mel frames -> 250 positions, not 1500


def test_htsat_long_clip_deterministic_in_eval():
    torch.manual_seed(0)
    model = CLSPModel(CLSPConfig.tiny("htsat")).eval()
    long = np.random.default_rng(0).normal(0, 0.1, 48000 * 14).astype(np.float32)
    a = model.encode_audio([long])
    b = model.encode_audio([long])
    torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_htsat_fusion_tower_runs_and_is_batch_independent():
    cfg = CLSPConfig.tiny("htsat").to_dict()
    cfg["audio"]["truncation"] = "fusion"
    torch.manual_seed(0)
    model = CLSPModel(CLSPConfig.from_dict(cfg)).eval()
    rng = np.random.default_rng(1)
    short = rng.normal(0, 0.1, 48000 * 4).astype(np.float32)
    long = rng.normal(0, 0.1, 48000 * 15).astype(np.float32)
    both = model.encode_audio([short, long])
    torch.testing.assert_close(model.encode_audio([short])[0], both[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(model.encode_audio([long])[0], both[1], atol=1e-5, rtol=0)
