"""The one table reader: CSV/TSV/JSONL/JSON-list files (optionally .gz) and Parquet, as (line, row) pairs.

Used by `clsp.shards table`, the table cache, the FusionAudio/FCaps source readers and every
`clsp.eval` table (including the official sets' metadata), so one file reads the same everywhere.
A table is a file, or a folder: a Hugging Face `audiofolder` (audio files + metadata.csv /
metadata.jsonl / metadata.parquet, paths in `file_name` relative to the folder) or a folder of
Parquet files (e.g. a `datasets` export), read in name order; a glob of Parquet files works too.
Audio stored inside Parquet comes as `parquet.EmbeddedAudio` cells. Rows stream from `iter_table`
(a lhotse manifest may hold millions); `read_table` lists them and refuses an empty table.
"""

from __future__ import annotations

import csv
import glob
import gzip
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from clsp.data.parquet import EmbeddedAudio, iter_parquet, parquet_columns

__all__ = ["AUDIO_COLUMNS", "audio_column", "header_columns", "is_table", "iter_table", "read_table",
           "table_columns", "table_files", "table_root"]

# Where a table's audio path may be, in the order they are looked for (first present wins).
AUDIO_COLUMNS = ("audio", "audio_path", "path", "filepath", "file", "filename", "file_name", "wav", "fname")
FORMATS = (".csv", ".tsv", ".jsonl", ".json", ".parquet")
METADATA_FILES = ("metadata.csv", "metadata.jsonl", "metadata.parquet")  # an audiofolder's table


def _format(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    fmt = suffixes[-1] if suffixes else ""
    if fmt not in FORMATS:
        raise ValueError(f"{path}: unsupported table format {fmt!r}; "
                         "use .csv, .tsv, .jsonl or .json (optionally .gz), .parquet, or an audiofolder")
    return fmt


def table_files(path: str | Path) -> list[Path]:
    """The file(s) a table spec reads: a file; an audiofolder's metadata file; a folder's or glob's Parquet files."""
    path = Path(path)
    if path.is_dir():
        meta = [path / m for m in METADATA_FILES if (path / m).is_file()]
        files = meta[:1] or sorted(path.rglob("*.parquet"))
        if not files:
            splits = sorted(d.name for d in path.iterdir() if any((d / m).is_file() for m in METADATA_FILES))
            hint = f"; its split folders {splits} have one: give one of them" if splits else ""
            raise FileNotFoundError(f"table folder {path} has none of {list(METADATA_FILES)} and no .parquet files{hint}")
        return files
    if not path.exists() and any(c in str(path) for c in "*?["):
        files = sorted(Path(p) for p in glob.glob(str(path), recursive=True))
        if not files or any(f.suffix.lower() != ".parquet" for f in files):
            raise FileNotFoundError(f"table pattern {path} matches no Parquet files" if not files else
                                    f"table pattern {path} matches non-Parquet files, e.g. {files[0]}")
        return files
    if not path.is_file():
        raise FileNotFoundError(f"table not found: {path}")
    _format(path)
    return [path]


def is_table(spec: Any) -> bool:
    """Whether a data spec names a table rather than shards: a table file, a Parquet glob, or a folder
    with an audiofolder metadata file or Parquet files and no .tar shards."""
    if not isinstance(spec, (str, os.PathLike)) or "::" in str(spec):
        return False
    try:
        table_files(spec)
    except (FileNotFoundError, ValueError):
        return False
    return not (Path(spec).is_dir() and any(Path(spec).glob("*.tar")))


def table_root(path: str | Path) -> Path:
    """Where a table's relative audio paths start: the folder a folder spec names, else the table file's folder."""
    path = Path(path)
    return path if path.is_dir() else path.parent


def iter_table(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, row dict) for every row; a JSON file holding a list, and Parquet, count rows from 1."""
    files = table_files(path)
    path = files[0]
    fmt = _format(path)
    if fmt == ".parquet":
        yield from iter_parquet(files)
        return
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", newline="") as f:
        if fmt in (".csv", ".tsv"):
            reader = csv.DictReader(f, delimiter="\t" if fmt == ".tsv" else ",")
            if not reader.fieldnames:
                raise ValueError(f"{path}: empty table (no header)")
            for row in reader:
                yield reader.line_num, {k.strip(): v for k, v in row.items() if k is not None}
            return
        if fmt == ".json":  # a JSON list is parsed whole anyway; a .json of JSON lines is read as such
            text = f.read()
            lines = enumerate(json.loads(text), 1) if text.lstrip().startswith("[") else _json_lines(path, text.splitlines())
        else:
            lines = _json_lines(path, f)
        for line, row in lines:
            if not isinstance(row, dict):
                raise ValueError(f"{path}: line {line}: expected a JSON object, got {type(row).__name__}")
            yield line, row


def _json_lines(path: Path, lines) -> Iterator[tuple[int, Any]]:
    for n, line in enumerate(lines, 1):
        if line.strip():
            try:
                yield n, json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: line {n}: not valid JSON ({exc.msg})") from exc


def read_table(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """Every row of the table as (line number, row dict); an empty table is an error naming its columns."""
    rows = list(iter_table(path))
    if not rows:
        columns = header_columns(path)
        raise ValueError(f"{path}: the table has no rows (columns: {', '.join(columns) if columns else 'none'})")
    return rows


def header_columns(path: str | Path) -> list[str]:
    """The columns a table declares without rows: a CSV/TSV header, a Parquet schema ([] for JSON)."""
    files = table_files(path)
    fmt = _format(files[0])
    if fmt == ".parquet":
        return parquet_columns(files)
    if fmt not in (".csv", ".tsv"):
        return []
    opener = gzip.open if files[0].name.lower().endswith(".gz") else open
    with opener(files[0], "rt", encoding="utf-8", newline="") as f:
        header = next(csv.reader(f, delimiter="\t" if fmt == ".tsv" else ","), [])
    return [c.strip() for c in header]


def table_columns(rows: Sequence[tuple[int, dict[str, Any]]]) -> list[str]:
    """Every column any row has, in first-seen order."""
    seen: dict[str, None] = {}
    for _, row in rows:
        seen.update(dict.fromkeys(row))
    return list(seen)


def audio_column(columns: Sequence[str], row: dict[str, Any] | None = None) -> str | None:
    """A column of audio stored in the table (in `row`, e.g. a Parquet Audio struct), else the first of
    AUDIO_COLUMNS present (None: none)."""
    embedded = [c for c, v in (row or {}).items() if isinstance(v, EmbeddedAudio)]
    return embedded[0] if embedded else next((c for c in AUDIO_COLUMNS if c in columns), None)
