"""ShardWriter: captioned audio -> WebDataset tar shards (`<key>.flac` + `<key>.json`) + sizes.json.

Each tar is written to `<name>.tmp` and renamed when complete, so a reader or `--resume` never
sees a half-written shard under its final name. Members carry a fixed mtime/owner so the same
input gives byte-identical shards.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clsp import audio_io
from clsp.atomic import write_json_atomic
from clsp.data.schema import KeyAllocator, canonical_meta

SIZES_FILE = "sizes.json"
PART_SIZES_GLOB = "sizes-p*of*.json"  # written by `clsp.shards --part I/N` (see clsp.data.parts)


def read_sizes(out_dir: str | Path, name: str = SIZES_FILE) -> dict[str, int]:
    """The folder's sizes.json, or another sizes file of it ({} when there is none)."""
    path = Path(out_dir) / name
    if not path.is_file():
        return {}
    try:
        return {str(k): int(v) for k, v in json.loads(path.read_text()).items()}
    except (ValueError, AttributeError) as exc:
        raise ValueError(f"{path} is not a JSON object of shard name -> sample count: {exc}") from exc


def folder_sizes(out_dir: str | Path) -> dict[str, int]:
    """Samples per shard of a folder: its sizes.json merged with every part's sizes-pIIIofNNN.json.

    What a reader should use: parts writing one folder each keep their own sizes file."""
    sizes = read_sizes(out_dir)
    for path in sorted(Path(out_dir).glob(PART_SIZES_GLOB)):
        sizes.update(read_sizes(out_dir, path.name))
    return sizes


def update_sizes(out_dir: str | Path, sizes: dict[str, int]) -> dict[str, int]:
    """Merge `sizes` into the folder's sizes.json (atomically) and return the merged mapping."""
    merged = read_sizes(out_dir)
    merged.update(sizes)
    write_json_atomic(Path(out_dir) / SIZES_FILE, dict(sorted(merged.items())))
    return merged


@dataclass
class WriterStats:
    shards: dict[str, int] = field(default_factory=dict)  # shard file name -> samples
    samples: int = 0
    seconds: float = 0.0  # audio written, in seconds
    bytes: int = 0
    keys: dict[str, str] = field(default_factory=dict)  # key -> shard file name


class ShardWriter:
    """Write samples into `<out_dir>/<prefix>-000000.tar`, ... rotating every `samples_per_shard`.

    `write(key, audio, sample_rate, meta)` takes mono float32 [T] or [T, C] audio (mixed to mono),
    resamples to `sample_rate` when the writer has one, and stores `<key>.<codec>` + `<key>.json`.
    Keys are sanitised (no dots: webdataset splits at the first dot) and made unique; the original
    id stays in the json's "id". `close()` writes/merges sizes.json and returns `WriterStats`.
    """

    def __init__(
        self,
        out_dir: str | Path,
        prefix: str = "shard",
        samples_per_shard: int = 1000,
        codec: str = "flac",
        sample_rate: int | None = None,
        *,
        start_index: int = 0,
        write_sizes: bool = True,
    ):
        if samples_per_shard < 1:
            raise ValueError(f"samples_per_shard must be >= 1, got {samples_per_shard}")
        if codec not in audio_io.CODECS:
            raise ValueError(f"unknown codec {codec!r}; choose from {sorted(audio_io.CODECS)}")
        if "." in prefix or "/" in prefix:
            raise ValueError(f"shard prefix {prefix!r} must not contain '.' or '/'")
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.prefix = prefix
        self.samples_per_shard = samples_per_shard
        self.codec = codec
        self.sample_rate = sample_rate
        self.write_sizes = write_sizes
        self.stats = WriterStats()
        self._keys = KeyAllocator()
        self._index = start_index
        self._tar: tarfile.TarFile | None = None
        self._tmp_path: Path | None = None
        self._count = 0
        self._closed = False

    # -- shard rotation -------------------------------------------------------------------------
    def shard_name(self, index: int) -> str:
        return f"{self.prefix}-{index:06d}.tar"

    def _open_shard(self) -> None:
        name = self.shard_name(self._index)
        self._tmp_path = self.out_dir / (name + ".tmp")
        self._tar = tarfile.open(self._tmp_path, "w", format=tarfile.USTAR_FORMAT)
        self._count = 0

    def _finish_shard(self) -> None:
        if self._tar is None:
            return
        self._tar.close()
        name = self.shard_name(self._index)
        os.replace(self._tmp_path, self.out_dir / name)
        self.stats.shards[name] = self._count
        self._tar, self._tmp_path = None, None
        self._index += 1

    def _add(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mtime, info.mode, info.uname, info.gname = 0, 0o644, "clsp", "clsp"
        self._tar.addfile(info, io.BytesIO(data))

    # -- public API -----------------------------------------------------------------------------
    def write(self, key: str, audio: np.ndarray, sample_rate: int, meta: dict[str, Any]) -> str:
        """Encode and store one sample; returns the (sanitised, unique) key used in the tar."""
        if self._closed:
            raise ValueError("ShardWriter is closed")
        audio = audio_io.to_mono(audio)
        if audio.size == 0:
            raise ValueError(f"sample {key!r}: empty audio")
        if not np.isfinite(audio).all():
            raise ValueError(f"sample {key!r}: audio contains NaN or Inf")
        audio = audio_io.resample(audio, sample_rate, self.sample_rate)
        rate = self.sample_rate or sample_rate
        meta = canonical_meta(meta)  # raises CaptionError (a ValueError) without captions
        meta.setdefault("id", str(key))
        meta["duration"] = round(audio.shape[0] / rate, 4)
        encoded = audio_io.encode(audio, rate, self.codec)
        return self.write_encoded(key, encoded, meta, seconds=audio.shape[0] / rate)

    def write_encoded(self, key: str, audio_bytes: bytes, meta: dict[str, Any], seconds: float = 0.0) -> str:
        """Store already-encoded audio bytes (in this writer's codec) + json as they are."""
        if self._closed:
            raise ValueError("ShardWriter is closed")
        key = self._keys(key)
        if self._tar is None:
            self._open_shard()
        payload = json.dumps(meta, ensure_ascii=False, sort_keys=True).encode()
        self._add(f"{key}.{self.codec}", audio_bytes)
        self._add(f"{key}.json", payload)
        self._count += 1
        self.stats.samples += 1
        self.stats.seconds += seconds
        self.stats.bytes += len(audio_bytes) + len(payload)
        self.stats.keys[key] = self.shard_name(self._index)
        if self._count >= self.samples_per_shard:
            self._finish_shard()
        return key

    def close(self) -> WriterStats:
        """Finish the open shard, write/merge sizes.json; idempotent."""
        if not self._closed:
            self._finish_shard()
            self._closed = True
            if self.write_sizes and self.stats.shards:
                update_sizes(self.out_dir, self.stats.shards)
        return self.stats

    def abort(self) -> None:
        """Drop the shard being written (its .tmp file); finished shards stay."""
        if self._tar is not None:
            self._tar.close()
            self._tmp_path.unlink(missing_ok=True)
            self._tar, self._tmp_path = None, None
        self._closed = True

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            # Keep finished shards and record them; the partial one is dropped, never renamed.
            self.abort()
            if self.write_sizes and self.stats.shards:
                update_sizes(self.out_dir, self.stats.shards)
