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

import lightning as L
from torch.utils.data import DataLoader

from clsp.config import AudioConfig, CLSPConfig
from clsp.data.config import DataConfig
from clsp.data.dataset import ShardDataset, ShardLoader, shard_loader, text_tokenizer
from clsp.data.dataset import decoder_tokenizer as _decoder_tokenizer
from clsp.evaluation.clips import ClipStream


def window_seconds(audio: AudioConfig, data: DataConfig) -> float:
    """Seconds of audio a training sample keeps: data.max_seconds, else the tower's window (fusion needs
    the whole clip: up to 6 windows)."""
    if data.max_seconds is not None:
        return data.max_seconds
    return audio.max_seconds * 6 if audio.truncation == "fusion" else audio.max_seconds


class ResumableLoader:
    """Wraps a ShardLoader: each iteration is the trainer's current epoch; after a resume the first
    iteration skips the batches the checkpoint had already trained on; with several ranks in
    epoch mode every rank stops at the same batch count (see `equal_batches`)."""

    def __init__(self, loader: ShardLoader, position: Callable[[], tuple[int, int]],
                 limit: Callable[[int], int | None] | None = None):
        self.loader = loader
        self.position = position  # () -> (epoch, optimizer step) of the trainer
        self.limit = limit or (lambda epoch: None)
        self._skip = 0

    def resume(self, batches: int) -> None:
        self._skip = int(batches)

    def __len__(self) -> int:
        limit = self.limit(self.position()[0])
        return len(self.loader) if limit is None else min(limit, len(self.loader))

    def __iter__(self) -> Iterator:
        epoch, step = self.position()
        skip, self._skip = self._skip, 0
        self.loader.set_epoch(epoch, step, skip)
        # Skipped batches are still decoded, so the data (and its random crops) match exactly.
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
        self._skip = 0
        self._train: ResumableLoader | None = None

    def resume_at(self, epoch: int, batches: int) -> None:
        self._skip = int(batches)
        if self._train is not None:
            self._train.resume(self._skip)

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
        self._train = ResumableLoader(shard_loader(dataset), self._position, equal_batches(dataset))
        self._train.resume(self._skip)
        return self._train

    def val_dataloader(self) -> DataLoader | list:
        if not self.data.val:
            return []
        # Each rank reads its share; the module all-gathers the embeddings, so each clip is encoded once.
        rank, world = self._rank()
        stream = ClipStream(self.data.val, self.data.val_caption_policy, sample_rate=self.model_config.audio.sample_rate,
                            batch_size=self.data.eval_batch_size(), rank=rank, world_size=world)
        return DataLoader(stream, batch_size=None, num_workers=min(self.data.num_workers, len(stream.urls)),
                          collate_fn=_as_is)


def _as_is(item):
    return item
