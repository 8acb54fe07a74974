"""Which run folder and checkpoint a run continues (clsp.training.restart): `resume` and restarted jobs."""

from __future__ import annotations

import json
import os

import pytest
import torch

from clsp.errors import ConfigError
from clsp.training.launch import detect, job_id
from clsp.training.restart import LAUNCH_FILE, continued_run, launch_ids, record_launch, restart_of
from clsp.training.runner import run_folder
from clsp.training.schema import RunConfig, TrainConfig

_IDS = ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_RESTART_COUNT", "LSB_JOBID",
        "TORCHELASTIC_RUN_ID", "TORCHELASTIC_RESTART_COUNT", "SLURM_NTASKS", "SLURM_JOB_NAME", "CLSP_RUN_ID")


@pytest.fixture
def env(monkeypatch):
    for name in _IDS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def _run(root, name: str, ids: dict[str, str], step: int | None = None):
    folder = root / name
    (folder / "checkpoints").mkdir(parents=True)
    (folder / LAUNCH_FILE).write_text(json.dumps(ids))
    if step is not None:
        torch.save({"global_step": step}, folder / "checkpoints" / "last.ckpt")
    return folder


def test_job_ids():
    assert job_id({"SLURM_JOB_ID": "9", "SLURM_ARRAY_JOB_ID": "4242", "SLURM_ARRAY_TASK_ID": "3"}) == "4242_3"
    assert job_id({"SLURM_JOB_ID": "9"}) == "9"
    assert job_id({"LSB_JOBID": "5"}) == "5"
    assert job_id({}) is None


def test_a_restart_is_what_slurm_or_torchrun_says_it_is():
    assert restart_of({"SLURM_JOB_ID": "9"}) == {}  # the first start of a job
    assert restart_of({"SLURM_JOB_ID": "9", "SLURM_RESTART_COUNT": "1"}) == {"job": "9"}
    assert restart_of({"TORCHELASTIC_RUN_ID": "r", "TORCHELASTIC_RESTART_COUNT": "0"}) == {}
    assert restart_of({"TORCHELASTIC_RUN_ID": "r", "TORCHELASTIC_RESTART_COUNT": "2"}) == {"elastic_run": "r"}
    assert launch_ids({"SLURM_JOB_ID": "9", "TORCHELASTIC_RUN_ID": "r"}) == {"job": "9", "elastic_run": "r"}


def test_requeued_slurm_job_continues_its_own_folder(env, tmp_path, capsys):
    mine = _run(tmp_path, "20260101-000000-job42", {"job": "42"}, step=12)
    _run(tmp_path, "20260101-000001-job43", {"job": "43"}, step=30)
    env.setenv("SLURM_JOB_ID", "42")
    assert continued_run(None, tmp_path, None) == (None, None)  # not restarted: a fresh run
    env.setenv("SLURM_RESTART_COUNT", "1")
    assert continued_run(None, tmp_path, None) == (mine, str(mine / "checkpoints" / "last.ckpt"))
    line = capsys.readouterr().err.strip()
    assert line == f"clsp: restart of SLURM job 42: continuing {mine} from step 12 ({mine}/checkpoints/last.ckpt)"
    assert continued_run("never", tmp_path, None) == (None, None)


def test_restarted_torchrun_group_continues_its_folder_even_without_a_checkpoint(env, tmp_path, capsys):
    mine = _run(tmp_path, "a", {"elastic_run": "abc"})
    env.setenv("TORCHELASTIC_RUN_ID", "abc")
    env.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    assert continued_run(None, tmp_path, None) == (mine, None)
    assert "from the start" in capsys.readouterr().err
    # run.dir given: that folder, if it was started under this id.
    assert continued_run(None, tmp_path / "elsewhere", str(mine)) == (mine, None)
    env.setenv("TORCHELASTIC_RUN_ID", "other")
    assert continued_run(None, tmp_path, None) == (None, None)


def test_record_launch_writes_the_ids_a_restart_looks_for(env, tmp_path):
    env.setenv("SLURM_JOB_ID", "7")
    env.setenv("TORCHELASTIC_RUN_ID", "xyz")
    record_launch(tmp_path)
    assert json.loads((tmp_path / LAUNCH_FILE).read_text()) == {"elastic_run": "xyz", "job": "7"}


def test_resume_latest_without_last_ckpt_names_the_checkpoints_there(tmp_path):
    run = _run(tmp_path, "r1", {})
    torch.save({"global_step": 96}, run / "checkpoints" / "best.ckpt")
    with pytest.raises(ConfigError) as error:
        continued_run("latest", tmp_path, None)
    assert f"{run}/checkpoints/best.ckpt (step 96)" in str(error.value)
    assert "resume=PATH" in str(error.value)
    with pytest.raises(ConfigError, match="no checkpoint under"):
        continued_run("latest", tmp_path / "empty", None)


def test_resume_from_a_path(tmp_path):
    run = _run(tmp_path, "r1", {}, step=5)
    ckpt = run / "checkpoints" / "last.ckpt"
    assert continued_run(str(ckpt), tmp_path, None) == (run.resolve(), str(ckpt))  # its run continues
    copied = tmp_path / "x.ckpt"
    copied.write_bytes(ckpt.read_bytes())
    assert continued_run(str(copied), tmp_path, None) == (None, str(copied))  # a new run starts from it
    with pytest.raises(ConfigError, match="checkpoint not found"):
        continued_run(str(tmp_path / "missing.ckpt"), tmp_path, None)


def test_run_folder_of_a_new_run_from_a_copied_checkpoint(env, tmp_path):
    env.setenv("CLSP_RUN_ID", "set-by-run_folder")  # so that monkeypatch removes what run_folder sets
    env.delenv("CLSP_RUN_ID")
    ckpt = tmp_path / "x.ckpt"
    torch.save({"global_step": 1}, ckpt)
    cfg = TrainConfig(run=RunConfig(name="demo", output_dir=str(tmp_path / "runs")), resume=str(ckpt))
    folder, resume = run_folder(cfg, detect())
    assert folder.parent == tmp_path / "runs" / "demo" and resume == str(ckpt)
    assert os.environ["CLSP_RUN_ID"] == folder.name
