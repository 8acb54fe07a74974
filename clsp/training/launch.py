"""Who this process is in a multi-process run, and how the processes agree before training.

Rank, world size and node come from Lightning's cluster environments (torchrun, SLURM, LSF,
MPI, else Lightning's own launcher), detected in the order the Trainer detects them, so the run
folder and the rank-zero work are decided with the same answer the Trainer will reach.

Some work must happen once, before `trainer.fit` exists to coordinate it: building the demo
corpus, picking the run folder, writing config.yaml and the tokenizer. Under an external
launcher (torchrun, srun, ...) every process is already running, so the process group is
started here, early, with the address Lightning would use (Lightning then finds it started and
reuses it); rank 0 does the work and the others wait on a broadcast, which is also a barrier.
Under Lightning's own launcher the other processes do not exist yet: rank 0 does the work
before `fit` starts them, and they inherit the run id through the environment.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from lightning.fabric.plugins.environments import (
    ClusterEnvironment,
    LightningEnvironment,
    LSFEnvironment,
    MPIEnvironment,
    SLURMEnvironment,
    TorchElasticEnvironment,
)

from clsp.errors import UserError

T = TypeVar("T")

# Set by the first process so that the processes Lightning's launcher starts use the same run folder.
RUN_ID_VAR = "CLSP_RUN_ID"
# Errors rank 0 hands to every rank (one line each); anything else is a bug and keeps its traceback.
USER_ERRORS = (UserError,)  # ConfigError included


@dataclass(frozen=True)
class Launch:
    """This process's place in the run."""

    environment: ClusterEnvironment
    global_rank: int
    world_size: int  # processes started outside Lightning (1 under Lightning's own launcher)
    node_rank: int
    local_rank: int

    @property
    def is_rank_zero(self) -> bool:
        return self.global_rank == 0

    @property
    def external(self) -> bool:
        """True when a launcher outside Lightning started all processes (they run side by side now)."""
        return self.world_size > 1

    @property
    def job_id(self) -> str | None:
        """The scheduler's job id (SLURM, LSF), which names the run folder; see `job_id`."""
        return job_id()


def job_id(env: Mapping[str, str] | None = None) -> str | None:
    """The scheduler's job id, whatever started the processes (srun, or torchrun inside a SLURM job): an
    array task's `<array job>_<task>` (what `scontrol requeue` takes), else SLURM_JOB_ID, else LSF's."""
    env = os.environ if env is None else env
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID") or env.get("LSB_JOBID") or None


def detect_environment() -> ClusterEnvironment:
    """The cluster environment Lightning's Trainer would pick (same classes, same order)."""
    for env_type in (TorchElasticEnvironment, SLURMEnvironment, LSFEnvironment, MPIEnvironment):
        if env_type.detect():
            return env_type()
    return LightningEnvironment()


def detect() -> Launch:
    env = detect_environment()
    if isinstance(env, LightningEnvironment):
        # Lightning's launcher gives its children LOCAL_RANK and NODE_RANK; the first process has neither.
        rank = 0 if env.node_rank() == 0 and env.local_rank() == 0 else -1
        return Launch(env, rank, 1, env.node_rank(), env.local_rank())
    return Launch(env, env.global_rank(), env.world_size(), env.node_rank(), env.local_rank())


def start_process_group(launch: Launch, accelerator: str) -> None:
    """Start torch.distributed for externally launched processes, at the address Lightning would use."""
    if not launch.external or dist.is_initialized():
        return
    env = launch.environment
    cuda = accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(launch.local_rank)
    os.environ["MASTER_ADDR"] = env.main_address
    os.environ["MASTER_PORT"] = str(env.main_port)
    dist.init_process_group("nccl" if cuda else "gloo", rank=launch.global_rank, world_size=launch.world_size,
                            store=_restart_store(env))


def _restart_store(env: ClusterEnvironment) -> dist.Store | None:
    """torchrun's store, its keys kept apart per restart; None (env://) elsewhere.

    torchrun (c10d rendezvous) lends its workers the agent's TCPStore, which outlives a restart, and the
    process group's keys are the same in every attempt: a restarted worker can read a peer's address from
    the failed attempt and fail to connect (pytorch/pytorch#135712). A prefix per restart keeps them apart.
    """
    if not isinstance(env, TorchElasticEnvironment) or os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    store = dist.TCPStore(env.main_address, env.main_port, env.world_size(), is_master=False,
                          timeout=timedelta(minutes=30))
    return dist.PrefixStore(f"clsp/attempt_{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)


def run_id(launch: Launch) -> str:
    """The run folder's name: a time stamp, plus the scheduler's job id when there is one."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    job = launch.job_id
    return f"{stamp}-job{job}" if job else stamp


def once(launch: Launch, work: Callable[[], T], *, fallback: Callable[[], T] | None = None) -> T:
    """Run `work` on rank 0 only and give its result (or its user error) to every process.

    Other processes wait until rank 0 is done. A user error (`UserError`, so `ConfigError` too) raised by rank 0 is raised on every
    rank, so a bad setting stops all of them with the same line instead of leaving them waiting.
    Processes started later by Lightning's launcher call `fallback` (rank 0 has finished by then).
    """
    if dist.is_initialized() and dist.get_world_size() > 1:
        box: list[Any] = [None]
        if dist.get_rank() == 0:
            try:
                box[0] = ("ok", work())
            except USER_ERRORS as exc:
                box[0] = ("error", (type(exc), exc.what, exc.todo))
                dist.broadcast_object_list(box, src=0)
                raise
            except BaseException as exc:  # a bug: rank 0 keeps its traceback, the others must not wait forever
                box[0] = ("crash", f"{type(exc).__name__}: {exc}")
                dist.broadcast_object_list(box, src=0)
                raise
        dist.broadcast_object_list(box, src=0)
        kind, value = box[0]
        if kind == "error":
            cls, what, todo = value  # rebuilt from its parts: the same one line on every rank
            raise cls(what, todo)
        if kind == "crash":
            raise RuntimeError(f"rank 0 failed before training: {value}")
        return value
    if launch.is_rank_zero or fallback is None:
        return work()
    return fallback()
