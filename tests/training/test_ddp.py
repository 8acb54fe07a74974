"""The demo recipe on 2 CPU processes (DDP over gloo), launched the way users launch it."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def test_demo_ddp_two_processes(demo, tmp_path):
    overrides = [o for o in demo if not o.startswith("trainer.max_steps")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("CLSP_RUN_ID", None)
    proc = subprocess.run(
        [sys.executable, "-m", "clsp.train", "recipe=demo", *overrides, "trainer.devices=2", "trainer.strategy=ddp",
         "trainer.max_steps=4"],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = (tmp_path / "runs" / "demo").iterdir()  # both ranks agreed on one run folder
    results = json.loads((run / "results.json").read_text())
    assert results["test"]["n_clips"] == 32
    assert (run / "checkpoints" / "last.ckpt").exists() and (run / "model" / "model.safetensors").exists()
