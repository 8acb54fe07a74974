"""Shards -> training `Batch`es: splitting, shuffling, decode + resample + crop, captions, tokens, collate.

    loader = build_dataloader("/d/train-{000000..000063}.tar", tokenizer=tok, sample_rate=48000,
                              max_seconds=10.0, batch_size=96, num_workers=8, caption_policy="long")
    for batch in loader: ...           # clsp.data.batch.Batch

Everything up to the finished Batch runs in the DataLoader workers (batches are built in the
dataset, the loader uses batch_size=None), so the training process only moves tensors.

Splitting. Epoch mode (`epoch_mode=True`) reads every shard once per epoch: the shard list is
shuffled with `seed + epoch` and dealt round robin to the `world_size * num_workers` readers
(rank-major). With fewer shards than readers every reader reads all shards and keeps every n-th
sample instead, so nothing hangs and nothing is read twice. Resampled mode (`epoch_mode=False`)
is an endless stream: each reader draws a source by weight, then a shard of it at random, and an
"epoch" is `samples_per_epoch` samples over all ranks (rounded up to whole batches per reader,
so every rank yields the same number of batches).

Shuffling is seeded by (seed, epoch, rank, worker). The shuffle buffer holds the *encoded*
samples (a few hundred kB each), not decoded audio. `set_epoch(e)` on the loader or dataset
picks the epoch; without it each new iteration of the loader advances the epoch by one.

Duration bucketing (`bucketing=True`). Whisper pads a batch to its longest clip, so a random
batch of 2-30 s speech costs nearly the 30 s price. With bucketing the shuffle buffer is kept
sorted by duration (read from each sample's audio header, not decoded) and batches are cut from
runs of neighbouring durations: while streaming, one of the buffer's complete batches is chosen
at random (seeded), so order stays random across batches but clips within one are alike (as
open_clip's audio loader and lhotse's DynamicBucketingSampler do). Without a budget every batch
holds `batch_size` clips, so batch counts per epoch are exactly those without bucketing and ranks
stay even as before. `max_batch_seconds` instead fills each batch up to a budget of *padded*
seconds (clips x longest clip, what the towers pay for) with at most `batch_size` clips; an epoch
is still `samples_per_epoch / batch_size` batches per rank in resampled mode, so ranks stay even.
(In epoch mode a budget makes the batch count unknown before reading: one rank only.) A sample
whose header reads but whose audio does not decode leaves its batch one clip short. Order is a
function of (seed, epoch, rank, worker), so runs and resumed runs see the same batches.
`Batch.padding_efficiency` (real / padded samples) reports what bucketing buys.

Captions (`caption_policy`): "short", "long", "random" (any caption) and "both" (primary = a
long caption if any else a short one; extras = the short caption and a second long caption when
present, so the trainer can use "short+long" or "two longs"). A clip without the asked-for
kind falls back to the other kind. Batch.skipped carries, per batch and worker, the skip counts by
reason (see reader.SKIP_REASONS) plus two event counts that are not failures:
"caption_fallback" and "no_negative" (hard negatives asked for but no attribute could be flipped).
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from clsp.data.batch import Batch
from clsp.data.reader import (
    SkipCounter,
    decode_raw,
    iter_raw,
    parse_sources,
    probe_seconds,
    shard_sizes,
)
from clsp.tokenizer import tokenize

CAPTION_POLICIES = ("short", "long", "both", "random")
CROPS = ("random", "start", "none")


@dataclass
class DataConfig:
    """Everything build_dataloader needs besides the URLs and the tokenizer (Hydra-friendly)."""

    sample_rate: int = 48000
    max_seconds: float | None = 10.0
    crop: str = "random"  # "random" (training), "start" (deterministic), "none" (= truncate at max_seconds)
    batch_size: int = 32
    num_workers: int = 2
    epoch_mode: bool = True
    samples_per_epoch: int | None = None  # resampled mode; default: all samples in sizes.json
    seed: int = 0
    shuffle: bool = True
    shuffle_buffer: int = 1000
    bucketing: bool = False  # batches of similar duration, cut from the (sorted) shuffle buffer
    max_batch_seconds: float | None = None  # with bucketing: padded seconds per batch (batch_size = max clips)
    caption_policy: str = "short"
    caption_choice: str = "random"  # which caption of a kind: "random", "first" or "all" (evaluation)
    max_text_length: int = 77
    text_lowercase: bool = False  # the model's caption preprocessing (TextConfig.lowercase / punctuation)
    text_punctuation: str = ""
    hard_negatives: bool = False
    rank: int = 0
    world_size: int = 1
    max_failure_rate: float | None = 0.1
    drop_last: bool = False
    pin_memory: bool = False

    def __post_init__(self) -> None:
        if self.crop not in CROPS:
            raise ValueError(f"crop must be one of {CROPS}, got {self.crop!r}")
        if self.caption_policy not in CAPTION_POLICIES:
            raise ValueError(f"caption_policy must be one of {CAPTION_POLICIES}, got {self.caption_policy!r}")
        if self.caption_choice not in ("random", "first", "all"):
            raise ValueError(f"caption_choice must be 'random', 'first' or 'all', got {self.caption_choice!r}")
        if self.batch_size < 1 or self.num_workers < 0:
            raise ValueError(f"need batch_size >= 1 and num_workers >= 0, got {self.batch_size}, {self.num_workers}")
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is not in [0, world_size={self.world_size})")
        if self.max_text_length < 2:
            raise ValueError(f"max_text_length must be >= 2, got {self.max_text_length}")
        if self.max_batch_seconds is not None:
            if not self.max_batch_seconds > 0:
                raise ValueError(f"max_batch_seconds must be > 0 or null, got {self.max_batch_seconds}")
            if not self.bucketing:
                raise ValueError("max_batch_seconds needs bucketing: true (the budget is filled from sorted durations)")
            if self.epoch_mode and self.world_size > 1:
                raise ValueError(
                    "max_batch_seconds on several ranks needs epoch_mode: false (a resampled stream), so every "
                    "rank can yield the same number of batches"
                )


# -- captions -------------------------------------------------------------------------------------
def select_captions(
    captions: dict[str, list[str]], policy: str, rng: random.Random, choice: str = "random"
) -> tuple[list[tuple[str, str]], bool]:
    """[(text, kind), ...] with the primary caption first, and whether a fallback kind was used."""
    short, long = captions.get("short", []), captions.get("long", [])
    if choice == "all":  # evaluation: every caption of the kind(s), in stored order, as `clsp.eval` reads them
        if policy in ("short", "long"):
            want, other = (short, long) if policy == "short" else (long, short)
            kind, other_kind = (policy, "long" if policy == "short" else "short")
            return ([(t, kind) for t in want], False) if want else ([(t, other_kind) for t in other], True)
        return [(t, "short") for t in short] + [(t, "long") for t in long], False

    def pick(texts: list[str]) -> int:
        return rng.randrange(len(texts)) if choice == "random" and len(texts) > 1 else 0

    if policy == "random":
        pool = [(t, "short") for t in short] + [(t, "long") for t in long]
        return [pool[pick(pool)]], False
    if policy in ("short", "long"):
        want, other = (short, long) if policy == "short" else (long, short)
        other_kind = "long" if policy == "short" else "short"
        if want:
            return [(want[pick(want)], policy)], False
        return [(other[pick(other)], other_kind)], True
    # "both": primary long (else short), then the short caption and a second long one when present.
    if long:
        i = pick(long)
        out = [(long[i], "long")]
        if short:
            out.append((short[pick(short)], "short"))
        if len(long) > 1:
            j = rng.choice([k for k in range(len(long)) if k != i]) if choice == "random" else (1 if i == 0 else 0)
            out.append((long[j], "long"))
        return out, False
    i = pick(short)
    out = [(short[i], "short")]
    if len(short) > 1:
        out.append((short[(i + 1) % len(short)], "short"))
    return out, True


def _flip_attribute():
    # Imported lazily: perturb.py is optional until hard negatives are asked for.
    from clsp.data.perturb import flip_attribute

    return flip_attribute


def collate(
    samples: Sequence[Any],
    chosen: Sequence[list[tuple[str, str]]],
    tokenizer: Any,
    *,
    max_text_length: int = 77,
    text_lowercase: bool = False,
    text_punctuation: str = "",
    negatives: Sequence[str | None] | None = None,
    skipped: dict[str, int] | None = None,
) -> Batch:
    """One Batch from decoded samples and their chosen captions (primary first per sample).

    Audio is zero padded to the longest clip with one pad_sequence; all captions (and negatives)
    are tokenised in one call (clsp.tokenizer.tokenize), padded to the longest, truncated at max_text_length.
    """
    b = len(samples)
    if b == 0:
        raise ValueError("cannot collate an empty list of samples")
    waves = [torch.from_numpy(np.ascontiguousarray(s.audio)) for s in samples]
    audio = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)
    lengths = torch.tensor([w.shape[0] for w in waves], dtype=torch.int64)

    # Primary captions first (rows 0..B-1), then the extras in sample order.
    texts = [c[0][0] for c in chosen]
    kinds = [c[0][1] for c in chosen]
    owner = list(range(b))
    for i, c in enumerate(chosen):
        for text, kind in c[1:]:
            texts.append(text)
            kinds.append(kind)
            owner.append(i)
    n_caps = len(texts)
    neg_texts = []
    if negatives is not None:
        neg_texts = [neg if neg is not None else texts[i] for i, neg in enumerate(negatives)]
    # The model's own tokenization: one call, truncation at max_text_length counted, end token kept.
    tok = tokenize(tokenizer, texts + neg_texts, max_text_length, lowercase=text_lowercase,
                   punctuation=text_punctuation)
    ids, mask = tok.input_ids, tok.attention_mask
    truncated = int(tok.cut[:n_caps].sum())  # captions only: negatives are flipped copies of them
    token_lengths = mask.sum(1).tolist()

    batch = Batch(
        audio=audio,
        audio_lengths=lengths,
        input_ids=ids[:n_caps],
        attention_mask=mask[:n_caps],
        caption_to_clip=torch.tensor(owner, dtype=torch.int64),
        caption_kinds=kinds,
        keys=[s.key for s in samples],
        attributes=[s.attributes for s in samples],
        texts=texts,
        truncated=truncated,
        skipped=dict(skipped or {}),
        caption_lengths=token_lengths[:n_caps],
        padding_efficiency=float(lengths.sum()) / max(audio.numel(), 1),
    )
    if negatives is not None:
        batch.negative_input_ids = ids[n_caps:]
        batch.negative_attention_mask = mask[n_caps:]
        batch.has_negative = torch.tensor([neg is not None for neg in negatives], dtype=torch.bool)
        batch.negative_lengths = token_lengths[n_caps:]
    return batch


# -- the dataset ----------------------------------------------------------------------------------
def _mix(*parts: int) -> int:
    # A stable seed from several ints (hash() of tuples is stable for ints, but be explicit).
    x = 0x9E3779B97F4A7C15
    for p in parts:
        x = (x * 0x100000001B3 ^ (int(p) & 0xFFFFFFFFFFFFFFFF)) & 0xFFFFFFFFFFFFFFFF
    return x


class ShardDataset(IterableDataset):
    """An IterableDataset of `Batch`es read from WebDataset shards (see the module doc)."""

    def __init__(self, urls: Any, tokenizer: Any, config: DataConfig):
        self.config = config
        self.tokenizer = tokenizer
        self.sources = parse_sources(urls)
        self.urls = [u for s in self.sources for u in s.urls]
        self.sizes = shard_sizes(self.urls)
        self.epoch = 0
        if not config.epoch_mode and config.samples_per_epoch is None:
            if any(v is None for v in self.sizes.values()):
                raise ValueError(
                    "resampled mode (epoch_mode=False) needs samples_per_epoch when shards have no sizes.json"
                )
        if config.hard_negatives:
            _flip_attribute()  # fail now, in the main process, if perturb.py is missing

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    # -- planning ----------------------------------------------------------------------------------
    def _readers(self) -> int:
        return self.config.world_size * max(1, self.config.num_workers)

    def _epoch_plan(self, reader: int, readers: int) -> tuple[list[str], int | None]:
        """(shards to read, sample stride or None) for one reader in epoch mode."""
        urls = list(self.urls)
        if self.config.shuffle:
            random.Random(_mix(self.config.seed, self.epoch)).shuffle(urls)
        if len(urls) >= readers:
            return urls[reader::readers], None
        return urls, readers

    def _samples_per_reader(self, readers: int) -> int:
        total = self.config.samples_per_epoch
        if total is None:
            total = sum(v or 0 for v in self.sizes.values())
        per = math.ceil(total / readers)
        return math.ceil(per / self.config.batch_size) * self.config.batch_size

    def __len__(self) -> int:
        """Batches this rank yields per epoch (epoch mode: from sizes.json, before skips)."""
        cfg, workers = self.config, max(1, self.config.num_workers)
        readers = self._readers()
        if not cfg.epoch_mode:
            return workers * (self._samples_per_reader(readers) // cfg.batch_size)
        if cfg.max_batch_seconds is not None:
            raise TypeError("length unknown: batches filled to max_batch_seconds (epoch mode)")
        if any(v is None for v in self.sizes.values()):
            raise TypeError("length unknown: some shards have no sizes.json entry")
        total_batches = 0
        for w in range(workers):
            reader = cfg.rank * workers + w
            urls, stride = self._epoch_plan(reader, readers)
            n = sum(self.sizes[u] for u in urls)
            if stride is not None:
                n = len(range(reader, n, stride))
            total_batches += n // cfg.batch_size if cfg.drop_last else math.ceil(n / cfg.batch_size)
        return total_batches

    # -- iteration ---------------------------------------------------------------------------------
    def _raw_stream(self, reader: int, readers: int, counter: SkipCounter, rng: random.Random) -> Iterator[dict]:
        cfg = self.config
        if cfg.epoch_mode:
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
        size = self.config.shuffle_buffer if self.config.shuffle else 0
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

    def _reader_state(self) -> tuple[int, int, random.Random, SkipCounter, object]:
        """(this reader's index, readers in all, its seeded rng, a fresh skip counter, the attribute flipper)."""
        cfg = self.config
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        readers = cfg.world_size * workers
        reader = cfg.rank * workers + worker
        rng = random.Random(_mix(cfg.seed, self.epoch, reader, 1))
        flip = _flip_attribute() if cfg.hard_negatives else None
        return reader, readers, rng, SkipCounter(cfg.max_failure_rate), flip

    def __iter__(self) -> Iterator[Batch]:
        if self.config.bucketing:
            yield from self._iter_bucketed()
            return
        cfg = self.config
        reader, readers, rng, counter, flip = self._reader_state()
        limit = None if cfg.epoch_mode else self._samples_per_reader(readers)

        samples, chosen, negatives = [], [], []
        produced = 0
        for raw in self._shuffled(self._raw_stream(reader, readers, counter, rng), rng):
            if not self._prepare(raw, counter, rng, flip, samples, chosen, negatives):
                continue
            produced += 1
            if len(samples) == cfg.batch_size:
                yield self._collate(samples, chosen, negatives if flip else None, counter)
                samples, chosen, negatives = [], [], []
            if limit is not None and produced >= limit:
                break
        if samples and not cfg.drop_last:
            yield self._collate(samples, chosen, negatives if flip else None, counter)

    def _iter_bucketed(self) -> Iterator[Batch]:
        cfg = self.config
        reader, readers, rng, counter, flip = self._reader_state()
        # Resampled mode: a fixed number of batches per reader, whatever each holds, so ranks stay even.
        limit = None if cfg.epoch_mode else self._samples_per_reader(readers) // cfg.batch_size
        produced = 0
        groups = bucket_batches(
            self._raw_stream(reader, readers, counter, rng), lambda raw: probe_seconds(raw, cfg.max_seconds), rng,
            batch_size=cfg.batch_size, buffer_size=cfg.shuffle_buffer, max_batch_seconds=cfg.max_batch_seconds,
            shuffle=cfg.shuffle, drop_last=cfg.drop_last,
        )
        for group in groups:
            samples, chosen, negatives = [], [], []
            for raw in group:
                self._prepare(raw, counter, rng, flip, samples, chosen, negatives)
            if not samples:
                continue
            yield self._collate(samples, chosen, negatives if flip else None, counter)
            produced += 1
            if limit is not None and produced >= limit:
                break

    def _prepare(self, raw: dict, counter: SkipCounter, rng: random.Random, flip, samples: list, chosen: list,
                 negatives: list) -> bool:
        """Decode one raw sample and pick its captions (and negative), appending to the batch lists;
        False (counted by reason) when the sample is unusable."""
        cfg = self.config
        sample = decode_raw(raw, counter, sample_rate=cfg.sample_rate, max_seconds=cfg.max_seconds, crop=cfg.crop,
                            rng=rng)
        if sample is None:
            return False
        caps, fallback = select_captions(sample.captions, cfg.caption_policy, rng, cfg.caption_choice)
        if fallback:
            counter.note("caption_fallback")
        if flip is not None:
            neg = flip(caps[0][0], rng, sample.attributes or None)
            if neg is None:
                counter.note("no_negative")
            negatives.append(neg)
        samples.append(sample)
        chosen.append(caps)
        return True

    def _collate(self, samples, chosen, negatives, counter: SkipCounter) -> Batch:
        return collate(
            samples,
            chosen,
            self.tokenizer,
            max_text_length=self.config.max_text_length,
            text_lowercase=self.config.text_lowercase,
            text_punctuation=self.config.text_punctuation,
            negatives=negatives,
            skipped=counter.drain(),
        )


def bucket_batches(
    items: Iterator[Any],
    seconds_of: Callable[[Any], float],
    rng: random.Random,
    *,
    batch_size: int,
    buffer_size: int,
    max_batch_seconds: float | None = None,
    shuffle: bool = True,
    drop_last: bool = False,
) -> Iterator[list[Any]]:
    """Groups of items of similar duration, one batch each, from a buffer kept sorted by duration.

    While streaming, once the buffer holds `buffer_size` items (at least two batches), one of its
    complete batches is taken at random (the first when not shuffling); at the end the rest follow
    in random order, the one short batch last (dropped with drop_last, unless a budget is set).
    """
    size = max(buffer_size, 2 * batch_size)
    seconds: list[float] = []  # sorted; items held[i] has duration seconds[i]
    held: list[Any] = []
    for item in items:
        d = seconds_of(item)
        i = bisect.bisect_right(seconds, d)  # after equal durations: arrival order breaks ties
        seconds.insert(i, d)
        held.insert(i, item)
        if len(held) >= size:
            # Every piece but the last is complete (the last may still grow with new arrivals).
            pieces = _pieces(seconds, batch_size, max_batch_seconds)[:-1]
            start, end = pieces[rng.randrange(len(pieces))] if shuffle else pieces[0]
            group = held[start:end]
            del held[start:end], seconds[start:end]
            yield group
    if not held:
        return
    pieces = _pieces(seconds, batch_size, max_batch_seconds)
    last = pieces.pop()
    if shuffle:
        rng.shuffle(pieces)
    yield from (held[a:b] for a, b in pieces)
    if max_batch_seconds is not None or not drop_last or last[1] - last[0] == batch_size:
        yield held[last[0]:last[1]]


def _pieces(seconds: Sequence[float], max_clips: int, budget: float | None) -> list[tuple[int, int]]:
    """Cut sorted durations into consecutive batches [start, end): `max_clips` each, or, with a budget,
    as many clips as keep clips x longest <= budget (at least one). Binary search per batch: the
    padded cost (end - start) * seconds[end - 1] only grows with end, as durations are sorted."""
    pieces, start, n = [], 0, len(seconds)
    while start < n:
        lo, hi = start + 1, min(n, start + max_clips)
        if budget is not None:
            while lo < hi:  # the largest end in [lo, hi] within the budget
                mid = (lo + hi + 1) // 2
                if (mid - start) * seconds[mid - 1] <= budget:
                    lo = mid
                else:
                    hi = mid - 1
        else:
            lo = hi
        pieces.append((start, lo))
        start = lo
    return pieces


class ShardLoader(DataLoader):
    """A DataLoader over a ShardDataset with `set_epoch`; without it, each iteration is the next epoch."""

    def __init__(self, dataset: ShardDataset, **kwargs: Any):
        super().__init__(dataset, batch_size=None, **kwargs)
        self._next_epoch = 0
        self._requested: int | None = None

    def set_epoch(self, epoch: int) -> None:
        self._requested = int(epoch)

    def __iter__(self):
        epoch = self._requested if self._requested is not None else self._next_epoch
        self._requested = None
        self._next_epoch = epoch + 1
        self.dataset.set_epoch(epoch)
        return super().__iter__()


def build_dataloader(urls: Any, *, tokenizer: Any, config: DataConfig | None = None, **kwargs: Any) -> ShardLoader:
    """A DataLoader yielding `Batch`es; pass a DataConfig or its fields as keyword arguments."""
    if config is None:
        config = DataConfig(**kwargs)
    elif kwargs:
        config = DataConfig(**{**asdict(config), **kwargs})
    dataset = ShardDataset(urls, tokenizer, config)
    return ShardLoader(
        dataset,
        num_workers=config.num_workers,
        pin_memory=config.pin_memory,
        persistent_workers=False,  # workers must see set_epoch, so they are re-created each epoch
        prefetch_factor=2 if config.num_workers > 0 else None,
        # Its own generator: creating an iterator then never draws from the global torch RNG,
        # so a resumed run's random stream matches an uninterrupted one.
        generator=torch.Generator().manual_seed(config.seed),
    )
