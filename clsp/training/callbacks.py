"""Checkpoints and EMA through Lightning's own callbacks, with the two things they lack here.

- `ModelCheckpoint` decides when to save (last every N optimizer steps, best by validation
  mAP@10, the decision reduced over ranks) but writes in place, so a kill mid-write can leave a
  broken `last.ckpt`. `AtomicModelCheckpoint` writes to a hidden temporary path and renames it
  into place (a file, or DeepSpeed's folder), and also writes `last.ckpt` when training ends so
  a finished run can be continued.
- On a batch after which Lightning validates, a checkpoint due there is written after the validation,
  so a resumed run neither repeats nor loses it (`clsp.training.resume`).
- `EMAWeightAveraging` keeps the average, saves it with the step it belongs to (the average in
  `state_dict`, the raw weights in `current_model_state`) and swaps it in for validation; `EMA`
  only keeps the average on the training device.

The callback order is fixed by Lightning (checkpoint callbacks last), so a checkpoint taken after
an optimizer step already holds that step's EMA update; the logit-scale clamp happens inside the
step itself (`CLSPTrainingModule.optimizer_step`).
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging, ModelCheckpoint

from clsp.training.resume import gather_ranks, this_rank, validation_follows

LAST = "last.ckpt"
BEST = "best.ckpt"
MONITOR = "val/mAP@10"


class AtomicModelCheckpoint(ModelCheckpoint):
    """ModelCheckpoint whose files appear whole or not at all, and which, on a batch that Lightning
    validates after, saves after that validation (see `clsp.training.resume`)."""

    _after_validation = False

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if validation_follows(trainer):
            self._after_validation = True
            return
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if self._after_validation:  # the save (or not) its step's batch end would have decided
            self._after_validation = False
            super().on_train_batch_end(trainer, pl_module, None, None, -1)

    def save_last_now(self, trainer: L.Trainer) -> None:
        """Write last.ckpt now, whatever the step (`clsp.training.preemption` stops a run with it)."""
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        path = Path(filepath)
        tmp = path.with_name(f".{path.name}.tmp")
        super()._save_checkpoint(trainer, str(tmp))
        # Every rank has written its part (DeepSpeed: its shard of the folder) before the rename.
        trainer.strategy.barrier("clsp_checkpoint_written")
        if trainer.is_global_zero:
            if path.is_dir():  # DeepSpeed checkpoints are folders; a folder cannot replace one in place
                shutil.rmtree(path)
            os.replace(tmp, path)
        trainer.strategy.barrier("clsp_checkpoint_renamed")
        self._last_checkpoint_saved = filepath

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        # The epoch that ends training also ends with a last.ckpt (before EMA's on_train_end copies the
        # average into the model, which would make the saved raw weights the averaged ones).
        if self.save_last and _training_ends(trainer) and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


def _training_ends(trainer: L.Trainer) -> bool:
    steps_done = trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps
    epochs = trainer.max_epochs
    epochs_done = epochs is not None and epochs > 0 and trainer.current_epoch + 1 >= epochs
    return bool(steps_done or epochs_done or trainer.should_stop)


class EMA(EMAWeightAveraging):
    """Lightning's EMA, kept on the device the model trains on (its default is the model's device at
    `setup`, which is still the CPU before the strategy moves the model)."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self._device is None:
            self._device = trainer.strategy.root_device
        super().setup(trainer, pl_module, stage)


class RandomState(L.Callback):
    """Saves the torch, python and CUDA random states of every rank (each draws its own: its batches differ)
    with each checkpoint and restores them at the first batch after a resume (not at load time, so nothing
    Lightning does while restarting draws from them): dropout and friends then draw as in an uninterrupted
    run."""

    def __init__(self) -> None:
        self._to_restore: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        version, state, gauss = random.getstate()
        return gather_ranks({"torch": torch.get_rng_state(), "python": [version, list(state), gauss],
                             "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []})

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._to_restore = this_rank(state)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        state, self._to_restore = self._to_restore, None
        if state:
            torch.set_rng_state(state["torch"])
            version, inner, gauss = state["python"]
            random.setstate((version, tuple(inner), gauss))
            if state["cuda"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_callbacks(folder: str | Path, every_n_steps: int, has_val: bool) -> list[ModelCheckpoint]:
    """`last.ckpt` every `every_n_steps` optimizer steps (and at the end); `best.ckpt` on a new best mAP@10.

    best.ckpt's callback comes first: at a validation's end it decides (and records its best score) before
    a last.ckpt due there is written, so that last.ckpt resumes with the best score it follows."""
    callbacks = []
    if has_val:
        callbacks.append(AtomicModelCheckpoint(
            dirpath=str(folder), filename=Path(BEST).stem, monitor=MONITOR, mode="max", save_top_k=1,
            auto_insert_metric_name=False, enable_version_counter=False,
            # Decided when validation ends, where MONITOR is logged; at an epoch's end without validation
            # Lightning would warn that it is missing.
            save_on_train_epoch_end=False,
        ))
    callbacks.append(AtomicModelCheckpoint(
        dirpath=str(folder), save_last=True, save_top_k=0, every_n_train_steps=max(int(every_n_steps), 0) or None,
        enable_version_counter=False,
    ))
    return callbacks
