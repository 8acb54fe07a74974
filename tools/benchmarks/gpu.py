"""GPU-only benchmarks (tools/gpu_check.sh runs them; on a machine without CUDA they say so and return).

    python tools/bench.py gpu_step gpu_frontend

`gpu_step`: one full-size FusionAudio training step (HTSAT-base + RoBERTa-base geometry, random
weights so nothing is downloaded; global + token-level + multi-positive losses, 256-token captions)
in bf16 autocast with AdamW: samples/s, and model FLOPs utilisation (FLOPs of the step counted by
torch's FlopCounterMode, over the device's dense bf16 peak: CLSP_BF16_PEAK_TFLOPS, else a table of
known devices). Then one step under torch.cuda.set_sync_debug_mode("error"), which raises on any
host-device synchronisation in the step's forward, losses and backward.
`gpu_frontend`: clsp's batched log-mel frontends on the GPU vs the transformers extractors (CPU numpy).
"""

from __future__ import annotations

import os
import time

import torch

from clsp import checks

# Dense bf16 peak (no sparsity), TFLOP/s, by a substring of torch.cuda.get_device_name().
BF16_PEAK = {"H200": 989.0, "H100": 989.0, "GH200": 989.0, "B200": 2250.0, "A100": 312.0, "L40S": 362.0,
             "A10G": 70.0, "L4": 121.0, "RTX 4090": 165.0, "A6000": 155.0}
BATCH, CAPTION_TOKENS = 96, 256


def _peak_tflops() -> float | None:
    if os.environ.get("CLSP_BF16_PEAK_TFLOPS"):
        return float(os.environ["CLSP_BF16_PEAK_TFLOPS"])
    name = torch.cuda.get_device_name()
    return next((v for k, v in BF16_PEAK.items() if k in name), None)


def _fusionaudio_model():
    from clsp.config import CLSPConfig
    from clsp.model import CLSPModel

    cfg = CLSPConfig.tiny("htsat").to_dict()
    cfg["audio"]["hf_config"] = {"patch_embeds_hidden_size": 128, "depths": [2, 2, 12, 2],
                                 "num_attention_heads": [4, 8, 16, 32], "hidden_size": 1024, "window_size": 8,
                                 "spec_size": 256}
    cfg["text"].update(max_length=CAPTION_TOKENS, pooling="pooler", hf_config={
        "model_type": "roberta", "vocab_size": 50265, "hidden_size": 768, "num_hidden_layers": 12,
        "num_attention_heads": 12, "intermediate_size": 3072, "max_position_embeddings": 514, "pad_token_id": 1,
        "bos_token_id": 0, "eos_token_id": 2, "type_vocab_size": 1})
    cfg["head"]["dim"] = 512
    return CLSPModel(CLSPConfig.from_dict(cfg))


def _batch(device):
    from clsp.data.batch import Batch

    g = torch.Generator().manual_seed(0)
    b, c = BATCH, BATCH + BATCH // 2
    lengths = torch.randint(48000 * 4, 48000 * 10 + 1, (b,), generator=g)
    audio = 0.1 * torch.randn(b, 48000 * 10, generator=g) * (torch.arange(48000 * 10)[None] < lengths[:, None])
    tok_len = torch.randint(30, CAPTION_TOKENS + 1, (c,), generator=g)
    ids = torch.randint(3, 1000, (c, CAPTION_TOKENS), generator=g)
    mask = (torch.arange(CAPTION_TOKENS)[None] < tok_len[:, None]).long()
    ids = torch.where(mask.bool(), ids, 1)
    owner = torch.cat([torch.arange(b), torch.arange(b // 2)])
    batch = Batch(audio, lengths, ids, mask, owner, caption_kinds=["long"] * b + ["short"] * (c - b),
                  caption_lengths=tok_len.tolist())
    return batch.to(device)


def gpu_step() -> None:
    """Full-size FusionAudio step in bf16: samples/s, MFU, and no host-device sync in the step."""
    if not torch.cuda.is_available():
        print("   needs CUDA: skipped")
        return
    from torch.utils.flop_counter import FlopCounterMode

    from clsp.training.components import build_losses
    from clsp.training.module import CLSPTrainingModule

    device = torch.device("cuda")
    torch.manual_seed(0)
    model = _fusionaudio_model().to(device).train()
    losses, _ = build_losses({"global": {"_target_": "clsp.losses.GlobalInfoNCE"},
                              "token": {"_target_": "clsp.losses.TokenInfoNCE", "weight": 0.5},
                              "multipositive": {"_target_": "clsp.losses.MultiPositiveInfoNCE", "weight": 0.5}})
    module = CLSPTrainingModule(model, losses, {"lr": 1e-4})
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    batch = _batch(device)

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16), checks.disabled():
            total, _ = losses(module.contrastive_outputs(batch, 0))
        total.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    n = 10
    start = time.perf_counter()
    for _ in range(n):
        step()
    torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / n
    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    peak = _peak_tflops()
    mfu = f"{100 * flops / seconds / (peak * 1e12):.1f}% of {peak:.0f} TFLOP/s bf16" if peak else "peak unknown"
    print(f"   {torch.cuda.get_device_name()}: batch {BATCH} x 10 s, {CAPTION_TOKENS}-token captions: "
          f"{BATCH / seconds:.1f} samples/s, {seconds * 1e3:.0f} ms/step, {flops / 1e12:.1f} TFLOP/step, MFU {mfu}; "
          f"peak memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        with torch.autocast("cuda", dtype=torch.bfloat16), checks.disabled():
            total, _ = losses(module.contrastive_outputs(batch, 0))
        total.backward()
        print("   set_sync_debug_mode('error') around forward + losses + backward: no sync")
    except RuntimeError as exc:
        print(f"   host-device sync in the step: {exc}")
    finally:
        torch.cuda.set_sync_debug_mode(0)


def gpu_frontend() -> None:
    """CLAP and Whisper log-mel frontends on the GPU vs the transformers extractors on the CPU."""
    if not torch.cuda.is_available():
        print("   needs CUDA: skipped")
        return
    from transformers import ClapFeatureExtractor, WhisperFeatureExtractor

    from benchmarks.common import interleaved, report
    from clsp.audio.frontend import ClapFrontend, WhisperFrontend

    g = torch.Generator().manual_seed(0)
    for name, module, extractor, rate in [
        ("clap rand_trunc", ClapFrontend(truncation="rand_trunc").eval(),
         ClapFeatureExtractor(frequency_min=50, frequency_max=14000, truncation="rand_trunc"), 48000),
        ("whisper", WhisperFrontend(), WhisperFeatureExtractor(), 16000),
    ]:
        batch = 0.1 * torch.randn(64, 10 * rate, generator=g)
        arrays = [row.numpy() for row in batch]
        module, gpu_batch = module.cuda(), batch.cuda()

        def ours(module=module, gpu_batch=gpu_batch):
            with torch.inference_mode():
                module(gpu_batch)
            torch.cuda.synchronize()

        def base(extractor=extractor, arrays=arrays, rate=rate):
            extractor(arrays, sampling_rate=rate)

        ours_s, base_s = interleaved(ours, base, repeats=3)
        report(f"{name}, 64 x 10 s (GPU vs extractor on CPU)", ours_s, base_s)


BENCHMARKS = {"gpu_step": gpu_step, "gpu_frontend": gpu_frontend}
