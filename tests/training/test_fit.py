"""Recipes fit the machine and the data they get: auto accelerator, precision and workers; step intervals
clamped to the run; and the fine-tuning recipe on 48 + 16 clips with no other override."""

from __future__ import annotations

import dataclasses
import logging
import subprocess
import sys

import pytest
import torch

from clsp.data import config as data_config
from clsp.data.config import DataConfig, default_workers
from clsp.training.compose import compose_config, typed_config
from clsp.training.fit import (
    batches_per_epoch,
    fit_intervals,
    fit_machine,
    fit_to_data,
    fit_workers,
    unvalidated_steps,
    world_size,
)


def _cfg(*overrides: str):
    return typed_config(compose_config(["recipe=clap_finetune", "data.train=/x", "data.val=/y", *overrides]))


def test_intervals_are_clamped_to_a_short_run():
    fitted, changes = fit_intervals(_cfg("trainer.max_steps=60"), batches=1)
    t = fitted.trainer
    # Validation is counted over the run here (trainer=gpu: check_val_every_n_epoch null): once, at the end.
    assert (t.val_check_interval, t.checkpoint_every_n_steps, t.log_every_n_steps) == (60, 60, 50)
    assert fitted.optim.scheduler["warmup_steps"] == 6  # 500 > 60 steps: a tenth of the run
    assert changes == ["trainer.val_check_interval 1000 -> 60", "trainer.checkpoint_every_n_steps 1000 -> 60",
                       "optim.scheduler.warmup_steps 500 -> 6"]
    fitted, changes = fit_intervals(_cfg("trainer.max_steps=20"), batches=1)
    assert fitted.trainer.log_every_n_steps == 20 and "trainer.log_every_n_steps 50 -> 20" in changes


def test_epoch_tied_validation_is_clamped_to_an_epoch():
    cfg = _cfg("trainer=cpu", "trainer.val_check_interval=1000", "trainer.max_steps=100")
    fitted, _ = fit_intervals(cfg, batches=8)
    assert fitted.trainer.val_check_interval == 8  # Lightning refuses more than an epoch's batches here


def test_a_run_shorter_than_its_first_validation_validates_at_its_end():
    cfg = _cfg("trainer=cpu", "trainer.val_check_interval=null", "trainer.max_steps=2")  # once per epoch
    fitted, changes = fit_intervals(cfg, batches=3)
    assert fitted.trainer.val_check_interval == 2 and changes[0] == "trainer.val_check_interval null -> 2"
    longer = _cfg("trainer=cpu", "trainer.val_check_interval=null", "trainer.max_steps=6")
    assert fit_intervals(longer, batches=3)[0].trainer.val_check_interval is None
    half = _cfg("trainer=cpu", "trainer.max_steps=6", "trainer.val_check_interval=0.5")
    assert fit_intervals(half, batches=20)[0].trainer.val_check_interval == 6


def test_what_fits_is_left_alone():
    cfg = _cfg("trainer.max_steps=20000")
    assert fit_intervals(cfg, batches=5000) == (cfg, [])
    fraction = _cfg("trainer=cpu", "trainer.val_check_interval=0.5")
    assert fit_intervals(fraction, batches=3)[0].trainer.val_check_interval == 0.5
    no_val = typed_config(compose_config(["recipe=clap_finetune", "data.train=/x", "trainer.max_steps=60"]))
    assert fit_intervals(no_val, batches=1)[0].trainer.val_check_interval == 1000  # no validation to schedule
    unbounded = _cfg("trainer.max_steps=null")
    assert fit_intervals(unbounded, batches=1) == (unbounded, [])


def test_an_epoch_of_unknown_length_still_fits_the_run():
    fitted, changes = fit_intervals(_cfg("trainer.max_steps=60"), batches=None)  # e.g. batches by max_batch_seconds
    assert (fitted.trainer.val_check_interval, fitted.optim.scheduler["warmup_steps"]) == (60, 6) and len(changes) == 3


def test_batches_per_epoch_is_the_data_modules_count(demo_root):
    from clsp import CLSPConfig, CLSPModel
    from clsp.data.dataset import ShardDataset
    from clsp.training.datamodule import CLSPDataModule, equal_batches

    data = DataConfig(train=str(demo_root / "train"), batch_size=16, num_workers=0)
    assert batches_per_epoch(data, world=1) == 6  # 96 clips
    model = CLSPModel(CLSPConfig.tiny("whisper"))
    assert len(CLSPDataModule(data, model.config, model.tokenizer).train_dataloader()) == 6
    # Two ranks: 3 shards of 32 dealt as 64 + 32 clips, and every rank stops where the shorter one does.
    ranks = ShardDataset(data.train, None, data, sample_rate=16000, max_seconds=None, world_size=2)
    assert batches_per_epoch(data, world=2) == equal_batches(ranks)(0) == 2
    assert batches_per_epoch(dataclasses.replace(data, bucketing=True, max_batch_seconds=20.0), world=1) is None


def test_short_epochs_read_without_workers(demo_root):
    data = DataConfig(train=str(demo_root / "train"), batch_size=16, num_workers=2)
    assert fit_workers(data, world=1).num_workers == 0  # 6 batches an epoch: workers would start 6-batch epochs
    assert fit_workers(dataclasses.replace(data, batch_size=4), world=1).num_workers == 2  # 24 batches


def test_fit_to_data_says_what_it_changed_in_one_line(demo_root, caplog):
    cfg = typed_config(compose_config(["recipe=clap_finetune", f"data.train={demo_root}/train",
                                       f"data.val={demo_root}/val", "trainer.max_steps=60", "data.batch_size=96"]))
    with caplog.at_level(logging.INFO, logger="clsp"):
        fitted = fit_to_data(dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, num_workers=3)), world=1,
                             auto_workers=True)
    assert fitted.data.num_workers == 0 and fitted.trainer.val_check_interval == 60
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("fitted to the data (1 batch per epoch, 60 steps): data.num_workers 3 -> 0, ")


@pytest.mark.parametrize(("cpus", "processes", "workers"), [(16, 1, 8), (16, 4, 3), (2, 1, 1), (2, 2, 0), (1, 1, 0)])
def test_default_workers_share_the_machine(monkeypatch, cpus, processes, workers):
    monkeypatch.setattr(data_config, "available_cpus", lambda: cpus)
    assert default_workers(processes) == workers


@pytest.mark.skipif(torch.cuda.is_available(), reason="what a machine without a GPU picks")
def test_auto_picks_the_cpu_and_says_so(caplog):
    cfg = _cfg("trainer.devices=2")
    assert (cfg.trainer.accelerator, cfg.trainer.precision) == ("auto", "auto")
    with caplog.at_level(logging.INFO, logger="clsp"):
        fitted = fit_machine(cfg, auto_workers=True)
    assert (fitted.trainer.accelerator, fitted.trainer.precision) == ("cpu", "32-true")
    assert fitted.data.num_workers == default_workers(2) and world_size(fitted.trainer) == 2
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["no GPU visible"]
    assert fitted.trainer.strategy == "ddp"  # two processes
    explicit = fit_machine(_cfg("trainer=cpu"), auto_workers=False)
    assert explicit.trainer == _cfg("trainer=cpu").trainer


def test_ddp_on_one_process_is_a_single_device_run():
    assert fit_machine(_cfg(), auto_workers=False).trainer.strategy == "auto"
    assert fit_machine(_cfg(), auto_workers=False, external=True).trainer.strategy == "ddp"  # torchrun, srun
    assert fit_machine(_cfg("trainer.num_nodes=2"), auto_workers=False).trainer.strategy == "ddp"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_auto_picks_the_gpu_and_bf16():
    fitted = fit_machine(_cfg(), auto_workers=False)
    assert fitted.trainer.accelerator == "gpu"
    assert fitted.trainer.precision == ("bf16-mixed" if torch.cuda.is_bf16_supported() else "32-true")


@pytest.mark.slow
def test_finetune_recipe_runs_on_48_clips_without_overrides(tmp_path):
    """The README's fine-tuning command on 48 + 16 clips, nothing but the three required settings (and a
    short run): the recipe's intervals, workers and device adapt."""
    from clsp import CLSPConfig, CLSPModel
    from clsp.data.demo import build_demo

    build_demo(tmp_path / "clips", seed=0, n_train=48, n_val=16, n_test=1)
    CLSPModel(CLSPConfig.tiny("htsat")).save_pretrained(tmp_path / "model")
    proc = subprocess.run([sys.executable, "-m", "clsp.train", "recipe=clap_finetune", f"run.init_from={tmp_path}/model",
                           f"data.train={tmp_path}/clips/train", f"data.val={tmp_path}/clips/val", "trainer.max_steps=60"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "fitted to the data (1 batch per epoch, 60 steps)" in proc.stderr
    assert "step 60/60" in proc.stdout and "model written to runs/clap_finetune/" in proc.stdout
    (run,) = (tmp_path / "runs" / "clap_finetune").iterdir()
    assert (run / "checkpoints" / "best.ckpt").exists() and (run / "model" / "model.safetensors").exists()


def test_steps_after_the_last_validation_are_counted():
    # demo_caption's old shape: 32 batches per epoch, validation every 4th epoch, 1000 steps: step 896's
    # validation was the last, so best.ckpt could never hold the final 104 steps.
    cfg = _cfg("trainer=cpu", "trainer.val_check_interval=null", "trainer.check_val_every_n_epoch=4")
    t = dataclasses.replace(cfg.trainer, max_steps=1000)
    assert unvalidated_steps(t, batches=32) == (104, 896, 128)
    assert unvalidated_steps(dataclasses.replace(t, max_steps=1024), batches=32) is None
    assert unvalidated_steps(dataclasses.replace(t, accumulate_grad_batches=2), batches=32) == (40, 960, 64)
    assert unvalidated_steps(dataclasses.replace(t, max_epochs=6), batches=32) is None  # epochs end the run
    steps = _cfg("trainer.max_steps=2500").trainer  # trainer=gpu: every 1000 steps across epochs
    assert unvalidated_steps(steps, batches=300) == (500, 2000, 1000)
    assert unvalidated_steps(steps, batches=None) == (500, 2000, 1000)
    assert unvalidated_steps(dataclasses.replace(steps, val_check_interval=0.5), batches=300) is None


def test_fit_to_data_says_when_the_last_steps_are_never_validated(demo_root, caplog):
    def said(max_steps: int) -> str:
        cfg = typed_config(compose_config([
            "recipe=clap_finetune", "trainer=cpu", f"data.train={demo_root}/train", f"data.val={demo_root}/val",
            "data.batch_size=32", "trainer.val_check_interval=null", "trainer.check_val_every_n_epoch=2",
            f"trainer.max_steps={max_steps}"]))
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="clsp"):
            fit_to_data(cfg, world=1)
        return caplog.records[-1].getMessage()

    assert batches_per_epoch(DataConfig(train=f"{demo_root}/train", batch_size=32), 1) == 3  # 96 clips
    assert said(8).startswith("the last 2 steps come after the last validation (after step 6), so best.ckpt")
    assert said(8).endswith("trainer.max_steps=6 or 12 ends on a validation")
    assert said(5).startswith("the run's 5 steps end before its first validation (after step 6)")
    assert "validation" not in said(12)
