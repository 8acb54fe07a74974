"""The newest checkpoint of a run, to resume from. Reading a checkpoint's model is `clsp.loading`."""

from __future__ import annotations

from pathlib import Path

from clsp.training.callbacks import LAST


def latest_checkpoint(run_root: str | Path) -> Path:
    """checkpoints/last.ckpt of the newest run folder under `run_root` (runs/<name>)."""
    run_root = Path(run_root)
    candidates = sorted(run_root.glob(f"*/checkpoints/{LAST}"), key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise FileNotFoundError(f"resume=latest: no {run_root}/*/checkpoints/{LAST} to continue from")
    return candidates[-1]
