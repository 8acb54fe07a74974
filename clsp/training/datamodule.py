"""The LightningDataModule: shard loaders for training and validation, resumable mid-epoch."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from typing import Any

import lightning as L

from clsp.config import CLSPConfig
from clsp.data.pipeline import DataConfig, build_dataloader

# Keys of the data config that are not DataConfig fields.
_NOT_LOADER = {"train", "val", "test", "demo", "val_caption_policy", "val_batch_size"}
_VAL_POLICIES = {"short": "short", "long": "long", "all": "both"}


def loader_config(data: Mapping[str, Any], model: CLSPConfig, **extra: Any) -> DataConfig:
    """DataConfig from the run's data section; audio rate, crop length and text length follow the model."""
    fields = {k: v for k, v in data.items() if k not in _NOT_LOADER}
    audio = model.audio
    if fields.get("max_seconds") is None:
        # Fusion needs the whole (long) clip; everything else is cropped to the tower's window in the worker.
        fields["max_seconds"] = audio.max_seconds * 6 if audio.truncation == "fusion" else audio.max_seconds
    fields.setdefault("sample_rate", audio.sample_rate)
    fields.setdefault("max_text_length", model.text.max_length)
    fields.setdefault("text_lowercase", model.text.lowercase)
    fields.setdefault("text_punctuation", model.text.punctuation)
    fields.update(extra)
    try:
        return DataConfig(**fields)
    except TypeError as exc:
        raise ValueError(f"bad data config: {exc}") from None


def val_captions(data: Mapping[str, Any]) -> str:
    """The caption kinds validation and the end-of-run test score: "short", "long" or "all"."""
    kinds = str(data.get("val_caption_policy", "short"))
    if kinds not in _VAL_POLICIES:
        raise ValueError(f"data.val_caption_policy must be one of {list(_VAL_POLICIES)}")
    return kinds


class ResumableLoader:
    """Wraps a ShardLoader: each iteration is the trainer's current epoch; after a resume the first
    iteration skips the batches the checkpoint had already trained on; with several ranks in
    epoch mode every rank stops at the same batch count (see `equal_batches`)."""

    def __init__(self, loader, epoch_fn: Callable[[], int], limit_fn: Callable[[int], int | None] | None = None):
        self.loader = loader
        self.epoch_fn = epoch_fn
        self.limit_fn = limit_fn or (lambda epoch: None)
        self._skip = 0

    def resume(self, batches: int) -> None:
        self._skip = int(batches)

    def __len__(self) -> int:
        limit = self.limit_fn(self.epoch_fn())
        return len(self.loader) if limit is None else min(limit, len(self.loader))

    def __iter__(self) -> Iterator:
        epoch = self.epoch_fn()
        self.loader.set_epoch(epoch)
        skip, self._skip = self._skip, 0
        # Skipped batches are still decoded, so the data (and its random crops) match exactly.
        yield from itertools.islice(iter(self.loader), skip, self.limit_fn(epoch))


def equal_batches(dataset) -> Callable[[int], int | None]:
    """Per-epoch batch limit so every rank yields the same count in epoch mode.

    Shards differ in size, so ranks would otherwise run out at different steps and DDP would
    hang. Each rank computes every rank's planned count from sizes.json (the plan is
    deterministic) and stops at the smallest. Samples that turn out bad can still make a rank
    short: resampled mode (epoch_mode=false) is the robust choice for many GPUs.
    """
    cfg = dataset.config
    if cfg.world_size == 1 or not cfg.epoch_mode:
        return lambda epoch: None

    def limit(epoch: int) -> int:
        counts = []
        for rank in range(cfg.world_size):
            other = copy.copy(dataset)
            other.config = replace(cfg, rank=rank)
            other.set_epoch(epoch)
            counts.append(len(other))
        return min(counts)

    return limit


class CLSPDataModule(L.LightningDataModule):
    def __init__(self, data: Mapping[str, Any], model_config: CLSPConfig, tokenizer, *, seed: int = 0,
                 hard_negatives: bool = False, caption_policy: str | None = None):
        super().__init__()
        self.data = dict(data)
        self.model_config = model_config
        self.tokenizer = tokenizer
        self.seed = seed
        self.hard_negatives = hard_negatives
        self.caption_policy = caption_policy or self.data.get("caption_policy", "short")
        self._skip = 0
        self._train: ResumableLoader | None = None

    def resume_at(self, epoch: int, batches: int) -> None:
        self._skip = int(batches)
        if self._train is not None:
            self._train.resume(self._skip)

    def _rank(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_dataloader(self) -> ResumableLoader:
        rank, world = self._rank()
        cfg = loader_config(self.data, self.model_config, seed=self.seed, rank=rank, world_size=world,
                            caption_policy=self.caption_policy, hard_negatives=self.hard_negatives,
                            crop="random")
        loader = build_dataloader(self.data["train"], tokenizer=self.tokenizer, config=cfg)
        self._train = ResumableLoader(loader, lambda: self.trainer.current_epoch if self.trainer else 0,
                                      equal_batches(loader.dataset))
        self._train.resume(self._skip)
        return self._train

    def val_dataloader(self):
        if not self.data.get("val"):
            return []
        # Each rank reads its share; the module all-gathers the embeddings, so each clip is encoded once.
        rank, world = self._rank()
        return self.eval_loader(self.data["val"], rank=rank, world_size=world)

    def eval_loader(self, urls, rank: int = 0, world_size: int = 1):
        """Deterministic and unshuffled; rank `rank` of `world_size` reads its share (default: all of it).

        It reads what `clsp.eval retrieval --captions <val_caption_policy>` reads: whole clips (the
        model's frontend picks the window, as in `encode_audio`) and every caption of the kind."""
        policy = _VAL_POLICIES.get(val_captions(self.data))
        cfg = loader_config(
            self.data, self.model_config, seed=self.seed, rank=rank, world_size=world_size, shuffle=False,
            crop="none", max_seconds=None,
            caption_policy=policy, caption_choice="all", hard_negatives=False, epoch_mode=True, drop_last=False,
            samples_per_epoch=None, batch_size=int(self.data.get("val_batch_size") or self.data.get("batch_size", 32)),
        )
        loader = build_dataloader(urls, tokenizer=self.tokenizer, config=cfg)
        loader.set_epoch(0)
        return loader
