"""tools/benchmarks/gpu.py (the report tools/gpu_check.sh prints) runs every section to its table: checked
on the CPU in its smoke mode (tiny towers and batches), as it is run once, on a GPU, by hand."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_report_runs_every_section_to_its_table():
    env = {**os.environ, "CLSP_GPU_CHECK_SMOKE": "1", "CLSP_GPU_CHECK_BUDGET_S": "900", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(ROOT / "tools/benchmarks/gpu.py")], capture_output=True, text=True,
                          env=env, timeout=1200)
    assert done.returncode == 0, done.stderr[-2000:]
    table = done.stdout[done.stdout.index("| run |"):]
    rows = [line for line in table.splitlines()[2:] if line.startswith("|")]
    assert not [r for r in rows if "failed" in r or "stopped" in r], table
    runs = " ".join(rows)
    for expected in ("sdpa, batch 3, 77 tok", "sdpa, batch 4, 256 tok", "eager, batch 3, 256 tok",
                     "compiled, batch 4, 256 tok", "fcaps no buckets", "fcaps buckets", "deepspeed2"):
        assert expected in runs, table
    assert "sync check: model + losses + backward + fused AdamW |  |  |  |  | no sync" in table
    assert "graphs for the 2 towers over 3 batch shapes |  |  |  |  | 2 |" in table  # one per tower
