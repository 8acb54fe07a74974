"""The table cache: a table written once to shards, reused by the next run, rebuilt when it changes.

`materialize(table, cache_root, ...)` is how a table (anything clsp.data.table reads: CSV/TSV/JSONL,
Parquet, an audiofolder) goes into training or evaluation, so there is one reader path: shards. The
entry is `<cache_root>/<table name>-<key>`, the key a hash of the table's bytes (every file it reads),
the folder its relative audio paths start from, and the writer settings (columns, split, codec, rate,
samples per shard): a changed table or setting gets a new entry. An entry holds one shard folder
per split (`all/` without a split) and `cache.json`. It is built under a hidden temporary name and
renamed when complete, under a lock file, so a killed build never leaves an entry that looks
complete, and processes asking at once (DDP ranks, several jobs) build it once and share it. Audio
files changed in place under an unchanged table are not noticed: pass `rebuild=True`.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clsp.atomic import write_json_atomic
from clsp.data.config import DataConfig
from clsp.data.shard_run import SKIPPED_FILE, write_jobs
from clsp.data.sources import table_jobs
from clsp.data.splits import parse_fractions
from clsp.data.table import is_table, table_files, table_root

__all__ = ["CachedTable", "default_cache_root", "materialize", "resolve_tables", "table_hash"]

CACHE_ENV = "CLSP_TABLE_CACHE"
CACHE_FILE = "cache.json"
WHOLE = "all"  # the shard folder of a table without a split
EXAMPLES = 5  # skipped rows named in the summary
COLUMN_OPTIONS = ("audio_column", "short_columns", "long_columns", "attribute_columns", "id_column",
                  "transcript_column", "audio_root")  # sources.table_jobs' options  # fmt: skip


def default_cache_root() -> Path:
    """$CLSP_TABLE_CACHE, else ~/.cache/clsp/tables."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "clsp" / "tables").expanduser()


@dataclass
class CachedTable:
    """The shard folder of one split of a cached table, and what went into it."""

    folder: Path  # shards of the asked split: give it to the reader
    entry: Path  # the cache entry (every split)
    written: int  # clips in `folder`
    skipped: dict[str, int]  # rows of this split skipped, by reason
    examples: list[str]  # the first few skipped rows, "audio (reason)"
    reused: bool  # False when this call built the entry

    def summary(self) -> str:
        """One line: clips written, rows skipped by reason with the first few named."""
        line = f"{self.folder}: {self.written} clips"
        if self.skipped:
            reasons = ", ".join(f"{r} {n}" for r, n in sorted(self.skipped.items()))
            line += f"; skipped {sum(self.skipped.values())} rows ({reasons}), e.g. {'; '.join(self.examples)}"
        return line + (" (cached)" if self.reused else "")


def table_hash(table: str | Path) -> str:
    """A hash of every file the table reads (name and bytes)."""
    h = hashlib.blake2b(digest_size=16)
    for path in table_files(table):
        h.update(path.name.encode() + b"\0")
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` (created if needed) for the block: one builder per entry."""
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _jsonable(value: Any) -> Any:
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else None if value is None else str(value)


def materialize(
    table: str | Path,
    cache_root: str | Path,
    *,
    split: str | None = None,
    fractions: str | Mapping[str, float] | None = None,
    split_column: str | None = None,
    split_seed: int = 0,
    sample_rate: int | None = None,
    codec: str = "flac",
    samples_per_shard: int = 1000,
    workers: int = 1,
    progress: bool = True,
    rebuild: bool = False,
    **columns: Any,
) -> CachedTable:
    """The shard folder of `table` (of its `split` when `fractions` or `split_column` splits it), built
    on first use. `columns` are `sources.table_jobs` options (audio_column, short_columns, long_columns,
    attribute_columns, id_column, transcript_column, audio_root). A bad table is a ValueError or
    FileNotFoundError with a one-line message; bad rows are skipped, counted and named in the result."""
    table = Path(table)
    unknown = sorted(set(columns) - set(COLUMN_OPTIONS))
    if unknown:
        raise TypeError(f"materialize() got unknown table options {unknown}; choose from {list(COLUMN_OPTIONS)}")
    fractions = parse_fractions(fractions) if fractions else None
    if (split is None) != (fractions is None and split_column is None):
        raise ValueError(f"table {table}: name the split to read and how the table splits (fractions or "
                         f"split_column), or neither; got split={split!r}")
    settings = {
        "columns": {k: _jsonable(v) for k, v in sorted(columns.items())},
        "root": str(Path(columns.get("audio_root") or table_root(table)).resolve()),
        "fractions": fractions, "split_column": split_column, "split_seed": split_seed,
        "sample_rate": sample_rate, "codec": codec, "samples_per_shard": samples_per_shard,
    }  # fmt: skip
    content = table_hash(table)
    key = hashlib.blake2b((content + json.dumps(settings, sort_keys=True)).encode(), digest_size=8).hexdigest()
    cache_root = Path(cache_root)
    cache_root.mkdir(parents=True, exist_ok=True)
    name = f"{table_files(table)[0].stem.split('.')[0] if not table.is_dir() else table.name}-{key}"
    entry = cache_root / name
    reused = True
    with _locked(cache_root / f".{name}.lock"):
        if rebuild or not (entry / CACHE_FILE).is_file():
            def write(tmp: Path) -> dict:
                return write_jobs(*table_jobs(table, split_column=split_column, **columns),
                                  tmp if split is not None else tmp / WHOLE, samples_per_shard=samples_per_shard,
                                  fractions=fractions, by_column=split_column is not None, seed=split_seed,
                                  settings={"codec": codec, "sample_rate": sample_rate}, workers=workers,
                                  progress=progress)  # fmt: skip

            _build(entry, write, {"table": str(table.resolve()), "table_hash": content, "settings": settings})
            reused = False
    return _result(entry, split, reused, progress)


def _build(entry: Path, write: Any, record: dict[str, Any]) -> None:
    """Write an entry under a hidden temporary name (`write(tmp)` returns the split reports) and rename it
    into place when complete; the caller holds the entry's lock."""
    for stale in entry.parent.glob(f".{entry.name}.tmp-*"):  # a killed build's leftovers: nobody else holds the lock
        shutil.rmtree(stale, ignore_errors=True)
    tmp = entry.parent / f".{entry.name}.tmp-{os.getpid()}"
    try:
        reports = write(tmp)
        write_json_atomic(tmp / CACHE_FILE, {**record, "splits": _summaries(tmp, reports)})
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if entry.exists():  # rebuild: the old entry goes only once the new one is complete
        shutil.rmtree(entry)
    os.replace(tmp, entry)


def _summaries(tmp: Path, reports: Mapping[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per split folder: clips written, rows skipped by reason, the first few skipped rows named."""
    out = {}
    for name, report in reports.items():
        folder = tmp / (name or WHOLE)
        listed = [json.loads(line) for line in (folder / SKIPPED_FILE).read_text().splitlines()[:EXAMPLES]]
        examples = [f"{p.get('detail') or p['id']} ({p['reason']})" for p in listed]
        out[name or WHOLE] = {"written": report["written"], "skipped": report["skipped"], "examples": examples}
    return out


def _result(entry: Path, split: str | None, reused: bool, progress: bool) -> CachedTable:
    splits = json.loads((entry / CACHE_FILE).read_text())["splits"]
    name = split or WHOLE
    if name not in splits:
        raise ValueError(f"{entry}: the table has no split {name!r} (its splits: {', '.join(sorted(splits))})")
    info = splits[name]
    result = CachedTable(entry / name, entry, info["written"], info["skipped"], info["examples"], reused)
    if progress:
        print(f"table cache: {result.summary()}", file=sys.stderr, flush=True)
    return result


def resolve_tables(data: DataConfig, *, progress: bool = True) -> DataConfig:
    """`data` with every table it names (train / val / test) replaced by the shard folder of its cached
    copy; with data.table.split, a table in train gives its val and test parts where those are null."""
    options = data.table
    columns = {k: getattr(options, k) for k in ("audio_column", "short_columns", "long_columns", "attribute_columns",
                                                  "audio_root") if getattr(options, k)}
    splitting = {"fractions": options.split, "split_column": options.split_column, "split_seed": options.split_seed}
    cache = Path(options.cache).expanduser() if options.cache else default_cache_root()
    resolved: dict[str, Any] = {}
    for name in ("train", "val", "test"):
        spec = getattr(data, name)
        implied = spec is None and options.splits and is_table(data.train)
        if implied:
            spec = data.train
        if spec is None or not is_table(spec):
            resolved[name] = spec
            continue
        try:
            got = materialize(spec, cache, split=name if options.splits else None,
                              samples_per_shard=options.samples_per_shard, progress=progress,
                              **(splitting if options.splits else {}), **columns)
        except ValueError as exc:
            if implied and "has no split" in str(exc):  # e.g. no test fraction: no test part
                resolved[name] = None
                continue
            raise ValueError(f"data.{name}={spec}: {' '.join(str(exc).split())}") from None
        resolved[name] = str(got.folder)
    return dataclasses.replace(data, **resolved)
