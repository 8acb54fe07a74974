"""FLOPs per sample of the recipes' towers, counted (clsp.flops on a meta twin: no memory, seconds), and
the samples/s a GPU would give at a given MFU: the arithmetic behind clsp's GPU goal.

    python tools/bench.py flops

LAION's open-clap-scaling benchmark (GH200, plain DDP) publishes forward GFLOPs per sample: 130.09 for
HTSAT-base + RoBERTa-base and 111.20 for HTSAT-tiny + RoBERTa-base (10 s, 77 tokens), and 538.2
samples/s per GPU for the former (21.2 % MFU). Training costs forward + backward = about 3 x forward.
Counted here, those two figures are met (within 2.5 %) with the text tower at 512 tokens, not 77: the
rows at 512 tokens are LAION's shapes as its numbers imply, and the goal's arithmetic is done at both.
"""

from __future__ import annotations

from benchmarks.towers import recipe_model
from clsp.flops import PEAK_TFLOPS, count_flops

LAION_FORWARD_GFLOPS = {("fusionaudio", 77): 130.09, ("laion_clap", 77): 111.20}  # as published: "77 tokens"
LAION_SAMPLES_PER_S = 538.2  # HTSAT-base + RoBERTa-base, batch 416 per GPU, 4 x GH200
GOALS = (700.0, 1000.0)  # samples/s per GPU: 1.3 x LAION, and the 40 % MFU mark
H200 = PEAK_TFLOPS["H200"]


# (recipe, audio seconds, caption tokens) rows: each recipe's own shapes, and LAION's (77 and, as implied, 512).
ROWS = [("fusionaudio", 10.0, 77), ("fusionaudio", 10.0, 256), ("fusionaudio", 10.0, 512),
        ("laion_clap", 10.0, 77), ("laion_clap", 10.0, 512), ("fcaps", 10.0, 256), ("fcaps", 30.0, 256)]


def flops() -> None:
    """Counted GFLOPs per sample of each recipe, beside LAION's published ones, and samples/s at a given MFU."""
    counted = {}
    for name, seconds, tokens in ROWS:
        f = count_flops(recipe_model(name, device="meta", tokens=max(tokens, 77)), seconds, tokens)
        counted[name, seconds, tokens] = f
        laion = LAION_FORWARD_GFLOPS.get((name, 77)) if tokens in (77, 512) else None
        versus = f"  LAION {laion:.2f}: ratio {f.forward / 1e9 / laion:.3f}" if laion else ""
        print(f"   {name:<12} {seconds:>4.0f} s {tokens:>3} tok: forward {f.forward / 1e9:7.2f} GFLOPs "
              f"(audio {f.audio_forward / 1e9:6.2f}, text {f.text_forward / 1e9:6.2f}), forward+backward "
              f"{f.total / 1e9:7.2f}{versus}")
    print(f"   samples/s per GPU = MFU x peak / (forward+backward FLOPs per sample), H200 dense bf16 peak {H200:.0f} "
          "TFLOP/s.")
    laion = 3 * LAION_FORWARD_GFLOPS[("fusionaudio", 77)] * 1e9

    def mfu(samples_per_s: float, step_flops: float) -> str:
        return f"{100 * samples_per_s * step_flops / (H200 * 1e12):.1f} %"

    print(f"   LAION's figures: {LAION_SAMPLES_PER_S} samples/s x {laion / 1e9:.0f} GFLOPs = {mfu(LAION_SAMPLES_PER_S, laion)}"
          f" MFU; the goals {GOALS[0]:.0f} and {GOALS[1]:.0f} samples/s need {mfu(GOALS[0], laion)} and "
          f"{mfu(GOALS[1], laion)}")
    for tokens in (512, 77):
        step = counted["fusionaudio", 10.0, tokens].total
        print(f"   counted, HTSAT-base + RoBERTa-base at {tokens} tokens: LAION's {LAION_SAMPLES_PER_S} samples/s = "
              f"{mfu(LAION_SAMPLES_PER_S, step)} MFU; {GOALS[0]:.0f} and {GOALS[1]:.0f} samples/s = "
              f"{mfu(GOALS[0], step)} and {mfu(GOALS[1], step)}")
    for (name, seconds, tokens), f in counted.items():
        at = ", ".join(f"{m:.0%} {m * H200 * 1e12 / f.total:6.0f}" for m in (0.2, 0.3, 0.4))
        print(f"   {name:<12} {seconds:>4.0f} s {tokens:>3} tok: samples/s per H200 at MFU {at}")


BENCHMARKS = {"flops": flops}
