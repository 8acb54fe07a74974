"""clsp's torch log-mel frontends vs transformers' feature extractors (CPU, one batch of 10 s clips)."""

from __future__ import annotations

import numpy as np
import torch

from benchmarks.common import interleaved, report

BATCH, SECONDS = 32, 10


def _clips(sample_rate: int) -> tuple[torch.Tensor, list[np.ndarray]]:
    g = torch.Generator().manual_seed(0)
    batch = 0.1 * torch.randn(BATCH, SECONDS * sample_rate, generator=g)
    return batch, [row.numpy() for row in batch]


def frontend() -> None:
    """CLAP (48 kHz, rand_trunc, 64 mels) and Whisper (16 kHz, 80 mels): clsp frontend vs extractor."""
    from transformers import ClapFeatureExtractor, WhisperFeatureExtractor

    from clsp.audio.frontend import ClapFrontend
    from clsp.audio.whisper_frontend import WhisperFrontend

    print(f"   {BATCH} x {SECONDS} s clips, CPU, torch threads {torch.get_num_threads()}")
    batch, arrays = _clips(48000)
    clap = ClapFrontend(truncation="rand_trunc").eval()
    clap_fe = ClapFeatureExtractor(frequency_min=50, frequency_max=14000, truncation="rand_trunc")
    with torch.inference_mode():
        ours, base = interleaved(lambda: clap(batch), lambda: clap_fe(arrays, sampling_rate=48000), repeats=3)
    report("clap rand_trunc", ours, base)

    batch, arrays = _clips(16000)
    whisper = WhisperFrontend()
    whisper_fe = WhisperFeatureExtractor()
    with torch.inference_mode():
        ours, base = interleaved(lambda: whisper(batch),
                                 lambda: whisper_fe(arrays, sampling_rate=16000, return_tensors="pt"), repeats=5)
    report("whisper (clsp pads to the batch, extractor to 30 s)", ours, base)


BENCHMARKS = {"frontend": frontend}
