"""Duration bucketing: Whisper-base forward+backward on a log-normal 2-30 s speech mix.

    python tools/bench.py bucketing

Three ways to batch the same clips, the same number of clips per batch: clsp's duration buckets
(`clsp.data.pipeline.bucket_batches` over a shuffle buffer, as the training pipeline runs it),
random batches (each padded to its longest clip), and every clip padded to 30 s (stock Whisper).

Counted figure: FLOPs of the Whisper-base tower's forward+backward per batch, from `clsp.flops.FlopCounter`
(torch's FlopCounterMode on a meta-device twin: no compute; a clip's FLOPs are a quadratic in its padded
length, fitted on three counted lengths and checked on a fourth).
Timed figure (CUDA only): real forward+backward of the same 1024 clips in each arrangement, side by
side, bf16 autocast.
"""

from __future__ import annotations

import random
import time

import numpy as np
import torch

from benchmarks.model import WHISPER_BASE
from benchmarks.towers import recipe_model
from clsp import checks
from clsp.config import CLSPConfig
from clsp.data.bucketing import bucket_batches
from clsp.flops import FlopCounter
from clsp.model import CLSPModel

RATE, HOP, MAX_S = 16000, 160, 30.0
N_CLIPS, BATCH, BUFFER = 4096, 32, 2000  # BUFFER: configs/data/shards.yaml's shuffle_buffer


def _durations(n: int, seed: int = 0) -> list[float]:
    """Log-normal speech durations (median 8 s) clipped to 2-30 s, like FCaps / Emilia clips."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.lognormal(np.log(8.0), 0.6, n), 2.0, MAX_S).round(2).tolist()


def _arrangements(durations: list[float], batch: int, buffer: int) -> dict[str, list[list[float]]]:
    bucketed = list(bucket_batches(iter(durations), float, random.Random(0), batch_size=batch, buffer_size=buffer))
    plain = [durations[i:i + batch] for i in range(0, len(durations), batch)]
    return {"bucketed": bucketed, "random": plain, "padded to 30 s": [[MAX_S] * len(b) for b in plain]}


def _tower(device: str):
    cfg = CLSPConfig.tiny("whisper").to_dict()
    cfg["audio"]["hf_config"] = WHISPER_BASE
    return CLSPModel(CLSPConfig.from_dict(cfg)).audio.train().to(device)


def _flop_model():
    """FLOPs(seconds) of one clip padded to `seconds`: forward + backward of the Whisper-base tower and head."""
    return FlopCounter(recipe_model("fcaps", "meta")).audio


def _timed(arrangements: dict[str, list[list[float]]], device: str) -> dict[str, float]:
    torch.manual_seed(0)
    tower = _tower(device)
    batches = {}
    for name, groups in arrangements.items():
        made = []
        for group in groups:
            lengths = torch.tensor([int(s * RATE) for s in group])
            wave = torch.randn(len(group), int(lengths.max())) * 0.1
            wave *= torch.arange(wave.shape[1])[None] < lengths[:, None]
            made.append((wave.to(device), lengths.to(device)))
        batches[name] = made

    def run(name):
        for wave, lengths in batches[name]:
            with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"), checks.disabled():
                pooled, _, _ = tower(wave, lengths)
            pooled.float().sum().backward()
        if device == "cuda":
            torch.cuda.synchronize()

    times = {name: [] for name in batches}
    run("bucketed")  # warm-up
    for _ in range(2):  # alternate, so machine noise hits all alike
        for name in batches:
            start = time.perf_counter()
            run(name)
            times[name].append(time.perf_counter() - start)
    return {name: min(t) for name, t in times.items()}


def bucketing() -> None:
    """Whisper-base fwd+bwd over 2-30 s clips: duration buckets vs random batches vs padding to 30 s."""
    durations = _durations(N_CLIPS)
    arrangements = _arrangements(durations, BATCH, BUFFER)
    flops_of = _flop_model()
    print(f"   {N_CLIPS} clips, median {np.median(durations):.1f} s, mean {np.mean(durations):.1f} s; "
          f"batch {BATCH}; shuffle buffer {BUFFER}")
    total = {}
    for name, groups in arrangements.items():
        total[name] = sum(flops_of(max(g)) * len(g) for g in groups)  # every op is per clip
        padded = sum(max(g) * len(g) for g in groups)
        print(f"   {name:>15}: padding efficiency {sum(durations) / padded:6.1%}  "
              f"fwd+bwd {total[name] / 1e15:7.1f} PFLOP (counted)")
    b = total["bucketed"]
    print(f"   counted FLOPs: bucketed is {total['random'] / b:.2f}x below random (goal >= 2) and "
          f"{total['padded to 30 s'] / b:.2f}x below padded to 30 s (goal >= 5)")

    if not torch.cuda.is_available():
        # Whisper-base fwd+bwd over enough clips to time takes many minutes on a few CPU cores.
        print("   timed: on CUDA only")
        return
    n = 1024
    timed = _timed(_arrangements(_durations(n, seed=1), BATCH, BUFFER), "cuda")
    print(f"   timed on {torch.cuda.get_device_name()} ({n} clips, batch {BATCH}, bf16 autocast): "
          + ", ".join(f"{k} {v:.2f}s" for k, v in timed.items()))
    print(f"   time ratio: random/bucketed {timed['random'] / timed['bucketed']:.2f}x, "
          f"padded/bucketed {timed['padded to 30 s'] / timed['bucketed']:.2f}x")


BENCHMARKS = {"bucketing": bucketing}
