"""HTSAT window attention: clsp's SDPA path vs transformers' eager one, forward + backward, side by side.

    python tools/bench.py attention

LAION-CLAP's HTSAT-tiny tower (random weights), a batch of 10 s log-mel inputs, on the GPU when there is
one (bf16 autocast) else on the CPU (float32): time per forward + backward and per inference forward,
and the peak memory of tensors a training step allocates (saved activations included). On CUDA, SDPA's
memory-efficient kernel takes the mask and returns its gradient, keeping no attention probabilities;
torch's CPU flash kernel gives no mask gradient, so CPU training falls back to SDPA's math path (eager's
work), while CPU inference runs the fused kernel.
"""

from __future__ import annotations

import torch

from benchmarks.common import LiveTensorBytes, interleaved, report
from benchmarks.towers import recipe_model


def attention() -> None:
    """HTSAT-tiny forward + backward, eager vs sdpa window attention."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    batch = 32 if device == "cuda" else 2
    models = {kind: recipe_model("laion_clap", device, attn_implementation=kind).audio.encoder.train()
              for kind in ("sdpa", "eager")}
    models["eager"].load_state_dict(models["sdpa"].state_dict())
    features = torch.randn(batch, 1, 1001, 64, device=device)

    def step(kind: str):
        def run():
            with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
                out = models[kind](input_features=features)
            out.pooler_output.float().square().mean().backward()
            if device == "cuda":
                torch.cuda.synchronize()
        return run

    def inference(kind: str):
        def run():
            with torch.inference_mode(), torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
                models[kind](input_features=features)
            if device == "cuda":
                torch.cuda.synchronize()
        return run

    sdpa_s, eager_s = interleaved(step("sdpa"), step("eager"), repeats=3)
    report(f"HTSAT-tiny fwd+bwd, batch {batch} x 10 s on {device} (sdpa vs eager)", sdpa_s, eager_s)
    sdpa_s, eager_s = interleaved(inference("sdpa"), inference("eager"), repeats=5)
    report(f"HTSAT-tiny inference forward, batch {batch} x 10 s on {device} (sdpa vs eager)", sdpa_s, eager_s)
    peaks = {}
    for kind in ("sdpa", "eager"):
        with LiveTensorBytes(device) as mem:
            step(kind)()
        peaks[kind] = mem.peak
    print(f"   peak tensor memory: sdpa {peaks['sdpa'] / 2**20:.0f} MiB, eager {peaks['eager'] / 2**20:.0f} MiB "
          f"(ratio {peaks['eager'] / peaks['sdpa']:.2f}x)")


BENCHMARKS = {"attention": attention}
