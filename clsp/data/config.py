"""The `data:` section of a run: which data, which captions, how it is read. One typed dataclass that
checks its own values; the data module (`_target_`) builds the loaders from it and the model."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from clsp.data.captions import (
    CAPTION_CHOICES,
    CAPTION_POLICIES,
    DECODER_CAPTIONS,
    EVAL_CAPTIONS,
    CaptionSchedule,
)
from clsp.validate import require


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one, e.g. under SLURM or taskset)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_workers(processes: int = 1) -> int:
    """Loader workers per process for `data.num_workers: null`: the CPUs shared by the `processes` on this
    machine, one kept for the training process itself, at most 8 (more rarely helps decoding keep up)."""
    return max(0, min(8, available_cpus() // max(1, processes) - 1))


@dataclass
class DemoConfig:
    """The procedural demo corpus (`clsp.data.demo`), built on first use."""

    root: str = "data/demo"
    seed: int = 0
    n_train: int = 2000
    n_val: int = 200
    n_test: int = 200
    samples_per_shard: int = 250

    def __post_init__(self) -> None:
        for name in ("n_train", "n_val", "n_test", "samples_per_shard"):
            require("data.demo", name, getattr(self, name), int, ge=1)


@dataclass
class TableConfig:
    """How a table given as data.train / val / test is read (written once to cached shards, see
    `clsp.data.table_cache`): its columns and how it splits. Column options as `clsp.shards table`."""

    split: str | None = None  # "train=0.8,val=0.1,test=0.1": seeded by each row's audio path, stable as rows are added
    split_column: str | None = None  # or each row's own split name in this column
    split_seed: int = 0
    audio_column: str | None = None
    short_columns: list[str] = field(default_factory=list)  # default: caption / text / caption_1..N
    long_columns: list[str] = field(default_factory=list)  # default: long_caption(s)
    attribute_columns: list[str] = field(default_factory=list)  # e.g. gender, emotion: kept in each sample's json
    audio_root: str | None = None  # where relative audio paths start (default: the table's folder)
    cache: str | None = None  # default $CLSP_TABLE_CACHE or ~/.cache/clsp/tables
    samples_per_shard: int = 1000

    def __post_init__(self) -> None:
        if self.split is not None and self.split_column is not None:
            raise ValueError("data.table.split and data.table.split_column both set; give one")
        require("data.table", "samples_per_shard", self.samples_per_shard, int, ge=1)

    @property
    def splits(self) -> bool:
        return self.split is not None or self.split_column is not None


@dataclass
class DataConfig:
    _target_: str = "clsp.training.datamodule.CLSPDataModule"  # the LightningDataModule built from this
    train: Any = MISSING  # shards (folder, tar, brace pattern, list, weighted sources) or a table (csv/tsv/jsonl/parquet)
    val: Any = None  # with data.table.split and a table in train: null = the table's val part
    test: Any = None  # likewise, the table's test part
    table: TableConfig = field(default_factory=TableConfig)
    demo: DemoConfig | None = None  # set = build the demo corpus first
    # Captions (clsp.data.captions): training policy, which caption of a kind, the pairing schedule of
    # "both", hard negatives; validation and the end-of-run test read every caption of val_caption_policy.
    caption_policy: str = "short"  # short | long | random | both
    caption_choice: str = "random"  # random | first
    caption_schedule: CaptionSchedule = field(default_factory=CaptionSchedule)
    hard_negatives: bool = False  # one attribute of the primary caption flipped (clsp.data.perturb)
    val_caption_policy: str = "short"  # short | long | all
    # Runs that train a caption decoder (a CaptioningLoss term): the kind of its one caption per clip (short |
    # long | random; a clip without the kind uses the other) and the validation clips it captions greedily
    # for val/caption/* (CIDEr-D and the teacher-forced loss; 0 = none).
    decoder_captions: str = "short"
    caption_val_clips: int = 32
    # Reading.
    batch_size: int = 32
    val_batch_size: int | None = None  # null = batch_size
    num_workers: int | None = None  # null = what the machine has: min(8, CPUs per process - 1) (default_workers)
    epoch_mode: bool = True  # false: an endless resampled stream, samples_per_epoch a pass
    samples_per_epoch: int | None = None
    shuffle_buffer: int = 1000
    bucketing: bool = False  # batches of similar duration (clsp.data.bucketing)
    max_batch_seconds: float | None = None  # with bucketing: padded seconds per batch (batch_size = most clips)
    max_seconds: float | None = None  # null = the audio tower's window (6 windows for fusion)
    max_failure_rate: float | None = 0.1  # stop when more samples than this fail (clsp.data.skips)
    pin_memory: bool = False  # true in the GPU recipes: page-locked batches, copied to the GPU without blocking
    prefetch_factor: int = 2  # batches each worker prepares ahead

    def __post_init__(self) -> None:
        require("data", "caption_policy", self.caption_policy, choices=CAPTION_POLICIES)
        require("data", "caption_choice", self.caption_choice, choices=CAPTION_CHOICES)
        require("data", "val_caption_policy", self.val_caption_policy, choices=EVAL_CAPTIONS)
        require("data", "decoder_captions", self.decoder_captions, choices=DECODER_CAPTIONS)
        require("data", "caption_val_clips", self.caption_val_clips, int, ge=0)
        require("data", "batch_size", self.batch_size, int, ge=1)
        require("data", "val_batch_size", self.val_batch_size, int, ge=1, null=True)
        if self.num_workers is None:  # one process here; a multi-process run divides the CPUs (clsp.training.fit)
            self.num_workers = default_workers()
        require("data", "num_workers", self.num_workers, int, ge=0)
        require("data", "prefetch_factor", self.prefetch_factor, int, ge=1)
        require("data", "samples_per_epoch", self.samples_per_epoch, int, ge=1, null=True)
        require("data", "shuffle_buffer", self.shuffle_buffer, int, ge=0)
        require("data", "max_batch_seconds", self.max_batch_seconds, float, gt=0, null=True)
        require("data", "max_seconds", self.max_seconds, float, gt=0, null=True)
        require("data", "max_failure_rate", self.max_failure_rate, float, ge=0, le=1, null=True)
        if self.max_batch_seconds is not None and not self.bucketing:
            raise ValueError("data.max_batch_seconds needs bucketing (data.bucketing=true): the budget is filled "
                             "from sorted durations")
        if isinstance(self.caption_schedule, dict):  # built by hand rather than through the schema
            self.caption_schedule = CaptionSchedule(**self.caption_schedule)
        if isinstance(self.demo, dict):
            self.demo = DemoConfig(**self.demo)
        if isinstance(self.table, dict):
            self.table = TableConfig(**self.table)

    def eval_batch_size(self) -> int:
        return self.val_batch_size or self.batch_size
