"""ThroughputCallback: a batch's FLOPs from host facts equal the FLOPs counted on the real model, and
TFLOP/s (MFU with a peak) reach the logs."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from clsp import checks
from clsp.config import CLSPConfig
from clsp.data.dataset import build_dataloader
from clsp.flops import FlopCounter
from clsp.model import CLSPModel
from clsp.tiny import tiny_tokenizer
from clsp.training.components import build_losses
from clsp.training.module import CLSPTrainingModule
from clsp.training.schema import OptimConfig
from clsp.training.throughput import ThroughputCallback

GLOBAL = {"global": {"_target_": "clsp.losses.GlobalInfoNCE"}}


def _module(losses=GLOBAL) -> CLSPTrainingModule:
    cfg = CLSPConfig.tiny("whisper").to_dict()
    for side in ("audio", "text"):  # FlopCounterMode has no formula for torch's CPU flash kernel
        cfg[side]["attn_implementation"] = "eager"
    suite = build_losses(losses)
    return CLSPTrainingModule(CLSPModel(CLSPConfig.from_dict(cfg)), suite, OptimConfig(lr=1e-3))


def _loader(demo_root, **kwargs):
    return build_dataloader(f"{demo_root}/train", tokenizer=tiny_tokenizer(), sample_rate=16000, max_seconds=30.0,
                            batch_size=8, num_workers=0, drop_last=True, **kwargs)


def test_batch_flops_equal_the_real_step(demo_root):
    module = _module()
    batch = next(iter(_loader(demo_root)))
    callback = ThroughputCallback(window=1)
    callback.counter = FlopCounter(module.model)
    with checks.disabled(), FlopCounterMode(display=False) as counter:
        module.losses(module.contrastive_outputs(batch))[0].backward()
    logits = 2 * 2 * batch.size * batch.size * module.model.config.head.dim  # the loss's B x B products
    assert callback.batch_flops(module, batch) == pytest.approx(counter.get_total_flops() - logits, rel=5e-3)  # the fitted quadratic (clsp.flops)


@pytest.mark.parametrize("peak", [None, 0.5])
def test_tflops_and_mfu_are_logged(demo_root, peak):
    module = _module()
    trainer = L.Trainer(accelerator="cpu", max_steps=4, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=1,
                        limit_val_batches=0, callbacks=[ThroughputCallback(peak_tflops=peak)])
    trainer.fit(module, train_dataloaders=_loader(demo_root))
    logged = trainer.logged_metrics
    tflops = float(logged["perf/tflops_per_s"])
    assert 0 < tflops < 10  # a CPU core: far below a teraflop
    if peak is None:
        assert "perf/mfu" not in logged  # no peak for a CPU
    else:
        assert float(logged["perf/mfu"]) == pytest.approx(tflops / peak)
    assert logged["perf/tflops_per_s"].device == torch.device("cpu")
