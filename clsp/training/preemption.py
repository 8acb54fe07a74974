"""Stop a run at an optimizer step boundary with a checkpoint, on a signal: SLURM's warning before a
preemption or the time limit (`trainer.requeue_signal`, SIGUSR1 by default, from
`#SBATCH --signal=USR1@90`), SIGTERM (scancel, Kubernetes, spot instances, torchrun stopping its
workers) and Ctrl-C (SIGINT).

1. The signal handler only records the signal: no collective, I/O or checkpoint inside a handler. A
   second Ctrl-C exits at once (code 130), without a checkpoint.
2. At each optimizer step boundary the ranks agree whether any of them got a signal (below).
3. Agreed at step s, every rank writes last.ckpt at that boundary through the run's checkpoint
   callback (atomic, all ranks together); if Lightning validates after that batch, after the validation
   (`clsp.training.resume`), so the resumed run neither repeats nor loses it.
4. The run stops before its next batch (`Stopped`, raised from the next batch or epoch start, after every
   callback of step s has run; Lightning then flushes the loggers, so metrics.csv holds step s's row).
   Under SLURM after the requeue signal, rank 0 first requeues the job (`scontrol requeue <job id>`,
   an array task as `<array job>_<task>`), so the requeued job continues the run
   (`clsp.training.restart`).
5. Exit codes: 0 when the job was requeued, else 128 + the signal: 143 SIGTERM, 130 Ctrl-C, 138 SIGUSR1
   (not under SLURM, or the requeue failed).

Agreeing without a new host-device sync: every rank all-reduces (MAX) the strongest signal it got, as a
one-element CPU tensor over a gloo group (the default group when it is gloo), asynchronously, at each
step boundary, and reads the result at the next boundary; so all ranks stop at the same step, one step
after the one where the signal was first seen, and a quiet step costs a tiny all-reduce handled by
gloo's threads (see `python tools/bench.py preemption`). A single process needs no agreement.

Lightning's own SLURM auto-requeue saves inside the signal handler (mid-step, only where the signal
arrived); the runner turns it off (`SLURMEnvironment(auto_requeue=False)`), and this callback's handlers
replace Lightning's SIGTERM handler (which broadcasts inside the handler) while training.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
import torch.distributed as dist
from lightning.fabric.plugins.environments import SLURMEnvironment

from clsp.training.callbacks import AtomicModelCheckpoint
from clsp.training.launch import detect_environment, job_id
from clsp.training.resume import validation_follows

EXIT_REQUEUED = 0


def preemption_plugins() -> list:
    """Trainer plugins: under SLURM, Lightning's SLURM environment without its own auto-requeue (see the
    module doc); elsewhere none."""
    environment = detect_environment()
    return [SLURMEnvironment(auto_requeue=False)] if isinstance(environment, SLURMEnvironment) else []


class Stopped(SystemExit):
    """Raised on every rank once the stop checkpoint is written; its code is the process's exit status.
    A SystemExit: Lightning runs its interrupt path (loggers flushed) and re-raises it."""


def requeue(job: str, run: Callable[..., Any] = subprocess.run) -> str | None:
    """`scontrol requeue <job>`; None when it worked, else why not."""
    try:
        done = run(["scontrol", "requeue", job], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"scontrol requeue {job} failed: {exc}"
    if done.returncode != 0:
        return f"scontrol requeue {job} exited {done.returncode}: {(done.stderr or done.stdout).strip()}"
    return None


class Preemption(L.Callback):
    """Checkpoint at the step boundary and stop on a signal (see the module doc)."""

    def __init__(self, requeue_signal: str = "USR1"):
        self.requeue_signal = signal.Signals["SIG" + requeue_signal.upper().removeprefix("SIG")]
        # Ranked: when ranks got different signals, the strongest decides (a requeue wins).
        self.signals = {signal.SIGINT: 1, signal.SIGTERM: 2} | {self.requeue_signal: 3}
        self.received = 0  # the strongest signal this process got (its rank), 0 for none
        self.agreed = 0  # the strongest any rank got, once the ranks agreed on it
        self.saved = False
        self._pid = os.getpid()
        self._previous: dict[int, Any] = {}
        self._group: Any = None
        self._pending: tuple[Any, torch.Tensor] | None = None
        self._step = -1

    # ------------------------------------------------------------------ signals
    def handle(self, signum: int, frame: Any = None) -> None:
        """The signal handler: record the signal (a second Ctrl-C exits at once)."""
        if os.getpid() != self._pid or (self.agreed and signum != signal.SIGINT):
            return  # a forked data worker (the training process decides), or stopping already
        if signum == signal.SIGINT and self.received:
            os.write(2, b"\nclsp: second Ctrl-C: stopping now, without a checkpoint\n")
            os._exit(128 + signal.SIGINT)
        first = not self.received
        self.received = max(self.received, self.signals.get(signum, 0))
        if first:  # os.write: a handler may interrupt a print
            name = signal.Signals(signum).name
            more = " (Ctrl-C again to stop now)" if signum == signal.SIGINT else ""
            os.write(2, f"\nclsp: {name}: checkpointing at the next optimizer step and stopping{more}\n".encode())

    def _install(self) -> None:
        for signum in self.signals:
            previous = signal.signal(signum, self.handle)
            self._previous.setdefault(signum, previous)

    def _uninstall(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}

    # --------------------------------------------------------------- agreement
    def _agree(self) -> int:
        """The strongest signal any rank got: this process's own in a single process; else the value
        all-reduced at the previous step boundary, read now (and the next all-reduce launched)."""
        if self._group is None:
            return self.received
        agreed = 0
        if self._pending is not None:
            work, value = self._pending
            work.wait()  # launched a whole step ago: done by now on every rank
            agreed = int(value.item())  # a CPU tensor: no device sync
        self._pending = None
        if not agreed:
            value = torch.tensor([self.received], dtype=torch.int32)
            work = dist.all_reduce(value, op=dist.ReduceOp.MAX, group=self._group, async_op=True)
            self._pending = (work, value)
        return agreed

    # ------------------------------------------------------------------- hooks
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if dist.is_initialized() and trainer.world_size > 1:
            # The flags travel on the CPU: a gloo group beside NCCL (every rank creates it, here).
            self._group = dist.group.WORLD if dist.get_backend() == "gloo" else dist.new_group(backend="gloo")
        self._install()  # early, so a signal during setup is kept; again once Lightning has set its own

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._install()
        self._step = trainer.global_step

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if trainer.global_step == self._step or self.agreed:  # inside an accumulation window, or stopping
            return
        self._step = trainer.global_step
        self.agreed = self._agree()
        if self.agreed and not validation_follows(trainer):
            self._save(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.agreed and not self.saved:
            self._save(trainer)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if self.saved:
            self._stop(trainer)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.saved:
            self._stop(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._pending is not None:  # every rank launched it: complete it before the group goes
            self._pending[0].wait()
            self._pending = None

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            self._uninstall()

    # -------------------------------------------------------------------- stop
    def _save(self, trainer: L.Trainer) -> None:
        checkpoint = next((c for c in trainer.checkpoint_callbacks
                           if isinstance(c, AtomicModelCheckpoint) and c.save_last), None)
        if checkpoint is None:
            raise RuntimeError("Preemption needs the run's last.ckpt callback (clsp.training.callbacks)")
        checkpoint.save_last_now(trainer)
        self.saved = True

    def _stop(self, trainer: L.Trainer) -> None:
        signum = next(s for s, rank in self.signals.items() if rank == self.agreed)
        job = job_id() if signum == self.requeue_signal and os.environ.get("SLURM_JOB_ID") else None
        problem = requeue(job) if job and trainer.is_global_zero else None
        if job:  # every rank exits with the same code
            problem = trainer.strategy.broadcast(problem, src=0)
        code = EXIT_REQUEUED if job and problem is None else 128 + signum
        # A requeue (or a launcher) sends SIGTERM now; this handler ignores it, and so does the process once
        # Python's shutdown has put the default action back (which would end it as "killed by SIGTERM").
        atexit.register(signal.signal, signal.SIGTERM, signal.SIG_IGN)
        if trainer.is_global_zero:
            then = f"SLURM job {job} requeued" if code == EXIT_REQUEUED else (problem or "continue with resume=latest")
            print(f"clsp: stopped by {signal.Signals(signum).name} at step {trainer.global_step} with a checkpoint; "
                  f"{then}", file=sys.stderr, flush=True)
        raise Stopped(code)
