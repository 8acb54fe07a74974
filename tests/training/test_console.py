"""Quiet by default: a run prints clsp's own lines, not Lightning's tips, FLOPs, sync_dist advice or resume
warnings, on one process and on two (DDP on the CPU) with a resume mid-epoch; `--verbose` brings them back."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # end-to-end: `make test` runs it, `pytest -m "not slow"` skips it

NOISE = ("sync_dist", "Tip", "Total FLOPs", "not resumable")


def _run(argv: list[str]) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "CLSP_RUN_ID")}
    proc = subprocess.run([sys.executable, "-m", "clsp.train", *argv], env=env | {"HF_HUB_OFFLINE": "1",
                          "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def _quiet(output: str) -> None:
    assert not [ln for ln in output.splitlines() if any(word in ln for word in NOISE)], output
    assert "site-packages" not in output, output  # no library warning at all


def _args(demo: list[str]) -> list[str]:
    # The bar on: with output to a pipe it prints plain lines, which must be all there is.
    return ["recipe=demo", *[o for o in demo if not o.startswith(("trainer.enable_progress_bar", "trainer.max_steps"))]]


def test_one_process_is_quiet_and_verbose_brings_lightning_back(demo):
    output = _run([*_args(demo), "trainer.max_steps=6"])
    _quiet(output)
    assert "model: 355 K parameters" in output and "step 6/6 100%" in output and "mAP@10" in output
    verbose = _run([*_args(demo), "trainer.max_steps=1", "run.final_eval=false", "--verbose"])
    assert "GPU available" in verbose and "Total FLOPs" in verbose


def test_two_processes_and_a_resume_mid_epoch_are_quiet(demo):
    # 96 clips over 2 ranks: 3 batches per rank per epoch, so the checkpoint of step 2 is mid-epoch.
    args = [*_args(demo), "trainer.devices=2", "trainer.strategy=ddp", "trainer.checkpoint_every_n_steps=2"]
    first = _run([*args, "trainer.max_steps=2", "run.final_eval=false"])
    resumed = _run([*args, "trainer.max_steps=4", "resume=latest"])
    for output in (first, resumed):
        _quiet(output)
    # The first run is shorter than an epoch: it validates at its end all the same.
    assert "validation: step 2/2" in first and "step 4/4" in resumed
