"""The checkpoints of a run, to resume from. Reading a checkpoint's model is `clsp.loading`."""

from __future__ import annotations

from pathlib import Path

import torch

from clsp.training.callbacks import LAST


def latest_checkpoint(run_root: str | Path) -> Path:
    """checkpoints/last.ckpt of the newest run folder under `run_root` (runs/<name>). When there is none,
    the FileNotFoundError names the checkpoints that do exist (best.ckpt, a copied file), newest first."""
    run_root = Path(run_root)
    candidates = sorted(run_root.glob(f"*/checkpoints/{LAST}"), key=lambda p: p.stat().st_mtime)
    if candidates:
        return candidates[-1]
    others = sorted(run_root.glob("*/checkpoints/*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True)
    if not others:
        raise FileNotFoundError(f"resume=latest: no checkpoint under {run_root}/*/checkpoints/ to continue from")
    named = ", ".join(f"{p} (step {checkpoint_step(p)})" for p in others[:3])
    more = f" and {len(others) - 3} more" if len(others) > 3 else ""
    raise FileNotFoundError(f"resume=latest: no {run_root}/*/checkpoints/{LAST} to continue from "
                            f"(checkpoints there: {named}{more})")


def checkpoint_step(path: str | Path) -> int | str:
    """The optimizer step a checkpoint was written at, read without loading its tensors ("?" if unreadable)."""
    path = Path(path)
    if path.is_dir():  # DeepSpeed's folder: the step is in its client state, not worth loading for a message
        return "?"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return int(state["global_step"])
    except Exception:  # a message helper: a foreign or broken file is reported where it is loaded
        return "?"
