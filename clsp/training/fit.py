"""Fit a recipe to the machine it runs on and to the data it gets.

A recipe is written for its data set and hardware: GPUs, 8 loader workers, validation every 2000
steps, a 3200-step warmup. Given 48 clips on a laptop, the same command should still run to the end,
so two steps adapt it, each saying in one line what it changed:

- `fit_machine`, before anything is built: `trainer.accelerator: auto` becomes the GPU where CUDA
  sees one, else the CPU (slow; said once); `trainer.precision: auto` becomes bf16-mixed on a GPU
  that has bf16, else 32-true; `data.num_workers: null` shares the machine's CPUs between the
  processes of a multi-process run; `strategy: ddp` on one process becomes a single-device run.
- `fit_to_data`, once the data is known: settings counted in steps are clamped to the run's length,
  from the batches one epoch gives (`batches_per_epoch`, the data module's own count from sizes.json)
  and the steps the run takes: `trainer.val_check_interval` to an epoch and to the run (a run shorter
  than its first validation validates at its end); `trainer.log_every_n_steps` and
  `trainer.checkpoint_every_n_steps` to the run; an `optim.scheduler.warmup_steps` as long as the
  run or longer to a tenth of the run (it would otherwise never reach the learning rate). With
  `data.num_workers: null`, an epoch of fewer than 8 batches is read without workers (`fit_workers`).
  It also says when the run's last steps come after its last validation (`unvalidated_steps`): best.ckpt,
  and so model/, can never hold them (Lightning validates only at the intervals, not when max_steps ends
  a run between two of them).

Every rank computes the same values from the same config and data, so ranks agree without talking.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from clsp.data.config import DataConfig, default_workers
from clsp.data.dataset import ShardDataset
from clsp.training.console import info
from clsp.training.schema import TrainConfig, TrainerConfig

SMALL_EPOCH = 8  # batches: a shorter epoch is read without loader workers when data.num_workers is null


def device_count(trainer: TrainerConfig, cuda: bool) -> int:
    """Processes per node Lightning starts for `trainer.devices` ("auto" / -1: every GPU, or one CPU process)."""
    devices = trainer.devices
    if devices in (-1, "-1", "auto"):
        return max(1, torch.cuda.device_count()) if cuda else 1
    if isinstance(devices, int):
        return devices
    ids = devices.split(",") if isinstance(devices, str) else list(devices)
    return max(1, len([i for i in ids if str(i).strip()]))


def fit_machine(cfg: TrainConfig, auto_workers: bool, external: bool = False) -> TrainConfig:
    """Resolve `auto` accelerator and precision for this machine, and `data.num_workers: null` (`auto_workers`)
    for the processes sharing it. `strategy: ddp` on a single process (one device, one node, no launcher
    that started `external` processes) becomes Lightning's single-device strategy: DDP would only
    all-reduce the gradients with themselves."""
    t = cfg.trainer
    cuda = torch.cuda.is_available()
    accelerator = t.accelerator
    if accelerator == "auto":
        accelerator = "gpu" if cuda else "cpu"
        if not cuda:
            info("no GPU visible: training on the CPU, which is slow for anything beyond small data and models "
                 "(trainer.accelerator=auto)")
    gpu = accelerator in ("gpu", "cuda") and cuda
    precision = t.precision
    if precision == "auto":
        precision = "bf16-mixed" if gpu and torch.cuda.is_bf16_supported() else "32-true"
    data = cfg.data
    if auto_workers:
        data = dataclasses.replace(data, num_workers=default_workers(device_count(t, gpu)))
    strategy = t.strategy
    if strategy == "ddp" and not external and device_count(t, gpu) * t.num_nodes == 1:
        strategy = "auto"
    trainer = dataclasses.replace(t, accelerator=accelerator, precision=precision, strategy=strategy)
    return dataclasses.replace(cfg, trainer=trainer, data=data)


def world_size(trainer: TrainerConfig) -> int:
    """Processes in the run: devices per node x nodes (`trainer.accelerator` already resolved)."""
    return device_count(trainer, trainer.accelerator in ("gpu", "cuda")) * trainer.num_nodes


def batches_per_epoch(data: DataConfig, world: int, seed: int = 0, accumulate: int = 1) -> int | None:
    """Training batches each rank reads per epoch (the fewest over ranks, as the data module stops them
    there), or None where the length is unknown before reading (batches filled to max_batch_seconds,
    shards without sizes.json)."""
    try:
        dataset = ShardDataset(data.train, _no_tokens, data, sample_rate=16000, max_seconds=None, rank=0,
                               world_size=world, seed=seed, accumulate=accumulate)
        return min(dataset.rank_length(rank) for rank in range(world))
    except (TypeError, ValueError):  # unknown length, or a setting the data module reports itself
        return None


def _no_tokens(texts: list[str]) -> None:  # the length needs no tokenizer
    return None


def run_steps(trainer: TrainerConfig, batches: int | None) -> int | None:
    """Optimizer steps the run takes: max_steps, or max_epochs' worth of batches if fewer; None if unknown."""
    steps = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None
    if trainer.max_epochs and batches:
        by_epochs = math.ceil(batches * trainer.max_epochs / trainer.accumulate_grad_batches)
        steps = min(steps, by_epochs) if steps else by_epochs
    return steps


def fit_intervals(cfg: TrainConfig, batches: int | None) -> tuple[TrainConfig, list[str]]:
    """`cfg` with its step intervals clamped to an epoch of `batches` batches (None: not known before reading)
    and to the run; and what changed."""
    t, changes = cfg.trainer, []
    total = run_steps(t, batches)
    updates: dict[str, int] = {}
    interval = validation_interval(t, batches, total) if cfg.data.val else None
    if interval is not None:
        updates["val_check_interval"] = interval
    if total and t.log_every_n_steps > total:  # counted over the run, not the epoch: an epoch may be shorter
        updates["log_every_n_steps"] = total
    if total and t.checkpoint_every_n_steps > total:
        updates["checkpoint_every_n_steps"] = total
    changes += [f"trainer.{key} {_show(getattr(t, key))} -> {value}" for key, value in updates.items()]
    optim = cfg.optim
    warmup = optim.scheduler.get("warmup_steps")
    if total and isinstance(warmup, int) and warmup >= total:
        optim = dataclasses.replace(optim, scheduler={**optim.scheduler, "warmup_steps": total // 10})
        changes.append(f"optim.scheduler.warmup_steps {warmup} -> {total // 10}")
    fitted = dataclasses.replace(cfg, trainer=dataclasses.replace(t, **updates), optim=optim)
    return fitted, changes


def validation_interval(t: TrainerConfig, batches: int | None, total: int | None) -> int | None:
    """A `val_check_interval` (in batches) that validates within an epoch of `batches` and within the run, or
    None where the configured one does. Validation every k > 1 epochs is left as it is."""
    interval, run = t.val_check_interval, total * t.accumulate_grad_batches if total else None
    per_epoch = t.check_val_every_n_epoch is not None
    if isinstance(interval, int) and not isinstance(interval, bool):
        new = min(interval, batches) if per_epoch and batches else interval  # Lightning refuses more than an epoch
        new = min(new, run) if run else new
    elif per_epoch and t.check_val_every_n_epoch == 1 and run and batches:  # a fraction of an epoch (null = 1.0)
        first = max(1, int(batches * (interval or 1.0)))
        new = run if run < first else interval
    else:
        return None
    return new if new != interval else None


def _show(value: object) -> str:
    return "null" if value is None else str(value)


def fit_workers(data: DataConfig, world: int, seed: int = 0, accumulate: int = 1) -> DataConfig:
    """No loader workers when an epoch is shorter than `SMALL_EPOCH` batches. Workers start anew every epoch
    (they must see the data position), and starting them costs more than they save on a short epoch."""
    if not data.num_workers:
        return data
    one_reader = batches_per_epoch(dataclasses.replace(data, num_workers=0), world, seed, accumulate)
    return dataclasses.replace(data, num_workers=0) if one_reader and one_reader < SMALL_EPOCH else data


def fit_to_data(cfg: TrainConfig, world: int, auto_workers: bool = False) -> TrainConfig:
    """`fit_intervals` for the batches `cfg.data` gives `world` ranks (with `auto_workers`, `fit_workers`
    first), said in one line when anything changed."""
    seed, accumulate = cfg.run.seed, cfg.trainer.accumulate_grad_batches
    data = fit_workers(cfg.data, world, seed, accumulate) if auto_workers else cfg.data
    batches = batches_per_epoch(data, world, seed, accumulate)
    fitted, changes = fit_intervals(dataclasses.replace(cfg, data=data), batches)
    if data.num_workers != cfg.data.num_workers:
        changes.insert(0, f"data.num_workers {cfg.data.num_workers} -> 0")
    if changes:
        info(f"fitted to the data{_length(batches, world, run_steps(cfg.trainer, batches))}: " + ", ".join(changes))
    if fitted.data.val and (tail := unvalidated_steps(fitted.trainer, batches)):
        steps, last, period = tail
        if last:
            info(f"the last {steps} steps come after the last validation (after step {last}), so best.ckpt and "
                 f"model/ cannot hold them: trainer.max_steps={last} or {last + period} ends on a validation")
        else:
            info(f"the run's {steps} steps end before its first validation (after step {period}): no best.ckpt, "
                 f"model/ holds the final weights")
    return fitted


def unvalidated_steps(t: TrainerConfig, batches: int | None) -> tuple[int, int, int] | None:
    """(steps after the last validation, the optimizer step it follows, steps between validations) where a run
    of max_steps ends between two validations held every k epochs (or every n steps across epochs); else None."""
    total, accumulate, interval = run_steps(t, batches), t.accumulate_grad_batches, t.val_check_interval
    if not total or total != t.max_steps:  # no step limit, or max_epochs ends the run first
        return None
    if t.check_val_every_n_epoch is not None and interval in (None, 1.0) and batches:
        period = t.check_val_every_n_epoch * math.ceil(batches / accumulate)  # validation ends every k-th epoch
    elif t.check_val_every_n_epoch is None and isinstance(interval, int) and not isinstance(interval, bool):
        if interval % accumulate:
            return None
        period = interval // accumulate
    else:
        return None
    last = total // period * period
    return (total - last, last, period) if total > last else None


def _length(batches: int | None, world: int, total: int | None) -> str:
    """' (8 batches per epoch on each of 2 ranks, 60 steps)', the parts that are known."""
    parts = []
    if batches:
        ranks = f" on each of {world} ranks" if world > 1 else ""
        parts.append(f"{batches} batch{'es' if batches > 1 else ''} per epoch{ranks}")
    if total:
        parts.append(f"{total} steps")
    return f" ({', '.join(parts)})" if parts else ""
