"""A run's progress in one line, and the model's size in one line.

Lightning's bars (tqdm, rich) count the batches of the current epoch ("Epoch 24 32/32") and give each
metric a column of its own, so long names are cut and the line wraps. `RunProgressBar` counts
optimizer steps over the whole run:

    step 120/800 ███▊              15% 02:41<15:13 | 412 samples/s loss 2.31 pad 0.79 mAP@10 12.1

On a terminal it is one line redrawn in place and never wider than the terminal: metric names are
short, and whole items are dropped from the end rather than the line wrapped. Elsewhere (a log file,
a batch job) it prints the same line without the bar once per `trainer.log_every_n_steps`, and one
after each validation. It shows every `prog_bar` metric the run logs: the loss and its terms, padding
efficiency, skipped samples, validation mAP@10, and samples/s when a callback logs `samples_per_s`.
Metrics are read only on logging steps, where Lightning reads them anyway, so the bar adds no
host-device sync to the other steps.

Written on Lightning's `ProgressBar` (its hooks, rank-zero handling and `enable_progress_bar`), with
tqdm drawing the bar glyphs and times: tqdm's own line cannot drop items to fit, and under Lightning
its count restarts every epoch.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

import lightning as L
from lightning.pytorch.callbacks import ModelSummary, ProgressBar
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.model_summary import get_human_readable_count
from tqdm import tqdm

from clsp.training.console import info, verbose

# Short names for the metrics clsp logs to the bar; any other key shows its last path part (loss terms: their
# names under `loss:`), never cut.
SHORT_NAMES = {"samples_per_s": "samples/s", "pad_eff": "pad", "val_mAP@10": "mAP@10", "skipped": "skip",
               "truncated": "trunc"}
FIRST = ("samples_per_s", "loss")  # shown first (kept when the line is narrow)
LAST = ("val_mAP@10", "pad_eff", "skipped", "truncated")  # shown after the loss terms
COUNTS = ("skipped", "truncated")
MIN_BAR, MAX_BAR = 10, 30


def metric_items(metrics: Mapping[str, Any]) -> list[str]:
    """`name value` items in display order: samples/s, the loss, its terms, then validation and data."""
    items = []
    for key in sorted((k for k in metrics if k != "v_num"), key=_order):  # v_num: the run folder names the run
        value, name = metrics[key], SHORT_NAMES.get(key, key.rsplit("/", 1)[-1])
        if key == "samples_per_s":
            items.append(f"{float(value):,.0f} samples/s")
        elif key in COUNTS:
            items.append(f"{name} {int(value)}")
        else:
            items.append(f"{name} {number(value)}" if isinstance(value, (int, float)) else f"{name} {value}")
    return items


def _order(key: str) -> tuple[int, int]:
    if key in FIRST:
        return 0, FIRST.index(key)
    return (2, LAST.index(key)) if key in LAST else (1, 0)  # sorted() keeps the loss terms in logged order


def number(value: float) -> str:
    """Three significant digits, trailing zeros kept (4.00, 0.728, 13.4); whole numbers from 1000 up."""
    value = float(value)
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:#.3g}".rstrip(".")


def render(step: int, total: int | None, elapsed: float, eta: float | None, items: list[str],
           width: int | None = None, status: str = "") -> str:
    """The progress line. With `width` (a terminal) it has a bar and fits in width - 1 columns, items that
    do not fit left out; without, no bar and every item."""
    left = f"step {step}/{total}" if total else f"step {step}"
    times = tqdm.format_interval(elapsed) + (f"<{tqdm.format_interval(eta)}" if eta is not None else "")
    right = f"{100 * step / total:3.0f}% {times}" if total else times
    extra = [status] if status else items
    if width is None:
        return " ".join([left, right] + (["|", *extra] if extra else []))
    room = width - 1 - len(left) - len(right) - 2 - (MIN_BAR + 1 if total else 0)
    kept: list[str] = []
    for item in extra:
        need = len(item) + (3 if not kept else 1)  # " | " before the first item, " " between
        if need > room:
            break
        kept.append(item)
        room -= need
    tail = " | " + " ".join(kept) if kept else ""
    if not total:
        return f"{left} {right}{tail}"
    bar_width = min(MAX_BAR, MIN_BAR + room)
    bar = tqdm.format_meter(min(step, total), total, 0, ncols=bar_width, bar_format="{bar}")
    return f"{left} {bar} {right}{tail}"


class RunProgressBar(ProgressBar):
    """Global step / total steps, ETA and the logged metrics: one line on a terminal, plain lines elsewhere."""

    def __init__(self, stream: TextIO | None = None, refresh_seconds: float = 0.5) -> None:
        super().__init__()
        self.stream = stream or sys.stdout
        self.refresh_seconds = refresh_seconds
        self._enabled = True
        self._items: list[str] = []
        self._start = self._first = self._drawn = 0.0
        self._step0 = 0
        self._printed_step = -1

    # -- Lightning's ProgressBar interface
    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    @property
    def terminal(self) -> bool:
        return bool(getattr(self.stream, "isatty", lambda: False)())

    def print(self, *args: Any, **kwargs: Any) -> None:
        if self.terminal:
            self.stream.write("\r\033[K")
        print(*args, file=self.stream, **kwargs)

    # -- hooks
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start, self._first, self._step0 = time.monotonic(), 0.0, trainer.global_step

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if not self._enabled:
            return
        step = trainer.global_step
        if not self._first and step > self._step0:
            self._first, self._step0 = time.monotonic(), step  # the rate leaves out start-up (workers, compile)
        logging_step = step % max(trainer.log_every_n_steps, 1) == 0 or step == self._total(trainer)
        if logging_step:
            self._items = metric_items(trainer.progress_bar_metrics)
        if self.terminal:
            self._draw(trainer, force=logging_step)
        elif logging_step and step != self._printed_step:
            self._printed_step = step
            self._write_line(trainer)

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        if self._enabled and self.terminal and not trainer.sanity_checking:
            batches = trainer.num_val_batches
            total = batches[dataloader_idx] if isinstance(batches, list) else batches
            of = f"/{int(total)}" if total != float("inf") else ""
            self._draw(trainer, status=f"validating {batch_idx + 1}{of}")

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._enabled or trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        self._items = metric_items(trainer.progress_bar_metrics)
        if self.terminal:
            self._draw(trainer, force=True)
        else:
            self._write_line(trainer, prefix="validation: ")

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._enabled and self.terminal:
            self._draw(trainer, force=True)
            self.stream.write("\n")
            self.stream.flush()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if self._enabled and self.terminal:
            self.stream.write("\n")

    # -- drawing
    def _total(self, trainer: L.Trainer) -> int | None:
        if trainer.max_steps and trainer.max_steps > 0:
            return int(trainer.max_steps)
        total = trainer.estimated_stepping_batches
        return int(total) if total != float("inf") else None

    def _times(self, trainer: L.Trainer) -> tuple[float, float | None]:
        now, total, step = time.monotonic(), self._total(trainer), trainer.global_step
        done = step - self._step0
        eta = None
        if total and self._first and done > 0:
            eta = max(total - step, 0) * (now - self._first) / done
        return now - self._start, eta

    def _draw(self, trainer: L.Trainer, force: bool = False, status: str = "") -> None:
        now = time.monotonic()
        if not force and now - self._drawn < self.refresh_seconds:
            return
        self._drawn = now
        width = shutil.get_terminal_size((80, 24)).columns
        line = render(trainer.global_step, self._total(trainer), *self._times(trainer), self._items, width, status)
        self.stream.write("\r" + line + "\033[K")
        self.stream.flush()

    def _write_line(self, trainer: L.Trainer, prefix: str = "") -> None:
        line = render(trainer.global_step, self._total(trainer), *self._times(trainer), self._items)
        print(prefix + line, file=self.stream, flush=True)


class ModelSize(ModelSummary):
    """Lightning's model summary as one line; `--verbose` brings its table back (whose FLOPs column reads 0
    for a model without an example input)."""

    @staticmethod
    def summarize(summary_data: Any, total_parameters: int, trainable_parameters: int, model_size: float,
                  total_training_modes: Any, total_flops: int = 0, **kwargs: Any) -> None:
        info(f"model: {get_human_readable_count(total_parameters)} parameters "
             f"({get_human_readable_count(trainable_parameters)} trainable, {model_size:.1f} MB)")


def output_callbacks(enable_progress_bar: bool, callbacks: list[L.Callback]) -> list[L.Callback]:
    """clsp's progress bar (unless disabled, or a bar is among `callbacks`) and one-line model summary
    (unless verbose, or a summary is among `callbacks`)."""
    out: list[L.Callback] = []
    if enable_progress_bar and not any(isinstance(c, ProgressBar) for c in callbacks):
        out.append(RunProgressBar())
    if not verbose() and not any(isinstance(c, ModelSummary) for c in callbacks):
        out.append(ModelSize())
    return out
