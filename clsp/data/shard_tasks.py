"""The work of one shard-writing task, run in a worker process: one chunk of jobs (or one input shard) -> one shard.

Bad clips are counted by reason and listed, never fatal: `no_audio` (no file, or a Parquet cell
with neither bytes nor a readable path), `decode_error` (neither libsndfile nor FFmpeg reads it),
`empty_audio`, `nan_audio`, `encode_error`. Audio stored in a Parquet table is read here, a row
group at a time, so the parent process never holds it.
"""

from __future__ import annotations

import tarfile
import time
from collections import Counter
from typing import Any

import numpy as np

from clsp import audio_io
from clsp.atomic import atomic_path
from clsp.data.parquet import read_embedded
from clsp.data.samples import decode_raw
from clsp.data.schema import canonical_meta
from clsp.data.skips import SkipCounter
from clsp.data.sources import Job
from clsp.data.tar import iter_raw
from clsp.data.writer import ShardWriter

__all__ = ["reshard_laion", "write_chunk"]


class _Skip(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def _writer(task: dict[str, Any]) -> ShardWriter:
    return ShardWriter(
        task["out"], task["prefix"], samples_per_shard=1 << 62, codec=task["codec"],
        sample_rate=task["sample_rate"], start_index=task["index"], write_sizes=False,
    )  # fmt: skip


def _finish(writer: ShardWriter, name: str, start: float, skipped: Counter, problems: list, manifest: list) -> dict:
    stats = writer.close()
    for problem in problems:  # so a resumed run keeps the skips of the shards it keeps
        problem["shard"] = name
    if name not in stats.shards:  # every clip of the chunk failed: still leave no gap in the numbering
        with atomic_path(writer.out_dir / name) as tmp:
            tarfile.open(tmp, "w").close()
    return {
        "shard": name,
        "count": stats.samples,
        "seconds": stats.seconds,
        "skipped": dict(skipped),
        "problems": problems,
        "manifest": manifest,
        "elapsed": time.perf_counter() - start,
    }


def _embedded_audio(jobs: list[Job]) -> tuple[list[bytes | None], str | None]:
    """Each job's Parquet-stored audio bytes (None: none), or the reason they could not be read."""
    blobs: list[bytes | None] = [None] * len(jobs)
    stored = [i for i, j in enumerate(jobs) if j.embedded is not None]
    if not stored:
        return blobs, None
    try:
        for i, blob in zip(stored, read_embedded([jobs[i].embedded for i in stored])):
            blobs[i] = blob
    except (ValueError, OSError) as exc:  # a damaged table: its rows are skipped with the reason
        return blobs, f"cannot read audio from the Parquet table: {exc}"
    return blobs, None


def _load(job: Job, blob: bytes | None) -> tuple[np.ndarray, int]:
    """The job's audio: its stored bytes, else its file."""
    src: str | bytes | None = blob
    if src is None and not job.audio_path:
        raise FileNotFoundError(f"{job.id}: the table holds neither audio bytes nor a path")
    audio, rate = audio_io.load(src if src is not None else job.audio_path, offset_s=job.offset,
                                duration_s=job.duration)  # fmt: skip
    if audio.size == 0:
        raise _Skip("empty_audio", "no samples")
    if not np.isfinite(audio).all():
        raise _Skip("nan_audio", "NaN or Inf samples")
    return audio, rate


def _where(job: Job) -> str:
    """The audio's location as a manifest or a skip list names it."""
    return f"{job.embedded.file}#row{job.embedded.row}" if job.embedded is not None else job.audio_path


def write_chunk(task: dict[str, Any]) -> dict[str, Any]:
    """Write the jobs of one chunk into one shard; bad clips are counted, never fatal."""
    start = time.perf_counter()
    writer = _writer(task)
    name = writer.shard_name(task["index"])
    skipped: Counter[str] = Counter()
    problems, manifest = [], []
    blobs, unreadable = _embedded_audio(task["jobs"])
    for job, blob in zip(task["jobs"], blobs):
        try:
            if unreadable and job.embedded is not None:
                raise _Skip("decode_error", unreadable)
            audio, rate = _load(job, blob)
            try:
                key = writer.write(job.key, audio, rate, job.meta)
            except ValueError as exc:  # e.g. a codec that cannot encode this rate
                raise _Skip("encode_error", str(exc)) from exc
        except FileNotFoundError as exc:
            skipped["no_audio"] += 1
            problems.append({"id": job.id, "reason": "no_audio", "detail": str(exc)})
            continue
        except audio_io.AudioDecodeError as exc:  # its message names a file, not a table's row
            skipped["decode_error"] += 1
            detail = str(exc) if job.embedded is None else f"{_where(job)}: {exc}"
            problems.append({"id": job.id, "reason": "decode_error", "detail": detail})
            continue
        except _Skip as exc:
            skipped[exc.reason] += 1
            problems.append({"id": job.id, "reason": exc.reason, "detail": f"{_where(job)}: {exc.detail}"})
            continue
        manifest.append({"key": key, "id": job.id, "shard": name, "audio": _where(job)})
    return _finish(writer, name, start, skipped, problems, manifest)


def reshard_laion(task: dict[str, Any]) -> dict[str, Any]:
    """Validate (decode) every sample of one input shard and write it in our format to one shard."""

    start = time.perf_counter()
    codec, target = task["codec"], task["sample_rate"]
    writer = _writer(task)
    name = writer.shard_name(task["index"])
    url = task["url"]
    counter = SkipCounter(max_failure_rate=None)
    manifest = []
    for raw in iter_raw(url, counter):
        sample = decode_raw(raw, counter)
        if sample is None:
            continue
        meta = canonical_meta(sample.meta, source="laion")
        meta.setdefault("id", sample.key)
        ext = next((e for e in raw if not e.startswith("__") and e.rsplit(".", 1)[-1] == codec), None)
        seconds = sample.audio.shape[0] / sample.sample_rate
        if ext is not None and target in (None, sample.sample_rate):
            meta["duration"] = round(seconds, 4)
            key = writer.write_encoded(sample.key, raw[ext], meta, seconds=seconds)  # already in our codec
        else:
            key = writer.write(sample.key, sample.audio, sample.sample_rate, meta)
        manifest.append({"key": key, "id": meta["id"], "shard": name, "audio": f"{url}#{sample.key}"})
    skipped = Counter({k: v for k, v in counter.totals.items()})
    problems = [{"id": url, "reason": r, "detail": f"{n} sample(s)", "count": n} for r, n in skipped.items()]
    return _finish(writer, name, start, skipped, problems, manifest)

