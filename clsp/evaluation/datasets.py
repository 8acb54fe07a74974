"""Evaluation data: CSV/JSONL tables and WebDataset shards, as lists/streams of `Clip`s.

Tables have one row per clip or per caption (rows naming the same audio file are merged
into one clip). Relative audio paths are resolved against the table's folder, or against
`audio_root` when given. Caption cells may hold a string or a list (a JSON list in JSONL,
or a JSON-list string in CSV). Every audio file is checked (exists, readable header)
before anything is encoded, and errors name the table line.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from clsp.audio_io import AudioDecodeError, audio_info, decode
from clsp.data.schema import cell_texts
from clsp.data.table import AUDIO_COLUMNS, read_table, table_columns

__all__ = [
    "Clip",
    "read_table",
    "load_retrieval_table",
    "load_label_table",
    "load_similarity_table",
    "load_audio",
    "as_clips",
    "is_shard_spec",
    "iter_shard_clips",
    "data_fingerprint",
]

CAPTION_COLUMNS = ("caption", "captions", "text", "short_captions", "short_caption", "long_captions", "long_caption")
LABEL_COLUMNS = ("label", "category", "class", "class_name", "emotion", "target_name")
DESCRIPTION_COLUMNS = ("description", "style_description", "style", "caption", "text", "prompt")
SCORE_COLUMNS = ("score", "human_score", "rating", "mos", "similarity")
KEY_COLUMNS = ("key", "id", "audio_id", "clip_id")
CAPTION_KINDS = ("short", "long", "all")


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


def _resolve(value: object, root: Path, table: Path, line: int) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{table}: line {line}: empty audio path")
    path = Path(os.path.expanduser(value.strip()))
    return path if path.is_absolute() else root / path


def _probe(clip: Clip, where: str) -> None:
    # Header only: proves the file exists and decodes before any encoding starts.
    if not clip.path.is_file():
        raise FileNotFoundError(f"{where}: audio file not found: {clip.path}")
    try:
        frames, rate, _ = audio_info(clip.path)
    except AudioDecodeError as exc:
        raise ValueError(f"{where}: cannot read audio {clip.path}: {exc}") from exc
    if frames == 0:
        raise ValueError(f"{where}: audio file is empty: {clip.path}")
    clip.sample_rate, clip.frames = rate, frames


def _kind(column: str) -> str:
    if column.startswith("short"):
        return "short"
    if column.startswith("long"):
        return "long"
    return column


def _base(rows: list[tuple[int, dict]], table: Path, audio_column: str | None, audio_root: str | Path | None):
    columns = table_columns(rows)
    audio_col = _pick(columns, audio_column, AUDIO_COLUMNS, "audio", table)
    key_col = next((c for c in KEY_COLUMNS if c in columns), None)
    root = Path(audio_root) if audio_root is not None else table.parent
    return columns, audio_col, key_col, root


def load_retrieval_table(
    table: str | Path,
    *,
    audio_column: str | None = None,
    caption_columns: Sequence[str] | None = None,
    captions: str = "all",
    audio_root: str | Path | None = None,
) -> list[Clip]:
    """Clips with their captions. `caption_columns` default: caption/captions/text, caption_1..N,
    short_captions/long_captions; `captions` keeps "short", "long" or "all" caption kinds."""
    if captions not in CAPTION_KINDS:
        raise ValueError(f"captions must be one of {CAPTION_KINDS}; got {captions!r}")
    table = Path(table)
    rows = read_table(table)
    columns, audio_col, key_col, root = _base(rows, table, audio_column, audio_root)
    if caption_columns:
        for c in caption_columns:
            _pick(columns, c, (), "caption", table)
        cap_cols = list(caption_columns)
    else:
        cap_cols = [c for c in columns if c in CAPTION_COLUMNS or re.fullmatch(r"caption_?\d+", c)]
        if not cap_cols:
            raise ValueError(
                f"{table}: no caption column (looked for {list(CAPTION_COLUMNS)} and caption_1..N); "
                f"columns are {columns}. Name it with --caption-column."
            )
    if captions != "all":
        cap_cols = [c for c in cap_cols if _kind(c) == captions]
        if not cap_cols:
            raise ValueError(f"{table}: no {captions!r} caption column (short_captions / long_captions)")
    clips: dict[Path, Clip] = {}
    for line, row in rows:
        path = _resolve(row.get(audio_col), root, table, line)
        clip = clips.get(path)
        if clip is None:
            key = str(row[key_col]) if key_col and row.get(key_col) not in (None, "") else str(row[audio_col])
            clip = clips[path] = Clip(key=key, path=path, line=line)
        found = 0
        for col in cap_cols:
            texts = cell_texts(row.get(col))
            clip.captions += texts
            clip.kinds += [_kind(col)] * len(texts)
            found += len(texts)
        if not found:
            raise ValueError(f"{table}: line {line}: no caption in column(s) {cap_cols}")
    for clip in clips.values():
        _probe(clip, f"{table}: line {clip.line}")
    return list(clips.values())


def load_label_table(
    table: str | Path,
    *,
    audio_column: str | None = None,
    label_column: str | None = None,
    audio_root: str | Path | None = None,
) -> list[Clip]:
    """One clip per row with its class label (for zero-shot classification)."""
    table = Path(table)
    rows = read_table(table)
    columns, audio_col, key_col, root = _base(rows, table, audio_column, audio_root)
    label_col = _pick(columns, label_column, LABEL_COLUMNS, "label", table)
    clips = []
    for line, row in rows:
        label = row.get(label_col)
        if label is None or str(label).strip() == "":
            raise ValueError(f"{table}: line {line}: empty label in column {label_col!r}")
        path = _resolve(row.get(audio_col), root, table, line)
        key = str(row[key_col]) if key_col and row.get(key_col) not in (None, "") else str(row[audio_col])
        clips.append(Clip(key=key, path=path, line=line, label=str(label).strip()))
    for clip in clips:
        _probe(clip, f"{table}: line {clip.line}")
    return clips


def load_similarity_table(
    table: str | Path,
    *,
    audio_column: str | None = None,
    text_column: str | None = None,
    score_column: str | None = None,
    audio_root: str | Path | None = None,
) -> list[Clip]:
    """One (clip, style description, human score) triple per row."""
    table = Path(table)
    rows = read_table(table)
    columns, audio_col, key_col, root = _base(rows, table, audio_column, audio_root)
    text_col = _pick(columns, text_column, DESCRIPTION_COLUMNS, "text", table)
    score_col = _pick(columns, score_column, SCORE_COLUMNS, "score", table)
    clips = []
    for line, row in rows:
        text = str(row.get(text_col) or "").strip()
        if not text:
            raise ValueError(f"{table}: line {line}: empty description in column {text_col!r}")
        try:
            score = float(row.get(score_col))
        except (TypeError, ValueError):
            raise ValueError(f"{table}: line {line}: score {row.get(score_col)!r} in column {score_col!r} is not a number") from None
        if not np.isfinite(score):
            raise ValueError(f"{table}: line {line}: score in column {score_col!r} is not finite")
        path = _resolve(row.get(audio_col), root, table, line)
        key = str(row[key_col]) if key_col and row.get(key_col) not in (None, "") else str(row[audio_col])
        clips.append(Clip(key=key, path=path, line=line, captions=[text], kinds=[text_col], score=score))
    for clip in clips:
        _probe(clip, f"{table}: line {clip.line}")
    return clips


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
            _probe(clip, f"clip {i}")
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


# -- shards -----------------------------------------------------------------------------------


def is_shard_spec(spec: str) -> bool:
    """True for '.tar' urls, brace patterns of them, or a folder of .tar shards."""
    if spec.endswith(".tar") or (".tar" in spec and "{" in spec):
        return True
    path = Path(spec)
    return path.is_dir() and any(path.glob("*.tar"))


def iter_shard_clips(urls: list[str], captions: str = "all", skipped: dict[str, int] | None = None) -> Iterator[Clip]:
    """Clips from shards via `clsp.data.reader.read_samples`, keeping `captions` kinds.

    A sample with no caption of the chosen kind is skipped and counted in `skipped`, as are
    the reader's own skips (undecodable audio, ...) once the stream is exhausted.
    """
    from clsp.data.reader import SkipCounter, read_samples

    if captions not in CAPTION_KINDS:
        raise ValueError(f"captions must be one of {CAPTION_KINDS}; got {captions!r}")
    skipped = skipped if skipped is not None else {}
    counter = SkipCounter()
    for sample in read_samples(urls, counter=counter):
        texts, kinds = [], []
        for kind, items in (sample.captions or {}).items():
            if captions in ("all", kind):
                texts += list(items)
                kinds += [kind] * len(items)
        if not texts:
            reason = f"no {captions} caption" if captions != "all" else "no caption"
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        audio = np.asarray(sample.audio, dtype=np.float32)
        yield Clip(
            key=str(sample.key),
            audio=audio,
            sample_rate=int(sample.sample_rate),
            frames=int(audio.shape[-1]),
            captions=texts,
            kinds=kinds,
        )
    for reason, n in counter.totals.items():
        skipped[reason] = skipped.get(reason, 0) + n


def data_fingerprint(spec: str | Path, clips: Sequence[Clip] | None = None, **options: object) -> str:
    """A hash of the data (table bytes or shard urls, audio file sizes and mtimes) and options."""
    h = hashlib.sha256()
    h.update(json.dumps(options, sort_keys=True, default=str).encode())
    spec = str(spec)
    if is_shard_spec(spec):
        from clsp.data.reader import expand_urls

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
