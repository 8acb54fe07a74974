"""The one table reader: CSV/TSV/JSONL/JSON-list files (optionally .gz) as (line, row) pairs.

Used by `clsp.shards table`, the FusionAudio/FCaps source readers and every `clsp.eval` table
(including the official sets' metadata), so one file reads the same everywhere. Rows stream from
`iter_table` (a lhotse manifest may hold millions); `read_table` lists them and refuses an empty table.
"""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

__all__ = ["AUDIO_COLUMNS", "audio_column", "iter_table", "read_table", "table_columns"]

# Where a table's audio path may be, in the order they are looked for (first present wins).
AUDIO_COLUMNS = ("audio", "audio_path", "path", "filepath", "file", "filename", "file_name", "wav", "fname")
FORMATS = (".csv", ".tsv", ".jsonl", ".json")


def _format(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    fmt = suffixes[-1] if suffixes else ""
    if fmt not in FORMATS:
        raise ValueError(f"{path}: unsupported table format {fmt!r}; use .csv, .tsv, .jsonl or .json (optionally .gz)")
    return fmt


def iter_table(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, row dict) for every row; a JSON file holding a list counts its items from 1."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"table not found: {path}")
    fmt = _format(path)
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
    """Every row of the table as (line number, row dict); an empty table is an error."""
    rows = list(iter_table(path))
    if not rows:
        raise ValueError(f"{path}: the table has no rows")
    return rows


def table_columns(rows: Sequence[tuple[int, dict[str, Any]]]) -> list[str]:
    """Every column any row has, in first-seen order."""
    seen: dict[str, None] = {}
    for _, row in rows:
        seen.update(dict.fromkeys(row))
    return list(seen)


def audio_column(columns: Sequence[str]) -> str | None:
    """The first of AUDIO_COLUMNS present (None: none)."""
    return next((c for c in AUDIO_COLUMNS if c in columns), None)
