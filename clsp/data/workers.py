"""Loader workers that outlive a stop signal meant for the training process.

SLURM (scancel, a preemption, `--signal=USR1@90` without `B:`), GNU `timeout` and a terminal's Ctrl-C
signal every process of a job step or process group, so DataLoader workers get the SIGTERM, SIGUSR1 or
SIGINT meant for the training process. torch's C handler in each worker ends it on a SIGTERM from anyone;
the training process then dies mid-step on torch's "DataLoader worker ... is killed by signal" (raised
from its SIGCHLD handler) instead of checkpointing at the next step boundary (`clsp.training.preemption`).
SIGINT and SIGUSR1 reach the Python handlers a forked worker inherits (the stop callback's, which ignore
them there) or the defaults where none was set (a KeyboardInterrupt, an exit); they are held here too,
so no stop signal depends on which handlers a worker happened to inherit.

So `shield_worker`, the loaders' `worker_init_fn`, blocks these signals in the worker and waits for them
in a thread: `sigwaitinfo` tells who sent one. A SIGTERM from the worker's parent (how the training
process, or multiprocessing at exit, ends a worker) exits at once, as torch's own handler does; any
other is dropped, since the training process decides and shuts its workers down through the loader.
Hand-written because neither torch nor Python offers it: torch's handler is C, and Python handlers never
see the sender.
"""

from __future__ import annotations

import os
import signal
import threading

STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2})


def shield_worker(worker_id: int) -> None:
    """DataLoader `worker_init_fn`: ignore stop signals unless the parent ends this worker (see above)."""
    if not hasattr(signal, "sigwaitinfo"):  # Windows and macOS: spawned workers, no sigwaitinfo
        return
    parent = os.getppid()
    # Blocked before the thread starts, so it and every thread started later (torch's) inherit the mask.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    threading.Thread(target=_wait_for_parent, args=(parent,), name="clsp-stop-signals", daemon=True).start()


def _wait_for_parent(parent: int) -> None:
    while True:
        info = signal.sigwaitinfo(STOP_SIGNALS)
        if info.si_signo == signal.SIGTERM and info.si_pid == parent:
            os._exit(0)
