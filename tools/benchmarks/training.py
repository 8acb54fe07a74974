"""Training benchmarks on the tiny demo model.

    python tools/bench.py train_overhead global_infonce_fraction

`train_overhead`: the full Lightning step (CLSPTrainingModule: logging, scale clamp, LR schedule,
clipping, progress accounting) vs a bare loop doing only forward + backward + optimizer step, on the
same pre-built batches (data loading excluded from both). Target: at most 15 % overhead.
"""

from __future__ import annotations

import tempfile
import time

import torch

from clsp.config import CLSPConfig
from clsp.losses import GlobalInfoNCE, LossSuite
from clsp.model import CLSPModel
from clsp.training.callbacks import RandomState
from clsp.training.counters import DataCounters
from clsp.training.schema import OptimConfig

STEPS, WARMUP, BATCH = 30, 5, 64


def _batches(n: int):
    from clsp.data.dataset import build_dataloader
    from clsp.data.demo import build_demo
    from clsp.tiny import tiny_tokenizer

    root = tempfile.mkdtemp(prefix="clsp-bench-")
    build_demo(root, n_train=BATCH * 8, n_val=8, n_test=8)
    loader = build_dataloader(f"{root}/train", tokenizer=tiny_tokenizer(), sample_rate=16000, max_seconds=30.0,
                              batch_size=BATCH, num_workers=0, caption_policy="random", drop_last=True)
    batches = list(loader)
    return [batches[i % len(batches)] for i in range(n)]


class _Fixed:
    def __init__(self, batches):
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)

    def __len__(self):
        return len(self.batches)


def _bare_loop(batches) -> float:
    torch.manual_seed(0)
    model = CLSPModel(CLSPConfig.tiny("whisper")).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    start = None
    for i, batch in enumerate(batches):
        if i == WARMUP:
            start = time.perf_counter()
        a = model.embed_audio(batch.audio, batch.audio_lengths).embeds
        t = model.embed_text(batch.input_ids[: batch.size], batch.attention_mask[: batch.size]).embeds
        logits = model.scale() * a @ t.T
        labels = torch.arange(len(a))
        loss = (torch.nn.functional.cross_entropy(logits, labels) + torch.nn.functional.cross_entropy(logits.T, labels)) / 2
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return (time.perf_counter() - start) / (len(batches) - WARMUP)


def _lightning(batches) -> float:
    import lightning as L

    from clsp.training.module import CLSPTrainingModule

    class Timer(L.Callback):
        start = end = 0.0

        def on_train_batch_start(self, trainer, module, batch, idx):
            if trainer.global_step == WARMUP:
                Timer.start = time.perf_counter()

        def on_train_batch_end(self, trainer, module, outputs, batch, idx):
            Timer.end = time.perf_counter()

    torch.manual_seed(0)
    module = CLSPTrainingModule(CLSPModel(CLSPConfig.tiny("whisper")),
                                LossSuite({"global": (GlobalInfoNCE(), 1.0)}),
                                OptimConfig(lr=1e-3, weight_decay=0.01, scheduler={
                                    "_target_": "clsp.training.optim.warmup_cosine", "warmup_steps": 5}))
    # The callbacks every clsp run has in its step (data counters, random state), as in a real run.
    trainer = L.Trainer(accelerator="cpu", max_steps=len(batches), logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, gradient_clip_val=1.0,
                        limit_val_batches=0, callbacks=[Timer(), DataCounters(), RandomState()])
    trainer.fit(module, train_dataloaders=_Fixed(batches))
    return (Timer.end - Timer.start) / (len(batches) - WARMUP)


def train_overhead() -> None:
    batches = _batches(STEPS)
    times = {"bare": [], "lightning": []}
    for _ in range(2):  # alternate, so machine noise hits both
        times["bare"].append(_bare_loop(batches))
        times["lightning"].append(_lightning(batches))
    bare, full = min(times["bare"]), min(times["lightning"])
    print(f"   tiny demo model, batch {BATCH}: bare loop {BATCH / bare:.1f} samples/s, "
          f"Lightning step {BATCH / full:.1f} samples/s, overhead {100 * (full / bare - 1):+.1f}%")


def global_infonce_fraction() -> None:
    """GlobalInfoNCE forward+backward as a fraction of one tiny-model training step (batch 64)."""
    batches = _batches(STEPS)
    step = min(_bare_loop(batches) for _ in range(2))
    loss_fn = GlobalInfoNCE()
    a = torch.nn.functional.normalize(torch.randn(BATCH, 64), dim=-1).requires_grad_()
    t = torch.nn.functional.normalize(torch.randn(BATCH, 64), dim=-1).requires_grad_()
    from clsp.losses import ContrastiveOutputs

    out = ContrastiveOutputs(audio=a, text=t, caption_to_clip=torch.arange(BATCH), scale=torch.tensor(14.3))
    for _ in range(5):
        loss_fn(out).backward()
    start = time.perf_counter()
    for _ in range(200):
        loss_fn(out).backward()
    loss_time = (time.perf_counter() - start) / 200
    print(f"   GlobalInfoNCE fwd+bwd {1e3 * loss_time:.3f} ms vs training step {1e3 * step:.1f} ms: "
          f"{100 * loss_time / step:.2f}% of the step")


BENCHMARKS = {"train_overhead": train_overhead, "global_infonce_fraction": global_infonce_fraction}
