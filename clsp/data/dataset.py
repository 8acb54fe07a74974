"""Shards -> training `Batch`es: splitting, shuffling, decode + crop, captions, collate, in the workers.

    loader = build_dataloader("/d/train-{000000..000063}.tar", tokenizer=tok, sample_rate=48000,
                              max_seconds=10.0, batch_size=96, num_workers=8, caption_policy="long")
    for batch in loader: ...           # clsp.data.batch.Batch

Everything up to the finished Batch runs in the DataLoader workers (batches are built in the
dataset, the loader uses batch_size=None), so the training process only moves tensors.

Splitting. Epoch mode (`epoch_mode=True`) reads every shard once per epoch: the shard list is
shuffled with `seed + epoch` and dealt to the `world_size * num_workers` readers (rank-major,
`clsp.data.urls.deal_shards`). Resampled mode (`epoch_mode=False`) is an endless stream: each reader
draws a source by weight, then a shard of it at random, and an "epoch" is `samples_per_epoch`
samples over all ranks (rounded up to whole batches per reader, so every rank yields the same
number of batches). Shuffling is seeded by (seed, epoch, rank, worker): runs and resumed runs see
the same batches. `set_position(epoch, step, skip)` tells the next iteration where the run is.

Captions (`clsp.data.captions`) are chosen here, per sample, including the caption decoder's (given
`decoder_tokenize`, `decoder_tokenizer`: runs that train one) and the per-step pairing of
multi-positive training: the step of a batch is `step + (index - skip) // accumulate`, its index in
the epoch being `j * workers + worker` for a worker's j-th batch (the loader's round robin), so a
resumed run draws the same pairings.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Iterator
from typing import Any

from torch import Generator
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from clsp.config import DecoderConfig, TextConfig
from clsp.data.batch import Batch
from clsp.data.bucketing import bucket_batches
from clsp.data.captions import decoder_caption, select_captions
from clsp.data.collate import Tokenize, collate
from clsp.data.config import DataConfig
from clsp.data.perturb import flip_attribute
from clsp.data.samples import CROPS, decode_raw, probe_seconds
from clsp.data.skips import SkipCounter
from clsp.data.tar import iter_raw
from clsp.data.urls import deal_shards, parse_sources, shard_sizes
from clsp.data.workers import shield_worker
from clsp.decoder import tokenize_captions
from clsp.tokenizer import tokenize as tokenize_texts


def mix(*parts: int) -> int:
    """A stable 64-bit seed from several ints."""
    x = 0x9E3779B97F4A7C15
    for p in parts:
        x = (x * 0x100000001B3 ^ (int(p) & 0xFFFFFFFFFFFFFFFF)) & 0xFFFFFFFFFFFFFFFF
    return x


class ShardDataset(IterableDataset):
    """An IterableDataset of training `Batch`es read from WebDataset shards (see the module doc)."""

    def __init__(self, urls: Any, tokenize: Tokenize, config: DataConfig, *, sample_rate: int,
                 max_seconds: float | None, rank: int = 0, world_size: int = 1, seed: int = 0,
                 shuffle: bool = True, crop: str = "random", drop_last: bool = False, accumulate: int = 1,
                 decoder_tokenize: Tokenize | None = None):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        if crop not in CROPS:
            raise ValueError(f"crop must be one of {CROPS}, got {crop!r}")
        if config.max_batch_seconds is not None and config.epoch_mode and world_size > 1:
            raise ValueError("data.max_batch_seconds on several ranks needs a resampled stream (epoch_mode: false), "
                             "so every rank yields the same number of batches")
        self.config, self.tokenize, self.decoder_tokenize = config, tokenize, decoder_tokenize
        self.sample_rate, self.max_seconds, self.crop = sample_rate, max_seconds, crop
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.shuffle, self.drop_last, self.accumulate = shuffle, drop_last, max(1, accumulate)
        self.sources = parse_sources(urls)
        self.urls = [u for s in self.sources for u in s.urls]
        self.sizes = shard_sizes(self.urls)
        self.epoch, self.step, self.skip = 0, 0, 0
        if not config.epoch_mode and config.samples_per_epoch is None and None in self.sizes.values():
            raise ValueError("resampled mode (data.epoch_mode=false) needs data.samples_per_epoch when shards "
                             "have no sizes.json")

    def set_epoch(self, epoch: int) -> None:
        self.set_position(epoch)

    def set_position(self, epoch: int, step: int = 0, skip: int = 0) -> None:
        """The next iteration reads `epoch`; its first trained batch is optimizer step `step`, after `skip`
        batches already trained before a resume (decoded again and dropped by the caller)."""
        self.epoch, self.step, self.skip = int(epoch), int(step), int(skip)

    # -- planning ----------------------------------------------------------------------------------
    def _workers(self) -> int:
        return max(1, self.config.num_workers)

    def _epoch_plan(self, reader: int, readers: int) -> tuple[list[str], int | None]:
        urls = list(self.urls)
        if self.shuffle:
            random.Random(mix(self.seed, self.epoch)).shuffle(urls)
        return deal_shards(urls, reader, readers)

    def _samples_per_reader(self, readers: int) -> int:
        total = self.config.samples_per_epoch
        if total is None:
            total = sum(v or 0 for v in self.sizes.values())
        per = math.ceil(total / readers)
        return math.ceil(per / self.config.batch_size) * self.config.batch_size

    def __len__(self) -> int:
        """Batches this rank yields per epoch (epoch mode: from sizes.json, before skips)."""
        return self.rank_length(self.rank)

    def rank_length(self, rank: int) -> int:
        """Batches rank `rank` yields in the current epoch (the plan is deterministic, so any rank can tell)."""
        cfg, workers = self.config, self._workers()
        readers = self.world_size * workers
        if not cfg.epoch_mode:
            return workers * (self._samples_per_reader(readers) // cfg.batch_size)
        if cfg.max_batch_seconds is not None:
            raise TypeError("length unknown: batches filled to max_batch_seconds (epoch mode)")
        if None in self.sizes.values():
            raise TypeError("length unknown: some shards have no sizes.json entry")
        total = 0
        for w in range(workers):
            reader = rank * workers + w
            urls, stride = self._epoch_plan(reader, readers)
            n = sum(self.sizes[u] for u in urls)
            if stride is not None:
                n = len(range(reader, n, stride))
            total += n // cfg.batch_size if self.drop_last else math.ceil(n / cfg.batch_size)
        return total

    # -- iteration ---------------------------------------------------------------------------------
    def _raw_stream(self, reader: int, readers: int, counter: SkipCounter, rng: random.Random) -> Iterator[dict]:
        if self.config.epoch_mode:
            urls, stride = self._epoch_plan(reader, readers)
            index = 0
            for url in urls:
                for raw in iter_raw(url, counter):
                    if stride is None or index % stride == reader:
                        yield raw
                    index += 1
            return
        weights = [s.weight for s in self.sources]
        while True:  # endless; the caller stops after samples_per_epoch
            source = rng.choices(self.sources, weights=weights)[0]
            yield from iter_raw(rng.choice(source.urls), counter)

    def _shuffled(self, stream: Iterator[dict], rng: random.Random) -> Iterator[dict]:
        size = self.config.shuffle_buffer if self.shuffle else 0
        if size <= 1:
            yield from stream
            return
        buffer: list[dict] = []
        for item in stream:
            if len(buffer) < size:
                buffer.append(item)
                continue
            i = rng.randrange(size)
            buffer[i], item = item, buffer[i]
            yield item
        rng.shuffle(buffer)
        yield from buffer

    def _groups(self, reader: int, readers: int, counter: SkipCounter, rng: random.Random) -> Iterator[list[dict]]:
        """Raw samples grouped into batches: in arrival order after the shuffle buffer, or by duration."""
        cfg = self.config
        stream = self._raw_stream(reader, readers, counter, rng)
        if cfg.bucketing:
            yield from bucket_batches(
                stream, lambda raw: probe_seconds(raw, self.max_seconds), rng, batch_size=cfg.batch_size,
                buffer_size=cfg.shuffle_buffer, max_batch_seconds=cfg.max_batch_seconds, shuffle=self.shuffle,
                drop_last=self.drop_last)
            return
        group: list[dict] = []
        for raw in self._shuffled(stream, rng):
            group.append(raw)
            if len(group) == cfg.batch_size:
                yield group
                group = []
        if group and not self.drop_last:
            yield group

    def __iter__(self) -> Iterator[Batch]:
        cfg = self.config
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        readers, reader = self.world_size * workers, self.rank * workers + worker
        rng = random.Random(mix(self.seed, self.epoch, reader, 1))
        counter = SkipCounter(cfg.max_failure_rate)
        # Resampled mode: a fixed number of samples (bucketed: batches) per reader, so ranks stay even.
        limit = None if cfg.epoch_mode else self._samples_per_reader(readers) // cfg.batch_size
        for j, group in enumerate(self._groups(reader, readers, counter, rng)):
            if limit is not None and j >= limit:
                break
            index = j * workers + worker  # this batch's place in the epoch (the loader takes workers in turn)
            # Skipped batches (before `skip`) get their own earlier steps: their captions draw from `rng` as they
            # did in the run that trained them, which keeps the draws of the batches after them the same.
            step = max(self.step + (index - self.skip) // self.accumulate, 0)
            batch = self._batch(group, counter, rng, step)
            if batch is not None:
                yield batch

    def _batch(self, group: list[dict], counter: SkipCounter, rng: random.Random, step: int) -> Batch | None:
        """Decode a group, choose each clip's captions (and negative) and collate; None if nothing decoded."""
        cfg = self.config
        pairing = cfg.caption_schedule.draw(step, random.Random(mix(self.seed, step, 2)))
        samples, chosen, negatives, decoder_texts = [], [], [], []
        for raw in group:
            sample = decode_raw(raw, counter, sample_rate=self.sample_rate, max_seconds=self.max_seconds,
                                crop=self.crop, rng=rng)
            if sample is None:
                continue
            caps, fallback = select_captions(sample.captions, cfg.caption_policy, rng, cfg.caption_choice, pairing)
            if fallback:
                counter.note("caption_fallback")
            if cfg.hard_negatives:
                negative = flip_attribute(caps[0][0], rng, sample.attributes or None)
                if negative is None:
                    counter.note("no_negative")
                negatives.append(negative)
            if self.decoder_tokenize is not None:
                text, fallback = decoder_caption(sample.captions, cfg.decoder_captions, rng, cfg.caption_choice)
                if fallback:
                    counter.note("decoder_caption_fallback")
                decoder_texts.append(text)
            samples.append(sample)
            chosen.append(caps)
        if not samples:
            return None
        decoder = (decoder_texts, self.decoder_tokenize) if self.decoder_tokenize is not None else None
        return collate(samples, chosen, self.tokenize, negatives=negatives if cfg.hard_negatives else None,
                       skipped=counter.drain(), decoder=decoder)


class ShardLoader(DataLoader):
    """A DataLoader over a ShardDataset with `set_epoch`; without it, each iteration is the next epoch."""

    def __init__(self, dataset: ShardDataset, **kwargs: Any):
        super().__init__(dataset, batch_size=None, **kwargs)
        self._next_epoch = 0
        self._requested: tuple[int, int, int] | None = None

    def set_epoch(self, epoch: int, step: int = 0, skip: int = 0) -> None:
        self._requested = (int(epoch), int(step), int(skip))

    def __iter__(self):
        position = self._requested if self._requested is not None else (self._next_epoch, 0, 0)
        self._requested = None
        self._next_epoch = position[0] + 1
        self.dataset.set_position(*position)
        return super().__iter__()


def text_tokenizer(tokenizer: Any, text: TextConfig | None = None) -> Tokenize:
    """The model's tokenization of captions (its max length, lower-casing, punctuation), picklable for workers."""
    text = text or TextConfig()
    return functools.partial(tokenize_texts, tokenizer, max_length=text.max_length, lowercase=text.lowercase,
                             punctuation=text.punctuation)


def decoder_tokenizer(tokenizer: Any, decoder: DecoderConfig) -> Tokenize:
    """The caption decoder's tokenization of its captions (<bos> caption <eos>, its max length), picklable for
    workers; `tokenizer` is the decoder's own (`CaptionDecoder.tokenizer`)."""
    return functools.partial(tokenize_captions, tokenizer, max_length=decoder.max_length)


_DATASET_ARGS = ("sample_rate", "max_seconds", "rank", "world_size", "seed", "shuffle", "crop", "drop_last",
                 "accumulate", "decoder_tokenize")


def build_dataloader(urls: Any, *, tokenizer: Any, config: DataConfig | None = None, text: TextConfig | None = None,
                     **kwargs: Any) -> ShardLoader:
    """A DataLoader yielding training `Batch`es. Keyword arguments: the ShardDataset's (sample_rate,
    max_seconds, rank, world_size, seed, shuffle, crop, drop_last, accumulate, decoder_tokenize), the text settings of
    `clsp.config.TextConfig` (max_length, lowercase, punctuation), or DataConfig fields."""
    dataset_args = {k: kwargs.pop(k) for k in _DATASET_ARGS if k in kwargs}
    dataset_args.setdefault("sample_rate", 48000)
    dataset_args.setdefault("max_seconds", 10.0)
    text_fields = {k: kwargs.pop(k) for k in ("max_length", "lowercase", "punctuation") if k in kwargs}
    text = text or TextConfig(**text_fields)
    config = config or DataConfig(train=urls, **kwargs)
    return shard_loader(ShardDataset(urls, text_tokenizer(tokenizer, text), config, **dataset_args))


def shard_loader(dataset: ShardDataset) -> ShardLoader:
    """The DataLoader of a ShardDataset: batches are built in the workers (batch_size=None)."""
    workers = dataset.config.num_workers
    return ShardLoader(
        dataset,
        num_workers=workers,
        pin_memory=dataset.config.pin_memory,
        persistent_workers=False,  # workers must see set_position, so they are re-created each epoch
        prefetch_factor=dataset.config.prefetch_factor if workers > 0 else None,
        # Its own generator: creating an iterator then never draws from the global torch RNG,
        # so a resumed run's random stream matches an uninterrupted one.
        generator=Generator().manual_seed(dataset.seed),
        worker_init_fn=shield_worker,  # a stop signal sent to every process reaches the training process only
    )
