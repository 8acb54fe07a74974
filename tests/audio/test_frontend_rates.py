"""The HTSAT frontend at the AudioSet HTSAT / WavCaps setting (32 kHz, hop 320, zero-pad) equals
transformers' ClapFeatureExtractor configured the same way."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clsp.audio.frontend import ClapFrontend


@pytest.mark.parametrize("padding", ["pad", "repeatpad"])
def test_clap_frontend_at_32k_hop_320(padding):
    from transformers import ClapFeatureExtractor

    fe = ClapFeatureExtractor(sampling_rate=32000, hop_length=320, fft_window_size=1024, feature_size=64,
                              frequency_min=50, frequency_max=14000, max_length_s=10, padding=padding,
                              truncation="rand_trunc")
    frontend = ClapFrontend(sample_rate=32000, hop_length=320, padding=padding, stft_dtype=torch.float64).eval()
    rng = np.random.default_rng(0)
    clips = [rng.normal(0, 0.1, n).astype(np.float32) for n in (32000 * 3, 320000)]
    batch = torch.nn.utils.rnn.pad_sequence([torch.from_numpy(c) for c in clips], batch_first=True)
    ours, _ = frontend(batch, torch.tensor([len(c) for c in clips]))
    assert ours.shape == (2, 1, 1001, 64)
    for i, clip in enumerate(clips):
        ref = torch.from_numpy(fe(clip, sampling_rate=32000, return_tensors="np")["input_features"][0]).float()
        torch.testing.assert_close(ours[i], ref, atol=1e-3, rtol=0)
