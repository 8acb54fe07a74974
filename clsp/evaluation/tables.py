"""Evaluation tables (CSV/TSV/JSONL/JSON, read by `clsp.data.table`) as lists of `Clip`s.

Tables have one row per clip or per caption (rows naming the same audio file are merged into one
clip). Relative audio paths are resolved against the table's folder, or against `audio_root` when
given. Caption cells may hold a string or a list (a JSON list in JSONL, or a JSON-list string in CSV).
A table without the needed columns is an error naming the columns found. A bad row (no caption or
label, a missing or unreadable audio file) is skipped, counted by reason in `skips` and named in its
first examples, as the shard writers and the training reader do: the report says how many clips ran.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from clsp.data.captions import EVAL_CAPTIONS
from clsp.data.schema import cell_texts
from clsp.data.table import AUDIO_COLUMNS, read_table, table_columns
from clsp.data.urls import expand_urls, is_shard_spec
from clsp.evaluation.clips import Clip, Skips, probe_clip

__all__ = ["load_retrieval_table", "load_label_table", "load_similarity_table", "data_fingerprint"]

CAPTION_COLUMNS = ("caption", "captions", "text", "short_captions", "short_caption", "long_captions", "long_caption")
LABEL_COLUMNS = ("label", "category", "class", "class_name", "emotion", "target_name")
DESCRIPTION_COLUMNS = ("description", "style_description", "style", "caption", "text", "prompt")
SCORE_COLUMNS = ("score", "human_score", "rating", "mos", "similarity")
KEY_COLUMNS = ("key", "id", "audio_id", "clip_id")


def _pick(columns: list[str], requested: str | None, candidates: Sequence[str], what: str, table: Path) -> str:
    if requested is not None:
        if requested not in columns:
            raise ValueError(f"{table}: no {what} column {requested!r}; columns are {columns}")
        return requested
    for name in candidates:
        if name in columns:
            return name
    raise ValueError(
        f"{table}: no {what} column (looked for {list(candidates)}); columns are {columns}. "
        f"Name it with --{what.replace(' ', '-')}-column."
    )


def _kind(column: str) -> str:
    if column.startswith("short"):
        return "short"
    if column.startswith("long"):
        return "long"
    return column


def _rows(table: Path, audio_column: str | None, audio_root: str | Path | None):
    """(rows, columns, audio column, key column, audio root) of a table."""
    rows = read_table(table)
    columns = table_columns(rows)
    audio_col = _pick(columns, audio_column, AUDIO_COLUMNS, "audio", table)
    key_col = next((c for c in KEY_COLUMNS if c in columns), None)
    root = Path(audio_root) if audio_root is not None else table.parent
    return rows, columns, audio_col, key_col, root


def _clip(row: dict, line: int, audio_col: str, key_col: str | None, root: Path) -> Clip | None:
    value = row.get(audio_col)
    if not isinstance(value, str) or not value.strip():
        return None
    path = Path(os.path.expanduser(value.strip()))
    key = str(row[key_col]) if key_col and row.get(key_col) not in (None, "") else value.strip()
    return Clip(key=key, path=path if path.is_absolute() else root / path, line=line)


def _keep_readable(clips: list[Clip], table: Path, skips: Skips) -> list[Clip]:
    """The clips whose audio exists and has a readable, non-empty header (the rest skipped and counted)."""
    kept = []
    for clip in clips:
        reason = probe_clip(clip)
        if reason is None:
            kept.append(clip)
        else:
            skips.add(reason, f"{table} line {clip.line}: {clip.path}")
    return kept


def _build(table: Path, read: tuple, skips: Skips | None, fill: Callable[[Clip, dict, int], str | None]) -> list[Clip]:
    """Clips of a table (`read`: what `_rows` gave), one per audio file; `fill(clip, row, line)` adds a
    row's fields to its clip or returns why the row is unusable (then counted)."""
    skips = skips if skips is not None else Skips()
    rows, _, audio_col, key_col, root = read
    clips: dict[Path, Clip] = {}
    for line, row in rows:
        clip = _clip(row, line, audio_col, key_col, root)
        if clip is None:
            skips.add("no_audio", f"{table} line {line}: empty {audio_col!r}")
            continue
        clip = clips.setdefault(clip.path, clip)
        problem = fill(clip, row, line)
        if problem is not None:
            skips.add(problem, f"{table} line {line}: {clip.path}")
    usable = [c for c in clips.values() if c.captions or c.label is not None]
    return _keep_readable(usable, table, skips)


def _caption_columns(table: Path, columns: list[str], requested: Sequence[str] | None, captions: str) -> list[str]:
    if requested:
        for c in requested:
            _pick(columns, c, (), "caption", table)
        cols = list(requested)
    else:
        cols = [c for c in columns if c in CAPTION_COLUMNS or re.fullmatch(r"caption_?\d+", c)]
        if not cols:
            raise ValueError(f"{table}: no caption column (looked for {list(CAPTION_COLUMNS)} and caption_1..N); "
                             f"columns are {columns}. Name it with --caption-column.")
    if captions != "all":
        cols = [c for c in cols if _kind(c) == captions]
        if not cols:
            raise ValueError(f"{table}: no {captions!r} caption column (short_captions / long_captions)")
    return cols


def load_retrieval_table(
    table: str | Path,
    *,
    audio_column: str | None = None,
    caption_columns: Sequence[str] | None = None,
    captions: str = "all",
    audio_root: str | Path | None = None,
    skips: Skips | None = None,
) -> list[Clip]:
    """Clips with their captions. `caption_columns` default: caption/captions/text, caption_1..N,
    short_captions/long_captions; `captions` keeps "short", "long" or "all" caption kinds."""
    if captions not in EVAL_CAPTIONS:
        raise ValueError(f"captions must be one of {EVAL_CAPTIONS}; got {captions!r}")
    table = Path(table)
    read = _rows(table, audio_column, audio_root)
    cols = _caption_columns(table, read[1], caption_columns, captions)

    def fill(clip: Clip, row: dict, line: int) -> str | None:
        found = 0
        for col in cols:
            texts = cell_texts(row.get(col))
            clip.captions += texts
            clip.kinds += [_kind(col)] * len(texts)
            found += len(texts)
        return None if found else "empty_caption"

    return _build(table, read, skips, fill)


def load_label_table(
    table: str | Path,
    *,
    audio_column: str | None = None,
    label_column: str | None = None,
    audio_root: str | Path | None = None,
    skips: Skips | None = None,
) -> list[Clip]:
    """One clip per audio file with its class label (for zero-shot classification)."""
    table = Path(table)
    read = _rows(table, audio_column, audio_root)
    label_col = _pick(read[1], label_column, LABEL_COLUMNS, "label", table)

    def fill(clip: Clip, row: dict, line: int) -> str | None:
        label = row.get(label_col)
        if label is None or str(label).strip() == "":
            return "empty_label"
        clip.label = str(label).strip()
        return None

    return _build(table, read, skips, fill)


def load_similarity_table(
    table: str | Path,
    *,
    audio_column: str | None = None,
    text_column: str | None = None,
    score_column: str | None = None,
    audio_root: str | Path | None = None,
    skips: Skips | None = None,
) -> list[Clip]:
    """One (clip, style description, human score) triple per row (rows are not merged: each is a pair)."""
    table = Path(table)
    skips = skips if skips is not None else Skips()
    rows, columns, audio_col, key_col, root = _rows(table, audio_column, audio_root)
    text_col = _pick(columns, text_column, DESCRIPTION_COLUMNS, "text", table)
    score_col = _pick(columns, score_column, SCORE_COLUMNS, "score", table)
    clips = []
    for line, row in rows:
        clip = _clip(row, line, audio_col, key_col, root)
        text = str(row.get(text_col) or "").strip()
        score = _number(row.get(score_col))
        reason = "no_audio" if clip is None else "empty_caption" if not text else "bad_score" if score is None else None
        if reason is not None:
            skips.add(reason, f"{table} line {line}")
            continue
        clip.captions, clip.kinds, clip.score = [text], [text_col], score
        clips.append(clip)
    return _keep_readable(clips, table, skips)


def _number(value: object) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def data_fingerprint(spec: str | Path, clips: Sequence[Clip] | None = None, **options: object) -> str:
    """A hash of the data (table bytes or shard urls, audio file sizes and mtimes) and options."""
    h = hashlib.sha256()
    h.update(json.dumps(options, sort_keys=True, default=str).encode())
    spec = str(spec)
    if is_shard_spec(spec):
        for url in expand_urls(spec):
            h.update(url.encode())
            if Path(url).is_file():
                st = Path(url).stat()
                h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    else:
        h.update(Path(spec).read_bytes())
    for clip in clips or ():
        if clip.path is not None:
            st = clip.path.stat()
            h.update(f"{clip.path}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:24]
