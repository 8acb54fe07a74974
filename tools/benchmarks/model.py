"""Model benchmarks: the Whisper tower's variable-length input vs stock 30 s padding.

    python tools/bench.py whisper_varlen
"""

from __future__ import annotations

import torch

from benchmarks.common import interleaved, report
from clsp.config import CLSPConfig
from clsp.model import CLSPModel

# openai/whisper-base's encoder geometry, randomly initialised (no download needed for timing).
WHISPER_BASE = {"d_model": 512, "encoder_layers": 6, "encoder_attention_heads": 8, "encoder_ffn_dim": 2048,
                "num_mel_bins": 80, "max_source_positions": 1500}


def whisper_varlen() -> None:
    """Whisper-base encoder, 16 clips of 5 s: clsp's batch-padded input vs every clip padded to 30 s."""
    cfg = CLSPConfig.tiny("whisper").to_dict()
    cfg["audio"]["hf_config"] = WHISPER_BASE
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = CLSPModel(CLSPConfig.from_dict(cfg)).eval().to(device)
    tower = model.audio
    wave = (torch.randn(16, 16000 * 5) * 0.1).to(device)
    lengths = torch.full((16,), 16000 * 5, device=device)

    def clsp_varlen():
        with torch.no_grad():
            tower(wave, lengths)
        if device == "cuda":
            torch.cuda.synchronize()

    def padded_30s():
        # Stock transformers path: features padded to 3000 frames, the whole encoder over 1500 positions.
        with torch.no_grad():
            feats, _ = tower.frontend(torch.nn.functional.pad(wave, (0, 16000 * 25)), lengths + 16000 * 25)
            tower.encoder(feats[..., :3000])
        if device == "cuda":
            torch.cuda.synchronize()

    t_clsp, t_pad = interleaved(clsp_varlen, padded_30s, repeats=3)
    report(f"whisper-base on {device}, 16 x 5 s clips (variable length vs padded to 30 s)", t_clsp, t_pad)


BENCHMARKS = {"whisper_varlen": whisper_varlen}
