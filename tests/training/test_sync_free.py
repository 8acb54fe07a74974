"""One training step reads no device scalar on the host (no `.item()`, `bool(t)`, `int(t)`, `.tolist()`).

On a GPU each such read (aten._local_scalar_dense) stalls the host until the device catches up. On the
CPU there is no device, but the same reads go through the same op, so a TorchDispatchMode counts them.
The scope is a whole step after warm-up: forward, losses, logging, backward, clipping, optimizer step.
The only reads let through are of the optimizer's `step` counters, which torch keeps on the host by
design (non-capturable Adam), so they are never syncs.
"""

from __future__ import annotations

import traceback

import lightning as L
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from clsp.config import CLSPConfig
from clsp.data.captions import CaptionSchedule
from clsp.data.dataset import build_dataloader
from clsp.model import CLSPModel
from clsp.tiny import tiny_tokenizer
from clsp.training.components import build_losses
from clsp.training.module import CLSPTrainingModule
from clsp.training.schema import OptimConfig

STEP = 2  # counted step; earlier ones create optimizer state and caches


class ScalarReads(TorchDispatchMode):
    """Records where aten._local_scalar_dense runs, except on tensors in `allowed` (by storage)."""

    def __init__(self, allowed: set[int]):
        super().__init__()
        self.allowed = allowed
        self.reads: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default and args[0].data_ptr() not in self.allowed:
            frames = [f for f in traceback.extract_stack()[:-1] if "/torch/" not in f.filename]
            self.reads.append(" <- ".join(f"{f.filename.rsplit('/', 2)[-1]}:{f.lineno}" for f in frames[-4:][::-1]))
        return func(*args, **(kwargs or {}))


class CountStep(L.Callback):
    def __init__(self):
        self.mode: ScalarReads | None = None
        self.reads: list[str] | None = None

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.global_step == STEP:
            optimizer = trainer.optimizers[0]
            steps = {s["step"].data_ptr() for s in optimizer.state.values() if "step" in s}
            self.mode = ScalarReads(steps)
            self.mode.__enter__()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if self.mode is not None:
            self.mode.__exit__(None, None, None)
            self.reads, self.mode = self.mode.reads, None


class _Fixed:
    def __init__(self, batches):
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)

    def __len__(self):
        return len(self.batches)


LOSSES = {
    "all_speech": {"global": {"_target_": "clsp.losses.GlobalInfoNCE"}, "token": {"_target_": "clsp.losses.TokenInfoNCE"},
                   "multi": {"_target_": "clsp.losses.MultiPositiveInfoNCE"}, "hard": {"_target_": "clsp.losses.HardNegativeLoss", "weight": 0.2}},
    "siglip": {"sig": {"_target_": "clsp.losses.SigLIPLoss"}},
}


@pytest.mark.parametrize("tower, losses", [("whisper", "all_speech"), ("htsat", "siglip")])
def test_training_step_has_no_scalar_reads(demo_root, tower, losses):
    config = CLSPConfig.tiny(tower).to_dict()
    config["head"]["logit_bias_init"] = -10.0
    config = CLSPConfig.from_dict(config)
    loader = build_dataloader(f"{demo_root}/train", tokenizer=tiny_tokenizer(), sample_rate=config.audio.sample_rate,
                              max_seconds=config.audio.max_seconds, batch_size=8, num_workers=0,
                              caption_policy="both", hard_negatives=True, drop_last=True,
                              caption_schedule=CaptionSchedule(p_start=0.5, p_end=0.5, ramp_steps=10))
    batches = [b for _, b in zip(range(STEP + 2), loader)]
    torch.manual_seed(0)
    suite = build_losses(LOSSES[losses])
    module = CLSPTrainingModule(CLSPModel(config), suite, OptimConfig(lr=1e-3))
    counter = CountStep()
    trainer = L.Trainer(accelerator="cpu", max_steps=STEP + 1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, gradient_clip_val=1.0,
                        log_every_n_steps=1000, limit_val_batches=0, callbacks=[counter])
    trainer.fit(module, train_dataloaders=_Fixed(batches))
    assert counter.reads is not None, "the counted step did not run"
    assert counter.reads == [], "host reads of device scalars in one training step:\n" + "\n".join(counter.reads)
