"""Exact resume from any checkpoint position: where a checkpoint stands in Lightning's loop, and the two
things Lightning's own restart logic gets wrong for us.

Lightning restores its loops from the checkpoint (`loops.fit_loop`: epoch and batch progress) and
decides by itself where a resumed run goes on: a checkpoint written at an epoch's last batch continues
with the next epoch from its start, any other continues the same epoch after the batch it was written
at. The training data follows that decision exactly because its loader is a Lightning stateful loader
whose state is read from these same counters (`loop_position`, used by
`clsp.training.datamodule.ResumableLoader`), not counted by the loader, which runs ahead of training
by Lightning's prefetch. The random state follows it too (`clsp.training.callbacks.RandomState`), each
rank's own (`gather_ranks`).

What Lightning's restart does not cover:

- A checkpoint written on a batch after which Lightning validates (the epoch's end, or every
  `val_check_interval` batches) records the batch but not the validation: a run killed during that
  validation resumes after it, and the validation (its metrics.csv row, its chance at best.ckpt) is
  lost. Such a checkpoint is written after the validation instead (`validation_follows`, used by the
  checkpoint callbacks and `clsp.training.preemption`); Lightning then resumes it as it resumes its
  own validation-end checkpoints, without validating again.
- Resuming from a checkpoint written at a validation's end, Lightning 2.6 counts the resumed step twice
  in the step its loggers write (`_batches_that_stepped`): every metrics.csv row after the resume
  would be one step late. `ResumedStep` sets it back at the first batch after a resume; at every
  batch start of an uninterrupted run it equals the optimizer step.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch.distributed as dist


def loop_position(trainer: L.Trainer) -> tuple[int, int, bool]:
    """(epoch, batches of it trained, whether the last of them was the epoch's last) from Lightning's loop
    counters. Right for a checkpoint written after a batch (`processed` counts it before `completed`
    does) and for one written at a validation's end."""
    batches = trainer.fit_loop.epoch_loop.batch_progress
    return int(trainer.current_epoch), int(batches.current.processed), bool(batches.is_last_batch)


def validation_follows(trainer: L.Trainer) -> bool:
    """Whether Lightning validates right after the current training batch: its own rule
    (`_should_check_val_fx`), read at the batch's end; the epoch's last batch when that is unavailable."""
    epoch_loop = trainer.fit_loop.epoch_loop
    if not trainer.enable_validation:
        return False
    fetcher = getattr(trainer.fit_loop, "_data_fetcher", None)
    check = getattr(epoch_loop, "_should_check_val_fx", None)
    if fetcher is None or check is None:
        return bool(epoch_loop.batch_progress.is_last_batch)
    return bool(check(fetcher))


def gather_ranks(state: dict[str, Any]) -> dict[str, Any]:
    """Every rank's `state` for a checkpoint, which rank 0 alone writes (random states, data counters: each
    rank has its own). A collective: called by every rank, as Lightning collects a checkpoint on all."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return {"ranks": [state]}
    states: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(states, state)
    return {"ranks": states}


def this_rank(saved: dict[str, Any]) -> dict[str, Any]:
    """This rank's part of a `gather_ranks` state; rank 0's when the number of ranks changed (the run then
    cannot continue exactly anyway); a state saved without ranks as it is."""
    ranks = saved.get("ranks")
    if ranks is None:
        return saved
    world = dist.get_world_size() if dist.is_initialized() else 1
    rank = dist.get_rank() if dist.is_initialized() else 0
    return ranks[rank] if len(ranks) == world else ranks[0]


class ResumedStep(L.Callback):
    """After a resume, the step Lightning's loggers write is the optimizer step again (see module doc)."""

    def __init__(self) -> None:
        self._resumed = False

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        self._resumed = True

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if self._resumed:
            self._resumed = False
            trainer.fit_loop.epoch_loop._batches_that_stepped = trainer.global_step
