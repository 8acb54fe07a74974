"""The LightningDataModule: shard loaders for training (resumable mid-epoch) and validation.

Built from the run's `data:` section (`clsp.data.config.DataConfig`, whose `_target_` names this
class) and the model: the audio rate and window, and the text tokenization, follow the model; given
the caption decoder's tokenizer (runs that train the decoder), batches also carry its captions.
Validation reads the clip stream every evaluation reads (`clsp.evaluation.clips.ClipStream`), each
rank its share.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterator
from typing import Any

import lightning as L
import torch
from torch import Generator
from torch.utils.data import DataLoader

from clsp.config import AudioConfig, CLSPConfig
from clsp.data.batch import Batch
from clsp.data.config import DataConfig
from clsp.data.dataset import ShardDataset, ShardLoader, shard_loader, text_tokenizer
from clsp.data.dataset import decoder_tokenizer as _decoder_tokenizer
from clsp.data.workers import shield_worker
from clsp.evaluation.clips import ClipStream
from clsp.training.resume import loop_position


def window_seconds(audio: AudioConfig, data: DataConfig) -> float:
    """Seconds of audio a training sample keeps: data.max_seconds, else the tower's window (fusion needs
    the whole clip: up to 6 windows)."""
    if data.max_seconds is not None:
        return data.max_seconds
    return audio.max_seconds * 6 if audio.truncation == "fusion" else audio.max_seconds


class ResumableLoader:
    """Wraps a ShardLoader: each iteration is the trainer's current epoch; with several ranks in epoch
    mode every rank stops at the same batch count (see `equal_batches`).

    Resuming: the loader is a Lightning stateful loader. Lightning stores `state_dict()` with every
    checkpoint (under `loops.fit_loop`) and hands it back to `load_state_dict` before the first
    iteration of a resumed run. The state is Lightning's own loop position (`progress`, see
    `clsp.training.resume`), not a count of what this loader yielded, which runs ahead of training by
    Lightning's prefetch. A checkpoint on an epoch's last batch continues
    with the next epoch from its start, as Lightning's loop does; any other continues the same epoch
    after the batches already trained (decoded again and dropped, so the data and its random crops
    match an uninterrupted run).
    """

    def __init__(self, loader: ShardLoader, position: Callable[[], tuple[int, int]],
                 limit: Callable[[int], int | None] | None = None,
                 progress: Callable[[], tuple[int, int, bool]] | None = None):
        self.loader = loader
        self.position = position  # () -> (epoch, optimizer step) of the trainer
        self.limit = limit or (lambda epoch: None)
        self.progress = progress or (lambda: (position()[0], 0, False))
        self._resume: tuple[int, int] | None = None  # (epoch, batches to skip) of the first iteration

    def state_dict(self) -> dict[str, Any]:
        epoch, batches, epoch_done = self.progress()
        return {"epoch": int(epoch), "batches": int(batches), "epoch_done": bool(epoch_done)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        epoch, batches = int(state["epoch"]), int(state["batches"])
        self._resume = (epoch + 1, 0) if state.get("epoch_done") else (epoch, batches)

    def __len__(self) -> int:
        epoch = self._resume[0] if self._resume is not None else self.position()[0]
        limit = self.limit(epoch)
        return len(self.loader) if limit is None else min(limit, len(self.loader))

    def __iter__(self) -> Iterator:
        epoch, step = self.position()
        skip = 0
        if self._resume is not None:
            (epoch, skip), self._resume = self._resume, None
        self.loader.set_epoch(epoch, step, skip)
        yield from itertools.islice(iter(self.loader), skip, self.limit(epoch))


def equal_batches(dataset: ShardDataset) -> Callable[[int], int | None]:
    """Per-epoch batch limit so every rank yields the same count in epoch mode.

    Shards differ in size, so ranks would otherwise run out at different steps and DDP would
    hang. Each rank computes every rank's planned count from sizes.json (the plan is
    deterministic) and stops at the smallest. A bad sample leaves its batch a clip short, not the
    epoch a batch short, so the counts hold whatever fails to decode.
    """
    if dataset.world_size == 1 or not dataset.config.epoch_mode:
        return lambda epoch: None

    def limit(epoch: int) -> int:
        other = copy.copy(dataset)
        other.set_position(epoch)
        return min(other.rank_length(rank) for rank in range(dataset.world_size))

    return limit


class CLSPDataModule(L.LightningDataModule):
    def __init__(self, data: DataConfig, model_config: CLSPConfig, tokenizer, *, seed: int = 0, accumulate: int = 1,
                 decoder_tokenizer=None):
        super().__init__()
        self.data = data
        self.model_config = model_config
        self.tokenize = text_tokenizer(tokenizer, model_config.text)
        self.decoder_tokenize = None
        if decoder_tokenizer is not None:
            if model_config.decoder is None:
                raise ValueError("a decoder tokenizer was given for a model without a caption decoder")
            self.decoder_tokenize = _decoder_tokenizer(decoder_tokenizer, model_config.decoder)
        self.seed = seed
        self.accumulate = accumulate

    def _rank(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _position(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.current_epoch, trainer.global_step) if trainer is not None else (0, 0)

    def train_dataloader(self) -> ResumableLoader:
        rank, world = self._rank()
        dataset = ShardDataset(self.data.train, self.tokenize, self.data, sample_rate=self.model_config.audio.sample_rate,
                               max_seconds=window_seconds(self.model_config.audio, self.data), rank=rank,
                               world_size=world, seed=self.seed, accumulate=self.accumulate,
                               decoder_tokenize=self.decoder_tokenize)
        return ResumableLoader(shard_loader(dataset), self._position, equal_batches(dataset),
                               lambda: loop_position(self.trainer))

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        # Copies from pinned memory (data.pin_memory) overlap with compute when they do not block.
        if isinstance(batch, Batch):
            return batch.to(device, non_blocking=device.type == "cuda")
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def val_dataloader(self) -> DataLoader | list:
        if not self.data.val:
            return []
        # Each rank reads its share; the module all-gathers the embeddings, so each clip is encoded once.
        rank, world = self._rank()
        stream = ClipStream(self.data.val, self.data.val_caption_policy, sample_rate=self.model_config.audio.sample_rate,
                            batch_size=self.data.eval_batch_size(), rank=rank, world_size=world)
        # Its own generator: starting a validation never draws from the global torch RNG, so the training
        # draws after it are the same whether or not a resumed run repeated or skipped that validation.
        return DataLoader(stream, batch_size=None, num_workers=min(self.data.num_workers, len(stream.urls)),
                          collate_fn=_as_is, generator=Generator().manual_seed(self.seed), worker_init_fn=shield_worker)


def _as_is(item):
    return item
