"""Evaluation clips: the `Clip` record, in-memory inputs as clips, and the one clip stream from shards.

`shard_clips` is what validation, the end-of-run test and `clsp.eval retrieval --data <shards>` read:
every good sample of the shards (decoded whole, at the model's rate when given; the model's frontend
picks the window as `encode_audio` does) with the captions `clsp.data.captions.eval_captions` keeps.
A clip without a caption of the asked-for kind is left out and counted (`no_short_caption`, ...).
`ClipStream` is the same stream as a DataLoader dataset, split over ranks and workers.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import IterableDataset, get_worker_info

from clsp.audio_io import AudioDecodeError, audio_info, decode
from clsp.data.captions import eval_captions, missing_reason
from clsp.data.samples import decode_raw
from clsp.data.schema import cell_texts
from clsp.data.skips import SkipCounter
from clsp.data.tar import iter_raw
from clsp.data.urls import deal_shards, expand_urls

__all__ = ["Clip", "ClipStream", "Skips", "as_clips", "load_audio", "probe_clip", "shard_clips"]


@dataclass
class Clip:
    """One audio clip and what the table or shard says about it."""

    key: str
    path: Path | None = None  # table clips: decoded lazily
    audio: np.ndarray | None = None  # shard clips: already decoded, float32 mono
    sample_rate: int | None = None
    frames: int = 0
    captions: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)  # "short"/"long"/column name, per caption
    label: str | None = None
    score: float | None = None
    line: int = 0  # table line, for error messages
    attributes: dict[str, str] = field(default_factory=dict)  # official sets: fold, gender, age bin, ...


def probe_clip(clip: Clip) -> str | None:
    """Read a clip's header (rate, frames) so bad files are found before any encoding; the skip reason
    ("missing_file", "decode_error", "empty_audio") when it cannot be used, else None."""
    if not clip.path.is_file():
        return "missing_file"
    try:
        frames, rate, _ = audio_info(clip.path)
    except AudioDecodeError:
        return "decode_error"
    if frames == 0:
        return "empty_audio"
    clip.sample_rate, clip.frames = rate, frames
    return None


@dataclass
class Skips:
    """Clips left out of an evaluation: counts by reason and the first few, named."""

    counts: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)
    keep: int = 5

    def add(self, reason: str, where: str | None = None, n: int = 1) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + n
        if where is not None and len(self.examples) < self.keep:
            self.examples.append(f"{where} ({reason})")

    def update(self, counts: dict[str, int]) -> None:
        for reason, n in counts.items():
            self.add(reason, n=n)

    def __bool__(self) -> bool:
        return bool(self.counts)

    def as_dict(self) -> dict:
        return {"counts": dict(self.counts), "examples": list(self.examples)}


def load_audio(clip: Clip) -> tuple[np.ndarray, int | None]:
    """(float32 mono waveform, sample rate) of a clip, decoding its file if needed.

    In-memory clips may have no rate (None: the model's own rate)."""
    if clip.audio is not None:
        return clip.audio, clip.sample_rate
    try:
        return decode(clip.path)  # mono float32 at the file's rate
    except AudioDecodeError as exc:
        raise ValueError(f"line {clip.line}: cannot decode audio {clip.path}: {exc}") from exc


def as_clips(
    items: Iterable[Clip] | Sequence[object],
    *,
    captions: Sequence[str | Sequence[str]] | None = None,
    labels: Sequence[str] | None = None,
    scores: Sequence[float] | None = None,
    sample_rate: int | None = None,
) -> Iterable[Clip]:
    """Clips from audio file paths, 1-D arrays/tensors or `Clip`s, with per-clip captions/labels/scores.

    A non-sequence iterable of `Clip`s (a shard stream) is passed through untouched.
    """
    if not isinstance(items, Sequence):
        return items
    n = len(items)
    for name, given in (("captions", captions), ("labels", labels), ("scores", scores)):
        if given is not None and len(given) != n:
            raise ValueError(f"{name} has {len(given)} entries for {n} clips")
    clips = []
    for i, item in enumerate(items):
        if isinstance(item, Clip):
            clip = item
        elif isinstance(item, (str, Path)):
            clip = Clip(key=str(item), path=Path(item), line=i)
            problem = probe_clip(clip)
            if problem is not None:
                raise ValueError(f"clip {i}: {problem.replace('_', ' ')}: {clip.path}")
        else:
            audio = item.detach().cpu().numpy() if hasattr(item, "detach") else np.asarray(item)
            if audio.ndim != 1 or audio.size == 0:
                raise ValueError(f"clip {i}: audio must be a non-empty 1-D waveform; got shape {audio.shape}")
            clip = Clip(key=str(i), audio=audio.astype(np.float32, copy=False), sample_rate=sample_rate,
                        frames=audio.shape[0], line=i)
        if captions is not None:
            texts = cell_texts(captions[i])
            if not texts:
                raise ValueError(f"clip {i}: no caption")
            clip.captions, clip.kinds = texts, ["caption"] * len(texts)
        if labels is not None:
            clip.label = str(labels[i])
        if scores is not None:
            clip.score = float(scores[i])
        clips.append(clip)
    return clips


def shard_clips(urls: Sequence[str], captions: str = "all", skipped: Skips | None = None, *,
                sample_rate: int | None = None, part: tuple[int, int] = (0, 1),
                max_failure_rate: float | None = 0.1) -> Iterator[Clip]:
    """Every good sample of the shards (part `i` of `n` of them, see `clsp.data.urls.deal_shards`) as a
    Clip with its captions of kind `captions`; skips are added to `skipped` by reason as they happen.
    Past `max_failure_rate` the stream stops with the data error (`clsp.data.skips`), as training does."""
    skipped = skipped if skipped is not None else Skips()
    counter = SkipCounter(max_failure_rate)
    reader, readers = part
    urls, stride = deal_shards(list(urls), reader, readers)
    index = 0
    for url in urls:
        for raw in iter_raw(url, counter):
            mine = stride is None or index % stride == reader
            index += 1
            if not mine:
                continue
            sample = decode_raw(raw, counter, sample_rate=sample_rate, crop="none")
            skipped.update(counter.drain())
            if sample is None:
                continue
            texts, kinds = eval_captions(sample.captions, captions)
            if not texts:
                skipped.add(missing_reason(captions), f"{url}: {sample.key}")
                continue
            audio = np.asarray(sample.audio, dtype=np.float32)
            yield Clip(key=str(sample.key), audio=audio, sample_rate=int(sample.sample_rate),
                       frames=int(audio.shape[-1]), captions=texts, kinds=kinds)
        skipped.update(counter.drain())  # a corrupt or unopenable tar


class ClipStream(IterableDataset):
    """`shard_clips` as a DataLoader dataset: rank `rank` of `world_size` reads its share, split again
    over the loader's workers. Each item is (up to `batch_size` clips, skip counts since the last item)."""

    def __init__(self, urls: Any, captions: str, *, sample_rate: int | None, batch_size: int,
                 rank: int = 0, world_size: int = 1):
        self.urls = expand_urls(urls)
        self.captions, self.sample_rate, self.batch_size = captions, sample_rate, batch_size
        self.rank, self.world_size = rank, world_size

    def __iter__(self) -> Iterator[tuple[list[Clip], dict[str, int]]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        part = (self.rank * workers + worker, self.world_size * workers)
        skipped = Skips()
        batch: list[Clip] = []
        for clip in shard_clips(self.urls, self.captions, skipped, sample_rate=self.sample_rate, part=part):
            batch.append(clip)
            if len(batch) == self.batch_size:
                yield batch, skipped.counts
                batch, skipped = [], Skips()
        if batch or skipped:
            yield batch, skipped.counts
