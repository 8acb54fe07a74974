"""Helpers of the restart tests: start demo runs as subprocesses, read what they leave, compare two runs.

A run is compared with an uninterrupted one by its final weights (last.ckpt's weights, its raw weights
under EMA, and the exported model/) and its metrics.csv, row for row.
"""

from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from clsp.loading import load_checkpoint
from clsp.training.checkpoint import checkpoint_step

HOOKS = Path(__file__).parent  # restart_hooks.py, importable by the runs
DIE = "+trainer.callbacks.die={_target_:restart_hooks.DieAt}"
# Variables a launcher sets; the test's own environment must not leak them into the runs.
LAUNCHER_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK", "GROUP_RANK", "MASTER_ADDR", "MASTER_PORT",
                 "CLSP_RUN_ID")
# metrics.csv columns that differ between two runs of the same work (none today; wall-clock ones go here).
# Wall-clock rates differ between any two runs; everything else must match row for row.
UNSTABLE_COLUMNS: frozenset[str] = frozenset({"samples_per_s", "perf/tflops_per_s", "perf/mfu"})


def env(**extra: str) -> dict[str, str]:
    """A clean environment for a run: offline, one thread, no launcher variables, the hooks importable."""
    out = {k: v for k, v in os.environ.items()
           if k not in LAUNCHER_VARS and not k.startswith(("SLURM_", "TORCHELASTIC_", "LSB_", "OMPI_", "PMI_",
                                                             "CLSP_TEST_"))}
    path = os.pathsep.join(p for p in (str(HOOKS), out.get("PYTHONPATH", "")) if p)
    return out | {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": path} | extra


def train_cmd(overrides: list[str]) -> list[str]:
    return [sys.executable, "-m", "clsp.train", "recipe=demo", *overrides]


def run(overrides: list[str], *, expect: int | None = 0, timeout: float = 600, **extra_env: str) -> \
        subprocess.CompletedProcess:
    """One `python -m clsp.train recipe=demo` run to its end; its exit code is checked against `expect`."""
    proc = subprocess.Popen(train_cmd(overrides), env=env(**extra_env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        kill_group(proc)  # what a killed run left behind (Lightning's launcher starts its ranks as children)
    proc = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    if expect is not None:
        assert proc.returncode == expect, f"exit {proc.returncode}, expected {expect}:\n{proc.stderr[-4000:]}"
    return proc


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL every process of `proc`'s session (started with start_new_session=True)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_folder(root: Path) -> Path:
    """The single run folder under runs/<name>/ (a restarted run must not have made a second one)."""
    folders = [p for p in root.iterdir() if p.is_dir()]
    assert len(folders) == 1, f"expected one run folder under {root}, found {[p.name for p in folders]}"
    return folders[0]


def last_step(folder: Path) -> int | str:
    return checkpoint_step(folder / "checkpoints" / "last.ckpt")


def final_weights(folder: Path) -> dict[str, torch.Tensor]:
    """last.ckpt's weights (the average under EMA), its raw weights under EMA, and the exported model."""
    state = load_checkpoint(folder / "checkpoints" / "last.ckpt")
    out = {f"ckpt/{k}": v for k, v in state["state_dict"].items()}
    out |= {f"raw/{k}": v for k, v in state.get("current_model_state", {}).items()}
    return out | {f"export/{k}": v for k, v in load_file(folder / "model" / "model.safetensors").items()}


def max_weight_diff(a: Path, b: Path) -> float:
    """Largest |difference| between two runs' final weights (the same names in both)."""
    wa, wb = final_weights(a), final_weights(b)
    assert wa.keys() == wb.keys()
    return max(float((wa[k].double() - wb[k].double()).abs().max()) if wa[k].numel() else 0.0 for k in wa)


def metrics(folder: Path) -> list[dict[str, str]]:
    with open(folder / "metrics.csv", newline="") as file:
        return list(csv.DictReader(file))


def metrics_diff(a: Path, b: Path, atol: float = 1e-5) -> list[str]:
    """What differs between two runs' metrics.csv, row for row (empty when they agree)."""
    rows_a, rows_b = metrics(a), metrics(b)
    problems = []
    if [_kind(r) for r in rows_a] != [_kind(r) for r in rows_b]:
        problems.append(f"rows differ: {[_kind(r) for r in rows_a]} vs {[_kind(r) for r in rows_b]}")
        return problems
    for ra, rb in zip(rows_a, rows_b, strict=True):
        for key in sorted((set(ra) | set(rb)) - UNSTABLE_COLUMNS):
            va, vb = ra.get(key) or "", rb.get(key) or ""
            if bool(va) != bool(vb) or (va and abs(float(va) - float(vb)) > atol):
                problems.append(f"step {ra['step']} {key}: {va!r} vs {vb!r}")
    return problems


def _kind(row: dict[str, str]) -> tuple[str, bool]:
    return row["step"], bool(row.get("val/mAP@10"))
