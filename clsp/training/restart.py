"""Which run folder a run writes to and which checkpoint it continues from: `resume` and restarts.

`resume` (TrainConfig.resume):

    null (default)  auto: a restarted job continues its own run folder (below); anything else is a fresh run
    never           always a fresh run, restarted or not
    latest          the newest run folder under runs/<name>/ with a checkpoints/last.ckpt
    PATH            that checkpoint (a file, or DeepSpeed's folder); inside a run's checkpoints/ that run
                    folder continues, anywhere else a new run folder starts from it

A restarted job is found by the ids it was started under, which each run folder records in
`launch.json` when it is created:

- SLURM: a requeued job (preemption with `scontrol requeue`, `--requeue` after a node failure) keeps its
  job id (an array task: `<array job>_<task>`) and SLURM sets SLURM_RESTART_COUNT > 0; it continues the
  folder of that job id. Whatever starts the tasks (srun, or torchrun inside the job).
- torchrun elastic restarts (`--max-restarts N`): the restarted workers have TORCHELASTIC_RESTART_COUNT > 0
  and the group's TORCHELASTIC_RUN_ID; they continue the folder started under that id.

A restart continues from the folder's last.ckpt (or starts the folder over when it has none yet) and
says so in one line.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from clsp.atomic import write_json_atomic
from clsp.errors import ConfigError
from clsp.training.callbacks import LAST
from clsp.training.checkpoint import checkpoint_step, latest_checkpoint
from clsp.training.launch import job_id

LAUNCH_FILE = "launch.json"
NEVER, LATEST = "never", "latest"


def launch_ids(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The ids a restart of this process's job or torchrun group will be started under."""
    env = os.environ if env is None else env
    ids = {"job": job_id(env), "elastic_run": env.get("TORCHELASTIC_RUN_ID")}
    return {k: v for k, v in ids.items() if v}


def record_launch(folder: Path) -> None:
    """Write `launch.json` into a run folder (rank 0): how a restart finds it."""
    write_json_atomic(folder / LAUNCH_FILE, launch_ids())


def restart_of(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The ids that identify the run this process restarts; {} when it is not a restart."""
    env = os.environ if env is None else env
    ids = launch_ids(env)
    restarted = {}
    if "job" in ids and int(env.get("SLURM_RESTART_COUNT") or 0) > 0:
        restarted["job"] = ids["job"]
    if "elastic_run" in ids and int(env.get("TORCHELASTIC_RESTART_COUNT") or 0) > 0:
        restarted["elastic_run"] = ids["elastic_run"]
    return restarted


def restarted_folder(root: Path, run_dir: str | None, ids: Mapping[str, str]) -> Path | None:
    """The run folder (run.dir, else one under `root`) whose launch.json shares one of `ids`; newest first."""
    folders = [Path(run_dir)] if run_dir else sorted((p.parent for p in root.glob(f"*/{LAUNCH_FILE}")),
                                                     key=lambda p: p.stat().st_mtime, reverse=True)
    for folder in folders:
        try:
            recorded = json.loads((folder / LAUNCH_FILE).read_text())
        except (OSError, ValueError):
            continue
        if any(recorded.get(key) == value for key, value in ids.items()):
            return folder
    return None


def continued_run(resume: str | None, root: Path, run_dir: str | None) -> tuple[Path | None, str | None]:
    """(run folder to continue or None for a new one, checkpoint to resume from or None), per `resume`."""
    if resume == NEVER:
        return None, None
    if resume is None:
        return _restart(root, run_dir)
    try:
        ckpt = latest_checkpoint(root) if resume == LATEST else Path(resume)
    except FileNotFoundError as exc:
        raise ConfigError(str(exc), "continue from one of them with resume=PATH, or leave resume unset for a "
                                    "fresh run") from None
    if not ckpt.exists():
        raise ConfigError(f"resume: checkpoint not found: {ckpt}",
                          "give a .ckpt written by python -m clsp.train, or resume=latest")
    folder = ckpt.resolve().parent.parent if ckpt.resolve().parent.name == "checkpoints" else None
    return folder, str(ckpt)


def _restart(root: Path, run_dir: str | None) -> tuple[Path | None, str | None]:
    ids = restart_of()
    folder = restarted_folder(root, run_dir, ids) if ids else None
    if folder is None:
        return None, None
    how = ", ".join(f"{'SLURM job' if k == 'job' else 'torchrun group'} {v}" for k, v in ids.items())
    ckpt = folder / "checkpoints" / LAST
    if not ckpt.exists():
        print(f"clsp: restart of {how}: continuing {folder} from the start (no {LAST} yet)", file=sys.stderr,
              flush=True)
        return folder, None
    print(f"clsp: restart of {how}: continuing {folder} from step {checkpoint_step(ckpt)} ({ckpt})",
          file=sys.stderr, flush=True)
    return folder, str(ckpt)
