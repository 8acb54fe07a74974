"""metrics.csv that survives a kill and a resume: Lightning's CSVLogger with the two things it lacks here.

Lightning's CSV writer deletes an existing metrics.csv when it starts ("Previous log files in this
directory will be deleted"), and writes rows to disk every `flush_logs_every_n_steps` steps whatever
the checkpoints do. A run resumed in its own folder (`resume=latest`) would so lose every row logged
before the kill, and a kill soon after a checkpoint could lose rows that checkpoint covers.
`ResumableCSVLogger`:

- keeps the file and appends to it. The rows at or past the first step the new run logs are the
  killed run's work after its checkpoint, which the resumed run does (and logs) again: those are
  dropped, so each step appears once. A fresh run logs step 0 first and so starts a fresh file.
- writes its rows to disk whenever a checkpoint is saved. Lightning hands a step's metrics to the
  loggers only after the batch-end callbacks, so the checkpointed step's own row comes just after its
  checkpoint: it is written at once too. A kill in the milliseconds between the two loses that row.
"""

from __future__ import annotations

import csv
from typing import Any

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from clsp.atomic import atomic_path

__all__ = ["ResumableCSVLogger"]


class _ResumingWriter(ExperimentWriter):
    """Lightning's writer, keeping the rows of an earlier run before the first step logged now."""

    def _check_log_dir_exists(self) -> None:
        self._trimmed = False  # Lightning deletes metrics.csv here; we trim it at the first row instead

    def log_metrics(self, metrics_dict: dict[str, float], step: int | None = None) -> None:
        if not self._trimmed:
            self._trimmed = True
            self._keep_rows_before(step)
        super().log_metrics(metrics_dict, step)

    def _keep_rows_before(self, step: int | None) -> None:
        if not self._fs.isfile(self.metrics_file_path):
            return
        with open(self.metrics_file_path, newline="") as file:
            reader = csv.DictReader(file)
            keys = list(reader.fieldnames or [])
            rows = [row for row in reader if step is not None and _step(row) < step]
        if not rows:
            self._fs.rm_file(self.metrics_file_path)
            return
        with atomic_path(self.metrics_file_path) as tmp, open(tmp, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=keys)
            writer.writeheader()
            writer.writerows(rows)
        self.metrics_keys = keys  # later rows are appended under this header (widened when keys are new)


def _step(row: dict[str, str]) -> float:
    try:
        return float(row.get("step") or "inf")
    except ValueError:  # a row from some other writer: not ours to keep
        return float("inf")


class ResumableCSVLogger(CSVLogger):
    """`lightning.pytorch.loggers.CSVLogger` whose metrics.csv is appended to on resume (see module doc)."""

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ResumingWriter(log_dir=self.log_dir)
        return self._experiment

    _write_next_row = False

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        super().log_metrics(metrics, step)
        if self._write_next_row:  # the checkpointed step's own row (see module doc)
            self._write_next_row = False
            self.save()

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        self.save()  # the rows up to this checkpoint reach the disk with it
        self._write_next_row = True
