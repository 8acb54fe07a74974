"""Callbacks: atomic checkpoints (last + best by validation mAP@10)."""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L

LAST = "last.ckpt"
BEST = "best.ckpt"


def atomic_save(trainer: L.Trainer, path: Path) -> None:
    """Write a checkpoint next to `path` and rename it into place: a kill leaves the old file whole."""
    tmp = path.with_name(f".{path.name}.tmp")
    trainer.save_checkpoint(str(tmp), weights_only=False)  # full state: optimizer, schedule, loops
    trainer.strategy.barrier("clsp_checkpoint")
    if trainer.is_global_zero:
        # DeepSpeed writes a folder, everything else a file; both rename atomically.
        if path.is_dir():
            import shutil

            shutil.rmtree(path)
        os.replace(tmp, path)
    trainer.strategy.barrier("clsp_checkpoint_done")


class AtomicCheckpoint(L.Callback):
    """`last.ckpt` every `every_n_steps` steps and at the end of training; `best.ckpt` whenever the
    monitored validation metric improves (higher is better)."""

    def __init__(self, folder: str | Path, every_n_steps: int, monitor: str = "val/mAP@10"):
        self.folder = Path(folder)
        self.every_n_steps = int(every_n_steps)
        self.monitor = monitor
        self.best: float | None = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if self.every_n_steps > 0 and step > 0 and step % self.every_n_steps == 0:
            self.save_last(trainer)

    def save_last(self, trainer: L.Trainer) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_save(trainer, self.folder / LAST)

    def on_train_end(self, trainer, pl_module) -> None:
        self.save_last(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            return
        value = float(value)
        if self.best is None or value > self.best:
            self.best = value
            self.folder.mkdir(parents=True, exist_ok=True)
            atomic_save(trainer, self.folder / BEST)

    def state_dict(self) -> dict:
        return {"best": self.best}

    def load_state_dict(self, state_dict: dict) -> None:
        self.best = state_dict.get("best")
