"""Signals stop a run at a step boundary with a checkpoint (clsp.training.preemption): the handler, the
agreement between ranks, the SLURM requeue and the exit codes; end to end (marked slow): SIGTERM and
Ctrl-C on one process, SIGUSR1 to two SLURM-style tasks that requeue and continue, and a torchrun group
restarted after a worker died, each ending with the weights of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import restart_runs as R
import torch.multiprocessing as mp
from lightning.fabric.plugins.environments import SLURMEnvironment

from clsp.training.preemption import EXIT_REQUEUED, Preemption, Stopped, preemption_plugins, requeue


@pytest.fixture
def scontrol(tmp_path, monkeypatch):
    """A stub `scontrol` first on PATH; returns the file its calls are written to, one line each."""
    bin_dir, log = tmp_path / "bin", tmp_path / "scontrol.log"
    bin_dir.mkdir()
    stub = bin_dir / "scontrol"
    stub.write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    stub.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return log


def _trainer(**kw):
    """The parts of a Trainer the stop reads: a single process."""
    return SimpleNamespace(**({"is_global_zero": True, "global_step": 7, "world_size": 1,
                               "strategy": SimpleNamespace(broadcast=lambda obj, src=0: obj)} | kw))


def test_handler_records_the_strongest_signal_and_the_stop_exits_with_its_code(monkeypatch):
    for name in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(name, raising=False)
    callback = Preemption("USR1")
    callback.handle(signal.SIGINT)
    assert callback._agree() == 1
    callback.handle(signal.SIGUSR1)
    callback.handle(signal.SIGTERM)  # weaker than the requeue signal: the requeue stays
    callback.agreed = callback._agree()
    with pytest.raises(Stopped) as stop:
        callback._stop(_trainer())
    assert stop.value.code == 128 + signal.SIGUSR1  # not under SLURM: nothing to requeue


def test_requeue_signal_under_slurm_requeues_the_array_task_and_exits_0(scontrol, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "4250")
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "7")
    callback = Preemption("usr2")
    callback.handle(signal.SIGUSR2)
    callback.agreed = callback._agree()
    with pytest.raises(Stopped) as stop:
        callback._stop(_trainer())
    assert stop.value.code == EXIT_REQUEUED
    assert scontrol.read_text().split() == ["requeue", "4242_7"]


def test_requeue_failure_is_reported():
    failed = SimpleNamespace(returncode=1, stderr="Invalid job id", stdout="")
    assert "Invalid job id" in requeue("1", run=lambda *a, **k: failed)
    assert requeue("1", run=lambda *a, **k: SimpleNamespace(returncode=0)) is None

    def missing(*args, **kwargs):
        raise FileNotFoundError("scontrol")

    assert "scontrol requeue 1 failed" in requeue("1", run=missing)


def test_lightnings_own_slurm_requeue_is_off(monkeypatch):
    for key, value in {"SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "2", "SLURM_JOB_ID": "1", "SLURM_JOB_NAME": "train", "SLURM_PROCID": "0",
                       "SLURM_LOCALID": "0", "SLURM_NODEID": "0"}.items():
        monkeypatch.setenv(key, value)
    (plugin,) = preemption_plugins()
    assert isinstance(plugin, SLURMEnvironment) and not plugin.auto_requeue
    monkeypatch.delenv("SLURM_NTASKS")
    monkeypatch.delenv("SLURM_JOB_NAME")
    assert preemption_plugins() == []


def _agree_worker(rank: int, port: int, signalled_at: int, out) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    callback = Preemption()
    callback._group = dist.group.WORLD
    decisions = []
    for boundary in range(6):
        if rank == 1 and boundary == signalled_at:
            callback.handle(signal.SIGTERM)
        decisions.append(callback._agree())
        if decisions[-1]:
            break
    out.put((rank, decisions))
    dist.destroy_process_group()


def test_ranks_agree_at_the_same_step_one_boundary_after_a_signal():
    # Rank 1 alone is signalled after boundary 2's all-reduce was launched: both ranks stop at boundary 4.
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    port = R.free_port()
    procs = [ctx.Process(target=_agree_worker, args=(rank, port, 3, out)) for rank in range(2)]
    for p in procs:
        p.start()
    results = dict(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert results[0] == results[1] == [0, 0, 0, 0, 2]


def test_a_second_ctrl_c_exits_at_once(tmp_path):
    script = textwrap.dedent("""
        import os, signal, time
        from clsp.training.preemption import Preemption
        callback = Preemption()
        callback._install()
        os.kill(os.getpid(), signal.SIGINT)
        assert callback.received == 1
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(30)
    """)
    done = subprocess.run([sys.executable, "-c", script], env=R.env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 130, done.stderr
    assert "Ctrl-C again to stop now" in done.stderr and "second Ctrl-C" in done.stderr


# ------------------------------------------------------------------------------------------- end to end
def _overrides(demo_root, out: Path, *extra: str) -> list[str]:
    return [f"data.demo.root={demo_root}", "data.demo.n_train=96", "data.demo.n_val=32", "data.demo.n_test=32",
            "data.demo.samples_per_shard=32",
            "data.batch_size=16", "data.num_workers=0", "trainer.enable_progress_bar=false",
            "trainer.log_every_n_steps=1", "run.final_eval=false", "trainer.ema_decay=0.9",
            "trainer.checkpoint_every_n_steps=100", f"run.output_dir={out}", *extra]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["TERM", "INT"])
def test_signal_checkpoints_at_the_step_boundary_and_resume_latest_continues_exactly(name, demo_root, tmp_path):
    # 6 optimizer steps an epoch: the signal at step 2's first batch checkpoints at step 3 and stops.
    whole = tmp_path / "whole"
    R.run(_overrides(demo_root, whole, "trainer.max_steps=8"))
    parted = tmp_path / "parted"
    stopped = R.run([*_overrides(demo_root, parted, "trainer.max_steps=8"), R.DIE], expect=128 + signal.Signals[f"SIG{name}"],
                    CLSP_TEST_DIE_AT_STEP="2", CLSP_TEST_DIE_SIGNAL=name)
    assert "stopped by SIG" in stopped.stderr and "Traceback" not in stopped.stderr
    folder = R.run_folder(parted / "demo")
    assert R.last_step(folder) == 3
    R.run([*_overrides(demo_root, parted, "trainer.max_steps=8"), "resume=latest"])
    a = R.run_folder(whole / "demo")
    assert R.max_weight_diff(a, folder) <= 1e-6
    assert R.metrics_diff(a, folder) == []  # no row lost or repeated


@pytest.mark.slow
def test_a_signal_to_every_process_with_loader_workers_still_stops_at_a_checkpoint(demo_root, tmp_path):
    # As scancel or `timeout` do, SIGTERM reaches the loader workers too: they outlive it (clsp.data.workers),
    # and the run checkpoints at step 3 and resumes exactly, instead of dying on "DataLoader worker killed".
    # Batches of 8: 12 an epoch, so the workers still have batches to make when the signal comes.
    workers = ["trainer.max_steps=8", "data.num_workers=2", "data.batch_size=8"]
    whole = tmp_path / "whole"
    R.run(_overrides(demo_root, whole, *workers))
    parted = tmp_path / "parted"
    stopped = R.run([*_overrides(demo_root, parted, *workers), R.DIE], expect=128 + signal.SIGTERM,
                    CLSP_TEST_DIE_AT_STEP="2", CLSP_TEST_DIE_SIGNAL="TERM", CLSP_TEST_DIE_GROUP="1")
    assert "stopped by SIGTERM" in stopped.stderr and "Traceback" not in stopped.stderr, stopped.stderr[-3000:]
    folder = R.run_folder(parted / "demo")
    assert R.last_step(folder) == 3
    R.run([*_overrides(demo_root, parted, *workers), "resume=latest"])
    assert R.max_weight_diff(R.run_folder(whole / "demo"), folder) <= 1e-6
    assert R.metrics_diff(R.run_folder(whole / "demo"), folder) == []


@pytest.mark.slow
def test_second_ctrl_c_stops_without_a_checkpoint(demo_root, tmp_path):
    done = R.run([*_overrides(demo_root, tmp_path, "trainer.max_steps=8"), R.DIE], expect=130,
                 CLSP_TEST_DIE_AT_STEP="2", CLSP_TEST_DIE_SIGNAL="INT", CLSP_TEST_DIE_TIMES="2")
    assert "second Ctrl-C" in done.stderr
    assert not (R.run_folder(tmp_path / "demo") / "checkpoints" / "last.ckpt").exists()


def _two_tasks(demo_root, out: Path, job: str, port: int, *extra: str, **extra_env: str) -> list[subprocess.Popen]:
    """Two SLURM tasks started by hand, as srun starts them (no RANK; SLURM_PROCID / SLURM_LOCALID); `extra`
    overrides follow TWO's."""
    slurm = {"SLURM_JOB_ID": job, "SLURM_JOB_NAME": "clsp-test", "SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "2",
             "SLURM_NNODES": "1", "SLURM_NODEID": "0", "SLURM_NODELIST": "127.0.0.1", "MASTER_PORT": str(port)}
    cmd = R.train_cmd([*_overrides(demo_root, out, *TWO, *extra), R.DIE])
    return [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
                             env=R.env(**slurm, SLURM_PROCID=str(i), SLURM_LOCALID=str(i), **extra_env))
            for i in range(2)]


# 96 clips in 3 shards of 32 over 2 ranks (64 + 32): both stop at 2 batches of 16, 2 optimizer steps an epoch.
TWO = ["trainer.devices=2", "trainer.strategy=ddp", "trainer.max_steps=6"]


def _finish(procs: list[subprocess.Popen], timeout: float = 600) -> list[str]:
    try:
        errors = [p.communicate(timeout=timeout)[1] for p in procs]
    finally:
        for p in procs:
            R.kill_group(p)
    assert [p.returncode for p in procs] == [0, 0], errors[0][-3000:] + errors[1][-3000:]
    return errors


@pytest.fixture(scope="module")
def two_task_reference(demo_root, tmp_path_factory) -> Path:
    """An uninterrupted 2-task run (SLURM-style tasks)."""
    out = tmp_path_factory.mktemp("two-task-whole")
    _finish(_two_tasks(demo_root, out, "5000", R.free_port()))
    return R.run_folder(out / "demo")


@pytest.mark.slow
def test_slurm_preemption_requeues_and_the_requeued_job_continues_its_run(demo_root, tmp_path, scontrol,
                                                                          two_task_reference):
    # Rank 1 alone gets SIGUSR1 at step 2's batch: the ranks agree a step later and stop at step 4.
    procs = _two_tasks(demo_root, tmp_path, "4242", R.free_port(), CLSP_TEST_DIE_AT_STEP="2",
                       CLSP_TEST_DIE_SIGNAL="USR1", CLSP_TEST_DIE_RANK="1")
    deadline = time.time() + 600
    while not scontrol.exists() and time.time() < deadline and any(p.poll() is None for p in procs):
        time.sleep(0.2)
    for p in procs:  # what SLURM does to a requeued job: SIGTERM, then SIGKILL after its grace period
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    errors = _finish(procs, timeout=60)
    assert scontrol.read_text().split() == ["requeue", "4242"]
    assert "SLURM job 4242 requeued" in errors[0]
    folder = R.run_folder(tmp_path / "demo")
    assert folder.name.endswith("-job4242") and R.last_step(folder) == 4

    # The requeued job: same job id, SLURM_RESTART_COUNT set by SLURM, no resume=.
    errors = _finish(_two_tasks(demo_root, tmp_path, "4242", R.free_port(), SLURM_RESTART_COUNT="1"))
    assert f"continuing {folder} from step 4" in errors[0]
    assert R.run_folder(tmp_path / "demo") == folder
    assert R.max_weight_diff(two_task_reference, folder) <= 1e-6
    assert R.metrics_diff(two_task_reference, folder) == []


@pytest.mark.slow
def test_slurm_sigterm_to_every_process_with_loader_workers_stops_and_the_requeued_job_continues(demo_root, tmp_path):
    # scancel and SLURM's preemption send SIGTERM to every process of the step, loader workers too (sent here by
    # another process to each task's process group at step 1). Batches of 4 (8 an epoch on each rank) leave the
    # workers batches to make; they outlive it (clsp.data.workers), and the ranks stop together at step 3.
    workers = ["data.num_workers=2", "data.batch_size=4"]
    whole = tmp_path / "whole"
    _finish(_two_tasks(demo_root, whole, "5001", R.free_port(), *workers))
    parted = tmp_path / "parted"
    procs = _two_tasks(demo_root, parted, "4343", R.free_port(), *workers, CLSP_TEST_DIE_AT_STEP="1",
                       CLSP_TEST_DIE_SIGNAL="TERM", CLSP_TEST_DIE_GROUP="1")
    try:
        errors = [p.communicate(timeout=600)[1] for p in procs]
    finally:
        for p in procs:
            R.kill_group(p)
    assert [p.returncode for p in procs] == [128 + signal.SIGTERM] * 2, errors[0][-3000:] + errors[1][-3000:]
    assert "stopped by SIGTERM at step 3" in errors[0] and "Traceback" not in errors[0] + errors[1]
    folder = R.run_folder(parted / "demo")
    assert R.last_step(folder) == 3
    # SLURM requeues a preempted job itself: same job id, SLURM_RESTART_COUNT set, no resume=.
    errors = _finish(_two_tasks(demo_root, parted, "4343", R.free_port(), *workers, SLURM_RESTART_COUNT="1"))
    assert f"continuing {folder} from step 3" in errors[0]
    reference = R.run_folder(whole / "demo")
    assert R.max_weight_diff(reference, folder) <= 1e-6
    assert R.metrics_diff(reference, folder) == []


@pytest.mark.slow
def test_torchrun_restarted_group_continues_its_run(demo_root, tmp_path, two_task_reference):
    # Worker 1 dies (SIGKILL) once, after the step-4 checkpoint; torchrun restarts the group, which continues.
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "--max-restarts", "1",
           *R.train_cmd([*_overrides(demo_root, tmp_path, *TWO), "trainer.checkpoint_every_n_steps=2", R.DIE])[1:]]
    env = R.env(CLSP_TEST_DIE_AT_STEP="4", CLSP_TEST_DIE_RANK="1", CLSP_TEST_DIE_ONCE=str(tmp_path / "died"))
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    assert (tmp_path / "died").exists()
    assert "continuing" in done.stderr and "from step 4" in done.stderr
    folder = R.run_folder(tmp_path / "demo")
    assert R.max_weight_diff(two_task_reference, folder) <= 1e-6
    assert R.metrics_diff(two_task_reference, folder) == []
