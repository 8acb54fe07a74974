"""Test-only hooks for the restart tests: a callback that makes the run die (or get a signal) at a chosen
optimizer step, added to a run as `+trainer.callbacks.die={_target_: restart_hooks.DieAt}` with this
folder on PYTHONPATH. Nothing here ships in clsp.

Set by environment, so one config serves every process of a multi-process run:

    CLSP_TEST_DIE_AT_STEP=S    act once the run has finished optimizer step S
    CLSP_TEST_DIE_WHEN=batch   at the start of the next training batch (default),
                    =window    at the end of the next batch that does not step the optimizer (a kill
                               inside a gradient accumulation window), or
                    =validation at the start of the next validation (a kill between a checkpoint and
                               the validation that follows it)
    CLSP_TEST_DIE_SIGNAL=KILL  the signal sent to this process (KILL, TERM, INT, USR1, ...)
    CLSP_TEST_DIE_RANK=0       only this global rank acts (default: every rank)
    CLSP_TEST_DIE_ONCE=PATH    act only if PATH does not exist yet, and create it (a restarted group lives)
    CLSP_TEST_DIE_TIMES=2      send the signal this many times in a row (a second Ctrl-C)
    CLSP_TEST_DIE_GROUP=1      send it to every process of this process group, loader workers included, as
                               scancel, `timeout` and a terminal's Ctrl-C do (the run must be a session leader)
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import lightning as L


class DieAt(L.Callback):
    def __init__(self) -> None:
        step = os.environ.get("CLSP_TEST_DIE_AT_STEP")
        self.step = int(step) if step else None
        self.when = os.environ.get("CLSP_TEST_DIE_WHEN", "batch")
        self.signal = getattr(signal, "SIG" + os.environ.get("CLSP_TEST_DIE_SIGNAL", "KILL"))
        rank = os.environ.get("CLSP_TEST_DIE_RANK")
        self.rank = int(rank) if rank else None
        once = os.environ.get("CLSP_TEST_DIE_ONCE")
        self.once = Path(once) if once else None
        self.times = int(os.environ.get("CLSP_TEST_DIE_TIMES", "1"))
        self.group = os.environ.get("CLSP_TEST_DIE_GROUP") == "1"
        self.done = False
        self._step_at_start = -1

    def _maybe_die(self, trainer: L.Trainer) -> None:
        if self.done or self.step is None or trainer.global_step < self.step:
            return
        if self.rank is not None and trainer.global_rank != self.rank:
            return
        self.done = True  # a signal that does not end the process acts once
        if self.once is not None:
            if self.once.exists():
                return
            self.once.touch()
        for _ in range(self.times):
            if self.group:  # sent by another process, as slurmstepd or `timeout` (which is in the group too)
                subprocess.run(["kill", f"-{self.signal.name[3:]}", "--", f"-{os.getpgrp()}"])
            else:
                os.kill(os.getpid(), self.signal)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self._step_at_start = trainer.global_step
        if self.when == "batch":
            self._maybe_die(trainer)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self.when == "window" and trainer.global_step == self._step_at_start:
            self._maybe_die(trainer)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.when == "validation":
            self._maybe_die(trainer)
