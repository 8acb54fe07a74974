"""Loader workers outlive a stop signal sent to every process (SLURM, `timeout`, Ctrl-C), and still end when
their parent ends them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from torch.utils.data import DataLoader, IterableDataset

from clsp.data.workers import shield_worker

pytestmark = pytest.mark.skipif(not hasattr(signal, "sigwaitinfo") or sys.platform != "linux",
                                reason="forked workers and sigwaitinfo: Linux")


class _Slow(IterableDataset):
    def __iter__(self):
        for i in range(6):
            time.sleep(0.05)
            yield os.getpid(), i


def _send_from_elsewhere(pid: int, name: str) -> None:
    """The signal from another process (as slurmstepd or `timeout` sends it), not the worker's parent."""
    subprocess.run(["kill", f"-{name}", str(pid)], check=True)


def _loader(shielded: bool) -> DataLoader:
    return DataLoader(_Slow(), batch_size=None, num_workers=1, worker_init_fn=shield_worker if shielded else None)


def test_a_shielded_worker_outlives_stop_signals_from_other_processes():
    items = iter(_loader(shielded=True))
    pid, first = next(items)
    for name in ("TERM", "USR1", "INT"):
        _send_from_elsewhere(pid, name)
    time.sleep(0.3)
    assert [i for _, i in items] == list(range(first + 1, 6))  # every item, no "worker killed" error


def test_without_the_shield_the_loader_dies_on_the_signal():  # what the shield prevents
    items = iter(_loader(shielded=False))
    pid, _ = next(items)
    with pytest.raises(RuntimeError, match="killed by signal"):  # from torch's SIGCHLD handler, wherever it is
        _send_from_elsewhere(pid, "TERM")
        time.sleep(0.3)
        list(items)


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"


def test_a_sigterm_from_the_parent_still_ends_the_worker():
    items = iter(_loader(shielded=True))
    pid, _ = next(items)
    os.kill(pid, signal.SIGTERM)  # this process is the worker's parent: how it (or multiprocessing) ends one
    deadline = time.time() + 10
    while _state(pid) not in ("Z", "X", "gone") and time.time() < deadline:
        time.sleep(0.05)
    assert _state(pid) in ("Z", "X", "gone")
    del items
