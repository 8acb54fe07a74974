"""metrics.csv keeps an earlier run's rows before the first step logged now, and reaches the disk at checkpoints."""

from __future__ import annotations

import csv
from pathlib import Path

from clsp.training.loggers import ResumableCSVLogger


def _write(path: Path, rows: list[dict[str, object]]) -> None:
    keys = sorted({k for row in rows for k in row})
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def _logger(folder: Path) -> ResumableCSVLogger:
    return ResumableCSVLogger(save_dir=str(folder), name="", version="")


def test_resumed_run_keeps_rows_before_its_first_step(tmp_path):
    # A killed run wrote steps 0-4 (and a validation row at 3); its checkpoint was at step 3.
    _write(tmp_path / "metrics.csv", [{"step": s, "train/loss": 1.0 + s} for s in range(3)]
           + [{"step": 3, "val/mAP@10": 0.5}, {"step": 3, "train/loss": 4.0}, {"step": 4, "train/loss": 5.0}])
    logger = _logger(tmp_path)
    logger.log_metrics({"train/loss": 40.0, "data/skipped": 0.0}, step=3)
    logger.log_metrics({"train/loss": 50.0}, step=4)
    logger.save()
    rows = _read(tmp_path / "metrics.csv")
    assert [(r["step"], r["train/loss"]) for r in rows] == [("0", "1.0"), ("1", "2.0"), ("2", "3.0"),
                                                          ("3", "40.0"), ("4", "50.0")]
    assert list(rows[0]) == ["data/skipped", "step", "train/loss", "val/mAP@10"]  # header widened, sorted


def test_fresh_run_in_a_used_folder_starts_a_fresh_file(tmp_path):
    _write(tmp_path / "metrics.csv", [{"step": s, "old/key": s} for s in range(5)])
    logger = _logger(tmp_path)
    logger.log_metrics({"train/loss": 1.0}, step=0)
    logger.save()
    assert _read(tmp_path / "metrics.csv") == [{"step": "0", "train/loss": "1.0"}]


def test_rows_reach_the_disk_when_a_checkpoint_is_saved(tmp_path):
    logger = _logger(tmp_path)  # flushes every 100 steps by itself
    logger.log_metrics({"train/loss": 1.0}, step=0)
    assert not (tmp_path / "metrics.csv").exists()
    logger.after_save_checkpoint(None)
    assert _read(tmp_path / "metrics.csv") == [{"step": "0", "train/loss": "1.0"}]
    # Lightning logs the checkpointed step's own row after the checkpoint: it is written at once.
    logger.log_metrics({"train/loss": 2.0}, step=1)
    assert len(_read(tmp_path / "metrics.csv")) == 2
    logger.log_metrics({"train/loss": 3.0}, step=2)  # later rows wait for the next flush
    assert len(_read(tmp_path / "metrics.csv")) == 2
