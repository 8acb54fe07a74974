"""A killed run resumed with resume=latest ends with the same weights as an uninterrupted one,
with gradient accumulation and EMA (checkpoints are taken only on whole optimizer steps, and hold
the step's clamp and EMA update), and with the same metrics.csv: each step's row once."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from clsp.loading import load_checkpoint

pytestmark = pytest.mark.slow  # end-to-end: `make test` runs it, `pytest -m "not slow"` skips it


def _final_weights(run_root: Path) -> dict[str, torch.Tensor]:
    """EMA weights, raw weights and the exported model, by name."""
    (ckpt,) = run_root.glob("*/checkpoints/last.ckpt")
    state = load_checkpoint(ckpt)
    (exported,) = run_root.glob("*/model/model.safetensors")
    out = {f"ema/{k}": v for k, v in state["state_dict"].items()}
    out |= {f"raw/{k}": v for k, v in state["current_model_state"].items()}
    return out | {f"export/{k}": v for k, v in load_file(exported).items()}


def _metrics(run_root: Path) -> list[dict[str, str]]:
    (path,) = run_root.glob("*/metrics.csv")
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def _cmd(overrides: list[str]) -> list[str]:
    return [sys.executable, "-m", "clsp.train", "recipe=demo", *overrides]


def test_killed_run_resumes_to_identical_weights(demo, tmp_path):
    # 96 clips / 16 = 6 batches = 3 optimizer steps per epoch: the kill after step 2 (mid-epoch) is
    # followed by an epoch boundary (with validation and best.ckpt) before step 4.
    common = [o for o in demo if not o.startswith(("run.output_dir", "trainer.max_steps", "trainer.checkpoint"))]
    common += ["trainer.max_steps=4", "trainer.checkpoint_every_n_steps=2", "run.final_eval=false",
               "trainer.accumulate_grad_batches=2", "trainer.ema_decay=0.9"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}

    whole = tmp_path / "whole"
    subprocess.run(_cmd([*common, f"run.output_dir={whole}"]), check=True, env=env, capture_output=True)

    parted = tmp_path / "parted"
    proc = subprocess.Popen(_cmd([*common, f"run.output_dir={parted}"]), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    # Kill hard (no clean-up) as soon as the first checkpoint (step 2) is on disk with its step's metrics
    # row, which Lightning logs just after the checkpoint (see clsp.training.loggers).
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if list(parted.glob("demo/*/checkpoints/last.ckpt")) and any(r["step"] == "1" for r in _metrics(parted / "demo")):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    (ckpt,) = parted.glob("demo/*/checkpoints/last.ckpt")
    killed_at = load_checkpoint(ckpt)["global_step"]
    assert killed_at == 2

    subprocess.run(_cmd([*common, f"run.output_dir={parted}", "resume=latest"]), check=True, env=env,
                   capture_output=True)
    a, b = _final_weights(whole / "demo"), _final_weights(parted / "demo")
    assert load_checkpoint(next((parted / "demo").glob("*/checkpoints/last.ckpt")))["global_step"] == 4
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=0, msg=key)

    # The rows logged before the kill are kept, the ones after its checkpoint are not doubled.
    rows_a, rows_b = _metrics(whole / "demo"), _metrics(parted / "demo")
    kinds = [(row["step"], bool(row.get("val/mAP@10"))) for row in rows_a]
    assert kinds == [(row["step"], bool(row.get("val/mAP@10"))) for row in rows_b]
    assert len({step for step, _ in kinds}) == 4  # one row per optimizer step, plus validation
    for ra, rb in zip(rows_a, rows_b, strict=True):
        for key in ("train/loss", "val/mAP@10"):
            if ra.get(key):
                assert abs(float(ra[key]) - float(rb[key])) < 1e-5, (ra["step"], key)
