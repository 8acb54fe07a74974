"""Captioning benchmarks: caption generation with transformers' KV cache vs without it.

    python tools/bench.py caption_generate
"""

from __future__ import annotations

import torch
from transformers import DynamicCache, EncoderDecoderCache

from benchmarks.common import interleaved
from clsp.config import CLSPConfig, DecoderConfig
from clsp.model import CLSPModel

CLIPS, SECONDS, TOKENS = 32, 10.0, 24
# A small random GPT-2 decoder (4 layers, 256 wide) on the tiny HTSAT tower, with the offline tokenizer.
DECODER = {"model_type": "gpt2", "vocab_size": 1000, "n_embd": 256, "n_layer": 4, "n_head": 4, "n_positions": 64}


def caption_generate() -> None:
    """CLSPModel.caption on 32 clips of 10 s, greedy and beam 3: captions/s with the KV cache vs without;
    and for beam 3, clsp's cache (self-attention reordered only) vs transformers' stock one."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":  # on a shared machine two threads' waits swing timings 10x; one thread stays steady
        torch.set_num_threads(1)
    config = CLSPConfig.tiny("htsat")
    config.decoder = DecoderConfig(tokenizer="clsp:tiny-bpe", hf_config=DECODER)
    torch.manual_seed(0)
    model = CLSPModel(config).eval().to(device)
    wave = torch.randn(CLIPS, int(SECONDS * config.audio.sample_rate)) * 0.1
    # Every caption runs to TOKENS tokens (a random model may stop at any step), so both arms do the same work.
    fixed = {"max_new_tokens": TOKENS, "min_new_tokens": TOKENS}

    def run(beams: int, **options) -> None:
        model.caption(wave, num_beams=beams, **fixed, **options)
        if device == "cuda":
            torch.cuda.synchronize()

    def rate(seconds: float) -> str:
        return f"{CLIPS / seconds:.1f} captions/s"

    where = f"on {device}, {CLIPS} x {SECONDS:g} s clips, {TOKENS} tokens"
    for beams in (1, 3):
        t_cache, t_plain = interleaved(lambda b=beams: run(b), lambda b=beams: run(b, use_cache=False), repeats=3)
        label = "greedy" if beams == 1 else f"beam {beams}"
        print(f"   {label} {where}: KV cache {rate(t_cache)}, without {rate(t_plain)}, ratio {t_plain / t_cache:.2f}x")
    t_clsp, t_stock = interleaved(lambda: run(3), lambda: run(3, cache=EncoderDecoderCache(DynamicCache(), DynamicCache())),
                                  repeats=3)
    print(f"   beam 3 {where}: clsp's cache {rate(t_clsp)}, transformers' (frames reordered per step) "
          f"{rate(t_stock)}, ratio {t_stock / t_clsp:.2f}x")


BENCHMARKS = {"caption_generate": caption_generate}
