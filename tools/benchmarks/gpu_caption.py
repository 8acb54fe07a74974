"""fusionaudio_caption shapes on one GPU: samples/s and peak memory of the training step for 100 steps.

    python tools/benchmarks/gpu_caption.py      # or: python tools/bench.py gpu_caption

HTSAT-base + RoBERTa-base (configs/model/htsat_base_roberta_gpt2.yaml's towers) + a GPT-2 small caption decoder
(12 layers, 768 wide, 50257 tokens, cross-attention over the audio head's frames), all randomly initialised
from their configs (nothing is downloaded); 10 s clips at 48 kHz, 256-token captions for the text tower and
for the decoder (the recipe's long captions), global InfoNCE + captioning (weight 2) as in the recipe. Each
step is the training module's own `contrastive_outputs` + losses in bf16 autocast, backward and a fused AdamW
step. Batch 96 (the recipe's per-GPU batch) and 64. Stops a batch size early (and says so) past its time
share, so the run stays under 90 s on an H200; without CUDA it says so and exits 0.
CLSP_GPU_CHECK_SMOKE=1 runs it on the CPU with tiny towers (its numbers mean nothing).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tools/, when run as a script

SMOKE = os.environ.get("CLSP_GPU_CHECK_SMOKE") == "1"
DEVICE = "cpu" if SMOKE else "cuda"
STEPS, WARMUP = (3, 1) if SMOKE else (100, 3)
BATCHES = (4, 2) if SMOKE else (96, 64)
BUDGET_S = 80.0  # both batch sizes, model building included
TOKENS, SECONDS, RATE = (16, 1.0, 48000) if SMOKE else (256, 10.0, 48000)
GPT2_SMALL = {"model_type": "gpt2", "vocab_size": 50257, "n_embd": 768, "n_layer": 12, "n_head": 12,
              "n_positions": 1024}
TINY_GPT2 = {"model_type": "gpt2", "vocab_size": 1000, "n_embd": 32, "n_layer": 1, "n_head": 2, "n_positions": 64}


def build_model():
    """The recipe's model, random: fusionaudio's towers + GPT-2 small from a GPT2Config (tiny in a smoke run)."""
    from clsp.config import CLSPConfig, DecoderConfig
    from clsp.model import CLSPModel

    if SMOKE:
        config = CLSPConfig.tiny("htsat")
    else:
        from benchmarks.towers import recipe_config

        config = recipe_config("fusionaudio", tokens=TOKENS)
    # The tiny offline tokenizer stands in for GPT-2's (ids are random here); the LM keeps GPT-2's vocabulary.
    config.decoder = DecoderConfig(tokenizer="clsp:tiny-bpe", max_length=TOKENS,
                                   hf_config=dict(TINY_GPT2 if SMOKE else GPT2_SMALL))
    torch.manual_seed(0)
    return CLSPModel(config).to(DEVICE).train()


def make_batch(clips: int, vocab: int):
    """A Batch of `clips` 10 s clips, one 256-token caption each for the text tower and for the decoder."""
    from clsp.data.batch import Batch

    g = torch.Generator().manual_seed(0)
    width = int(SECONDS * RATE)
    audio = 0.1 * torch.randn(clips, width, generator=g)
    lengths = torch.full((clips,), width)
    text_lengths = torch.randint(TOKENS // 2, TOKENS + 1, (clips,), generator=g)
    text_mask = (torch.arange(TOKENS) < text_lengths[:, None]).long()
    text_ids = torch.where(text_mask.bool(), torch.randint(3, 1000, (clips, TOKENS), generator=g), 1)
    dec_lengths = torch.randint(TOKENS // 2, TOKENS + 1, (clips,), generator=g)
    dec_lengths[0] = TOKENS
    dec_mask = (torch.arange(TOKENS) < dec_lengths[:, None]).long()
    dec_ids = torch.where(dec_mask.bool(), torch.randint(3, vocab, (clips, TOKENS), generator=g), 0)
    batch = Batch(audio, lengths, text_ids, text_mask, torch.arange(clips), caption_lengths=text_lengths.tolist(),
                  decoder_input_ids=dec_ids, decoder_attention_mask=dec_mask, decoder_lengths=dec_lengths.tolist())
    return batch.to(DEVICE)


def run(model, module, optimizer, batch, steps: int, deadline: float) -> tuple[int, float]:
    """(steps done, seconds) of full training steps on `batch` until `steps` or `deadline`."""
    from clsp import checks

    done, start = 0, time.perf_counter()
    while done < steps and time.perf_counter() < deadline:
        with torch.autocast(DEVICE, dtype=torch.bfloat16, enabled=not SMOKE), checks.disabled():
            total, _ = module.losses(module.contrastive_outputs(batch))
        total.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        done += 1
    if DEVICE == "cuda":
        torch.cuda.synchronize()
    return done, time.perf_counter() - start


def gpu_caption() -> None:
    if not torch.cuda.is_available() and not SMOKE:
        print("   gpu_caption needs CUDA: skipped")
        return
    from clsp.losses import CaptioningLoss, GlobalInfoNCE, LossSuite
    from clsp.training.module import CLSPTrainingModule

    start = time.monotonic()
    model = build_model()
    losses = LossSuite({"global": (GlobalInfoNCE(), 1.0), "caption": (CaptioningLoss(), 2.0)})
    module = CLSPTrainingModule(model, losses)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=DEVICE == "cuda")
    device = torch.cuda.get_device_name() if DEVICE == "cuda" else "CPU (smoke run: the numbers mean nothing)"
    vocab = model.decoder.lm.config.vocab_size
    print(f"   {device}, torch {torch.__version__}: HTSAT-base + RoBERTa-base + GPT-2 small decoder "
          f"({sum(p.numel() for p in model.parameters()) / 1e6:.0f} M parameters), {SECONDS:g} s clips, "
          f"{TOKENS}-token captions, global + captioning, bf16 autocast, fused AdamW", flush=True)
    rows = []
    for i, clips in enumerate(BATCHES):
        deadline = start + BUDGET_S * (i + 1) / len(BATCHES)
        row = f"| fusionaudio_caption, batch {clips} |"
        try:
            batch = make_batch(clips, vocab)
            if DEVICE == "cuda":
                torch.cuda.reset_peak_memory_stats()
            run(model, module, optimizer, batch, WARMUP, float("inf"))
            done, seconds = run(model, module, optimizer, batch, STEPS, deadline)
            memory = torch.cuda.max_memory_allocated() / 2**30 if DEVICE == "cuda" else 0.0
            note = "" if done == STEPS else f"stopped at its time share after {done} of {STEPS} steps"
            print(f"   batch {clips}: {done * clips / seconds:.1f} samples/s ({seconds / done:.3f} s/step over {done} "
                  f"steps), peak memory {memory:.1f} GiB {note}", flush=True)
            row += f" {done * clips / seconds:.0f} | {memory:.1f} | {note} |"
        except torch.cuda.OutOfMemoryError:
            print(f"   batch {clips}: out of memory", flush=True)
            row += " | | out of memory |"
            optimizer.zero_grad(set_to_none=True)
            if DEVICE == "cuda":
                torch.cuda.empty_cache()
        rows.append(row)
    print(f"\n{device}, {time.monotonic() - start:.0f} s in all\n\n| run | samples/s | peak memory (GiB) | note |\n"
          "|---|---:|---:|---|\n" + "\n".join(rows), flush=True)


BENCHMARKS = {"gpu_caption": gpu_caption}

if __name__ == "__main__":
    gpu_caption()
