"""The demo recipe on 2 CPU processes (DDP over gloo), started the three ways users start it:
Lightning's own launcher, torchrun, and SLURM (two tasks with the variables srun sets, no RANK)."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

pytestmark = pytest.mark.slow  # end-to-end: `make test` runs it, `pytest -m "not slow"` skips it

# Variables a launcher sets; the test's own environment must not leak them into the runs.
_LAUNCHER_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK", "GROUP_RANK", "MASTER_ADDR", "MASTER_PORT",
                  "CLSP_RUN_ID")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in _LAUNCHER_VARS and not k.startswith(("SLURM_", "TORCHELASTIC_", "LSB_", "OMPI_", "PMI_"))}
    return env | {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _args(demo: list[str]) -> list[str]:
    # 96 clips in 3 shards of 32, dealt to 2 ranks as 64 + 32: both stop at 2 batches of 16 an epoch, so 2 steps
    # end with one validation.
    overrides = [o for o in demo if not o.startswith("trainer.max_steps")]
    return ["-m", "clsp.train", "recipe=demo", *overrides, "trainer.devices=2", "trainer.strategy=ddp",
            "trainer.max_steps=2"]


def _check_run(tmp_path: Path) -> Path:
    (run,) = (tmp_path / "runs" / "demo").iterdir()  # both ranks agreed on one run folder
    results = json.loads((run / "results.json").read_text())
    assert results["test"]["num_clips"] == 32 and results["device"] == "cpu"
    for name in ("checkpoints/last.ckpt", "checkpoints/best.ckpt", "model/model.safetensors", "config.yaml"):
        assert (run / name).exists(), name
    assert not list(run.rglob(".*.tmp"))
    return run


def test_lightning_launcher(demo, tmp_path):
    proc = subprocess.run([sys.executable, *_args(demo)], env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _check_run(tmp_path)


def test_torchrun_and_sharded_validation(demo, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           *_args(demo)], env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = _check_run(tmp_path)
    # The validation the two ranks shared (each embedded half the clips) equals a single-process one.
    rows = [r for r in csv.DictReader((run / "metrics.csv").open()) if r.get("val/mAP@10")]
    assert len(rows) == 1
    single = _single_process_validation(run)
    assert single["num_clips"] == 32
    for key, value in single.items():
        assert abs(float(rows[0][f"val/{key}"]) - value) <= 1e-5, key


def _single_process_validation(run: Path) -> dict[str, float]:
    from clsp.data.config import DataConfig
    from clsp.evaluation.embed import embed_pairs
    from clsp.evaluation.retrieval import join_pairs, retrieval_scores
    from clsp.loading import model_from_checkpoint
    from clsp.training.datamodule import CLSPDataModule

    model = model_from_checkpoint(run / "checkpoints" / "best.ckpt")
    data = DataConfig(**OmegaConf.to_container(OmegaConf.load(run / "config.yaml").data, resolve=True))
    loader = CLSPDataModule(data, model.config, model.tokenizer).val_dataloader()
    whole = join_pairs([embed_pairs(model, clips, batch_size=len(clips)) for clips, _ in loader if clips])
    return retrieval_scores(whole.audio, whole.text, whole.caption_to_clip)[0]


@pytest.mark.parametrize("job_name", ["clsp-test"])
def test_slurm_tasks_started_by_hand(demo, tmp_path, job_name):
    port = _free_port()
    slurm = {"SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": job_name, "SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "2",
             "SLURM_NNODES": "1", "SLURM_NODEID": "0", "SLURM_NODELIST": "127.0.0.1", "MASTER_PORT": str(port)}
    procs = [subprocess.Popen([sys.executable, *_args(demo)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True, env=_env() | slurm | {"SLURM_PROCID": str(i), "SLURM_LOCALID": str(i)})
             for i in range(2)]
    try:
        errors = [p.communicate(timeout=600)[1] for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0, 0], errors[0][-3000:] + errors[1][-3000:]
    run = _check_run(tmp_path)
    assert run.name.endswith("-job4242")
