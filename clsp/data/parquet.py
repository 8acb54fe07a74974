"""Parquet tables (pyarrow): rows without their audio bytes, and the bytes of a few rows when they are written.

A Hugging Face `datasets` Parquet file stores an `Audio` column as a struct {bytes, path} (bytes
null when only the path is kept); a plain binary column holds audio bytes too. Listing a table reads
every column except those bytes (a dataset may hold many GB of audio) and yields each audio cell as
an `EmbeddedAudio` reference: file, row, and the cell's own path. `read_embedded` reads the bytes of
a batch of references, one row group at a time, in the worker process that decodes them.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["EmbeddedAudio", "iter_parquet", "parquet_columns", "read_embedded"]


@dataclass(frozen=True)
class EmbeddedAudio:
    """An audio cell of a Parquet table: its bytes stay in `file` (row `row`) until `read_embedded`."""

    file: str
    row: int  # row index within `file`
    column: str
    path: str = ""  # the struct's path ('' when none): the audio to read when the cell holds no bytes


def _open(file: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(file)
    except (pa.ArrowException, OSError) as exc:
        raise ValueError(f"{file}: not a readable Parquet file ({exc})") from exc


def _is_binary(dtype: pa.DataType) -> bool:
    return pa.types.is_binary(dtype) or pa.types.is_large_binary(dtype)


def _audio_kind(dtype: pa.DataType) -> str | None:
    """'struct' for a {bytes, ...} struct (HF Audio), 'binary' for a bytes column, else None."""
    if pa.types.is_struct(dtype):
        i = dtype.get_field_index("bytes")
        return "struct" if i >= 0 and _is_binary(dtype.field(i).type) else None
    return "binary" if _is_binary(dtype) else None


def _has_path(dtype: pa.DataType) -> bool:
    return pa.types.is_struct(dtype) and dtype.get_field_index("path") >= 0


def parquet_columns(files: Sequence[Path]) -> list[str]:
    """The columns of the first file (a Parquet set shares one schema)."""
    return list(_open(files[0]).schema_arrow.names)


def iter_parquet(files: Sequence[Path]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(row number from 1 across the files, row dict) with audio cells as `EmbeddedAudio`."""
    number = 0
    for file in files:
        pf = _open(file)
        schema = pf.schema_arrow
        audio = {f.name: f.type for f in schema if _audio_kind(f.type)}
        columns = [f"{n}.path" if n in audio and _has_path(audio[n]) else n for n in schema.names
                   if n not in audio or _has_path(audio[n])]  # fmt: skip
        rows: Iterator[dict[str, Any]]
        if columns:
            rows = (r for batch in pf.iter_batches(batch_size=1024, columns=columns) for r in batch.to_pylist())
        else:  # nothing but audio bytes: rows by count
            rows = ({} for _ in range(pf.metadata.num_rows))
        for index, row in enumerate(rows):
            for name in audio:
                cell = row.get(name) or {}
                row[name] = EmbeddedAudio(str(file), index, name, str(cell.get("path") or ""))
            number += 1
            yield number, row


def read_embedded(cells: Sequence[EmbeddedAudio]) -> list[bytes | None]:
    """The audio bytes of each cell (None where the cell holds none), reading each row group once."""
    out: list[bytes | None] = [None] * len(cells)
    wanted: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, cell in enumerate(cells):
        wanted[(cell.file, cell.column)].append(i)
    for (file, column), indices in wanted.items():
        pf = _open(Path(file))
        kind = _audio_kind(pf.schema_arrow.field(column).type)
        starts = [0]
        for g in range(pf.num_row_groups):
            starts.append(starts[-1] + pf.metadata.row_group(g).num_rows)
        by_group: dict[int, list[int]] = defaultdict(list)
        for i in indices:
            by_group[bisect.bisect_right(starts, cells[i].row) - 1].append(i)
        for group, members in by_group.items():
            field = f"{column}.bytes" if kind == "struct" else column
            values = pf.read_row_group(group, columns=[field]).column(column).combine_chunks()
            if kind == "struct":
                values = values.field("bytes")
            for i in members:
                out[i] = values[cells[i].row - starts[group]].as_py()
    return out
