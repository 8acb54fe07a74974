"""The W&B logger runs for real, in wandb's offline mode (no network, no account): `logger=wandb`."""

from __future__ import annotations

import pytest

from clsp.train import main as train_main

pytestmark = pytest.mark.slow  # end-to-end: `make test` runs it, `pytest -m "not slow"` skips it

wandb = pytest.importorskip("wandb")  # the `wandb` extra (installed by `make test`)


def test_wandb_offline_run_logs_metrics(demo, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    overrides = [o for o in demo if not o.startswith("trainer.max_steps")]
    assert train_main(["recipe=demo", *overrides, "trainer.max_steps=3", "logger=wandb"]) == 0
    # wandb's service process writes the run's log behind the run's `finish()`; a process that
    # exits flushes it in wandb's atexit hook, one that goes on (this test) waits for it here.
    wandb.teardown()
    # The run's log, which `wandb sync` uploads later, holds the logged metrics by name.
    (log,) = tmp_path.rglob("offline-run-*/run-*.wandb")
    data = log.read_bytes()
    assert b"train/loss" in data and b"train/logit_scale" in data
