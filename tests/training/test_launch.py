"""Rank, world size and the run id come from Lightning's cluster environments."""

from __future__ import annotations

import re

import pytest
from lightning.fabric.plugins.environments import (
    LightningEnvironment,
    SLURMEnvironment,
    TorchElasticEnvironment,
)

from clsp.training.launch import detect, run_id

_CLEAR = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK", "GROUP_RANK", "TORCHELASTIC_RUN_ID", "SLURM_NTASKS",
          "SLURM_JOB_NAME", "SLURM_JOB_ID", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_NODEID", "LSB_JOBID")


@pytest.fixture
def clean_env(monkeypatch):
    for name in _CLEAR:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_plain_process_is_rank_zero(clean_env):
    launch = detect()
    assert isinstance(launch.environment, LightningEnvironment)
    assert launch.is_rank_zero and not launch.external
    assert re.fullmatch(r"\d{8}-\d{6}", run_id(launch))


def test_process_started_by_lightnings_launcher(clean_env):
    clean_env.setenv("LOCAL_RANK", "1")
    assert not detect().is_rank_zero


def test_slurm_tasks_without_rank(clean_env):
    for key, value in {"SLURM_NTASKS": "4", "SLURM_NTASKS_PER_NODE": "2", "SLURM_JOB_ID": "777",
                       "SLURM_JOB_NAME": "train", "SLURM_PROCID": "3", "SLURM_LOCALID": "1", "SLURM_NODEID": "1"}.items():
        clean_env.setenv(key, value)
    launch = detect()
    assert isinstance(launch.environment, SLURMEnvironment)
    assert (launch.global_rank, launch.world_size, launch.node_rank, launch.local_rank) == (3, 4, 1, 1)
    assert launch.external and not launch.is_rank_zero
    assert run_id(launch).endswith("-job777")


def test_interactive_slurm_shell_is_not_a_slurm_launch(clean_env):
    clean_env.setenv("SLURM_NTASKS", "1")
    clean_env.setenv("SLURM_JOB_NAME", "bash")
    assert isinstance(detect().environment, LightningEnvironment)


def test_torchrun(clean_env):
    for key, value in {"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2", "GROUP_RANK": "0",
                       "TORCHELASTIC_RUN_ID": "abc", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}.items():
        clean_env.setenv(key, value)
    launch = detect()
    assert isinstance(launch.environment, TorchElasticEnvironment)
    assert (launch.global_rank, launch.world_size) == (1, 2) and launch.external
