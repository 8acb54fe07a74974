"""Data counters of a run as a Lightning callback: skipped samples by reason, truncated captions,
padding efficiency, and the data failure limit over the whole run.

Every batch carries, on the host, what its reader skipped since the previous batch and how many of
its captions were cut (`clsp.data.batch.Batch`); this callback adds them up (checkpointed, each rank's
own, so a resumed run keeps counting), logs them, and applies `data.max_failure_rate` to the run so far
(`clsp.data.skips`): a small data set read many times stops too, with the one-line data error.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from clsp.data.batch import Batch
from clsp.data.skips import EVENTS, SkipCounter
from clsp.training.resume import gather_ranks, this_rank


class DataCounters(L.Callback):
    def __init__(self, max_failure_rate: float | None = 0.1):
        self.run = SkipCounter(max_failure_rate)  # this rank's counts over the run
        self.truncated = 0

    @property
    def skipped(self) -> dict[str, int]:
        return dict(self.run.totals)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Batch,
                           batch_idx: int) -> None:
        self.truncated += batch.truncated
        self.run.add(batch.skipped, good=batch.size)  # raises DataError past the failure limit
        failures = sum(n for reason, n in self.run.totals.items() if reason not in EVENTS)
        # Host numbers are logged as CPU tensors: Lightning would upload a Python float to the device,
        # a blocking copy (a host-device sync) every step.
        efficiency = torch.tensor(batch.padding_efficiency)  # real / padded audio samples: what bucketing buys
        log = {"data/skipped": torch.tensor(float(failures)), "data/truncated": torch.tensor(float(self.truncated)),
               "data/padding_efficiency": efficiency}
        pl_module.log_dict(log, batch_size=batch.size)
        pl_module.log("pad_eff", efficiency, prog_bar=True, logger=False, batch_size=batch.size)
        if failures or self.truncated:
            pl_module.log_dict({"skipped": log["data/skipped"], "truncated": log["data/truncated"]}, prog_bar=True,
                               logger=False, batch_size=batch.size)

    def state_dict(self) -> dict[str, Any]:
        return gather_ranks({"totals": dict(self.run.totals), "good": self.run.good, "failures": self.run.failures,
                             "truncated": self.truncated})

    def load_state_dict(self, state: dict[str, Any]) -> None:
        state = this_rank(state)  # each rank its own counts
        self.run.totals.update(state.get("totals", {}))
        self.run.good = int(state.get("good", 0))
        self.run.failures = int(state.get("failures", 0))
        self.truncated = int(state.get("truncated", 0))
