"""Source readers: turn a dataset's native layout into `Job`s (one clip each) for the shard writer.

Each reader returns `(jobs, problems)`: jobs carry the canonical sample json (schema.make_meta)
and where the audio is; problems are {"id", "reason", "detail", "group"} records for clips that
cannot be written (no audio file, no caption), reported by `python -m clsp.shards`, never fatal.
Audio is not opened here (workers decode it), only located; audio stored in a Parquet table stays
there as a reference until its worker reads it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clsp.data.parquet import EmbeddedAudio
from clsp.data.schema import CaptionError, cell_texts, make_meta
from clsp.data.splits import check_split_name
from clsp.data.table import AUDIO_COLUMNS, iter_table, read_table, table_columns, table_files, table_root
from clsp.data.table import audio_column as _audio_column

TABLE_SHORT_COLUMNS = ("caption", "captions", "text", "short_caption", "short_captions")
TABLE_LONG_COLUMNS = ("long_caption", "long_captions")
FUSIONAUDIO_CAPTION_TASK = "Captioning questions"
# What yt-dlp writes for AudioSet/VGGSound clips (m4a, webm, mp4, opus) besides what datasets re-encode to.
FUSIONAUDIO_EXTENSIONS = ("flac", "wav", "mp3", "ogg", "m4a", "webm", "mp4", "opus", "mkv", "mka", "aac")
FCAPS_ATTRIBUTES = (
    "gender", "accent", "pitch", "speaking_rate", "emotion", "age", "intrinsic_tags", "situational_tags",
    "noise", "reverberation", "speech_monotony",
)  # fmt: skip
FCAPS_AUDIO_FIELDS = ("audio_path", "path", "audio", "audio_filepath", "relative_audio_path", "wav", "file")


@dataclass
class Job:
    """One clip to write: its canonical json + where its audio is (a segment of a file, optionally)."""

    id: str
    meta: dict[str, Any]
    audio_path: str  # the file to read; for `embedded` audio, the cell's path (used when it holds no bytes)
    offset: float = 0.0
    duration: float | None = None
    key: str = ""  # the shard key, assigned by the CLI (unique, sanitised)
    embedded: EmbeddedAudio | None = None  # audio bytes stored in a Parquet table
    group: str = ""  # what a hashed split is drawn from (default: the audio file): one group, one split
    split: str | None = None  # the split a split column names

    def __post_init__(self) -> None:
        self.group = self.group or self.audio_path or self.id


def _problem(id: str, reason: str, detail: str = "", group: str = "") -> dict[str, str]:
    return {"id": str(id), "reason": reason, "detail": detail, "group": group or str(id)}


def _audio_file(audio: str | None, root: Path, ident: str, empty_msg: str, problems: list) -> Path | None:
    """The input's audio file (relative paths against `root`), or None with the problem recorded."""
    if not audio:
        problems.append(_problem(ident, "no_audio", empty_msg))
        return None
    path = Path(audio) if os.path.isabs(audio) else root / audio
    if not path.is_file():
        problems.append(_problem(ident, "no_audio", f"file not found: {path}"))
        return None
    return path


def table_jobs(
    path: str | Path,
    *,
    audio_column: str | None = None,
    short_columns: Sequence[str] = (),
    long_columns: Sequence[str] = (),
    attribute_columns: Sequence[str] = (),
    id_column: str | None = None,
    transcript_column: str | None = None,
    audio_root: str | Path | None = None,
    source: str | None = None,
    split_column: str | None = None,
) -> tuple[list[Job], list[dict[str, str]]]:
    """A table (see clsp.data.table: CSV/TSV/JSONL/JSON, Parquet, an audiofolder) with an audio column
    and caption columns.

    Defaults: the audio column is a Parquet audio column, else the first of table.AUDIO_COLUMNS present;
    with no caption columns given, "caption"/"text"/... (and Clotho's caption_1..caption_5) are short
    captions and "long_caption(s)" long ones. Relative paths resolve against `audio_root`, else the
    table's folder (an audiofolder's own folder). `split_column` puts each row's value in `Job.split`.
    """
    path = Path(path)
    numbered = read_table(path)
    columns = table_columns(numbered)
    rows = [row for _, row in numbered]
    audio_column = audio_column or _audio_column(columns, rows[0])
    if audio_column is None:
        raise ValueError(f"table {path}: no audio column among {columns} (looked for {list(AUDIO_COLUMNS)}); "
                         "pass --audio-column")
    if not short_columns and not long_columns:
        short_columns = [c for c in columns if c in TABLE_SHORT_COLUMNS or re.fullmatch(r"caption_?\d+", c)]
        long_columns = [c for c in columns if c in TABLE_LONG_COLUMNS]
        if not short_columns and not long_columns:
            raise ValueError(f"table {path}: no caption column among {columns}; pass --short/--long-columns")
    for col in [audio_column, *short_columns, *long_columns, *attribute_columns, *filter(None, [split_column])]:
        if col not in columns:
            raise ValueError(f"table {path}: column {col!r} not found; columns are {columns}")
    root = Path(audio_root) if audio_root is not None else table_root(path)
    source = source or (path.name if path.is_dir() else table_files(path)[0].name.split(".")[0])
    jobs, problems = [], []
    for n, row in enumerate(rows):
        split = str(row.get(split_column) or "").strip() if split_column else None
        if split:
            try:
                check_split_name(split)
            except ValueError as exc:
                raise ValueError(f"table {path}: row {n}: column {split_column!r}: {exc}") from exc
        job = _table_job(row, n, root, source, problems, split, audio_column=audio_column,
                         short_columns=short_columns, long_columns=long_columns,
                         attribute_columns=attribute_columns, id_column=id_column, transcript_column=transcript_column)
        if job is not None and split == "":
            problems.append(_problem(job.id, "no_split", f"row {n}: empty {split_column!r}", job.group))
        elif job is not None:
            jobs.append(job)
    return jobs, problems


def _table_job(row: dict[str, Any], n: int, root: Path, source: str, problems: list, split: str | None, *,
               audio_column: str, short_columns: Sequence[str], long_columns: Sequence[str],
               attribute_columns: Sequence[str], id_column: str | None, transcript_column: str | None) -> Job | None:
    """One row's job, or None with its problem recorded (no audio file, no caption)."""
    cell = row.get(audio_column)
    embedded = cell if isinstance(cell, EmbeddedAudio) else None
    audio = embedded.path if embedded else str(cell or "").strip()
    ident = str(row.get(id_column) if id_column else row.get("id") or Path(audio).stem or f"row{n}")
    group = audio or ident

    def skip(reason: str, detail: str) -> None:
        problems.append(_problem(ident, reason, detail, group) | ({"split": split} if split else {}))

    audio_path = str(root / audio) if audio and not os.path.isabs(audio) else audio
    if not embedded and not audio:
        return skip("no_audio", f"row {n}: empty {audio_column!r}")
    if not embedded and not os.path.isfile(audio_path):  # embedded: the worker reads the bytes (or this path)
        return skip("no_audio", f"file not found: {audio_path}")
    try:
        meta = make_meta(
            ident,
            source=source,
            short=[t for c in short_columns for t in cell_texts(row.get(c))],
            long=[t for c in long_columns for t in cell_texts(row.get(c))],
            attributes={c: row.get(c) for c in attribute_columns},
            transcript=row.get(transcript_column) if transcript_column else None,
        )
    except CaptionError as exc:
        return skip(exc.reason, f"row {n}: {audio}")
    return Job(ident, meta, audio_path, embedded=embedded, group=group, split=split)


# -- FusionAudio ----------------------------------------------------------------------------------
_SEGMENT = re.compile(r"^(.+?)_(-?\d+(?:\.\d+)?)_(-?\d+(?:\.\d+)?)$")


def _walk(root: Path) -> Iterator[os.DirEntry]:
    stack = [str(root)]
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=True):
                    stack.append(entry.path)
                elif entry.is_file(follow_symlinks=True):
                    yield entry


def audioset_index(audio_dir: str | Path, extensions: Sequence[str] = FUSIONAUDIO_EXTENSIONS) -> dict[str, str]:
    """AudioSet id -> file, from one scandir walk. Names `<id>.<ext>`, `<id>_<start>_<end>.<ext>`,
    and both with a leading "Y" (YouTube ids are 11 characters, so "Y"+11 is unambiguous)."""
    audio_dir = Path(audio_dir)
    if not audio_dir.is_dir():
        raise FileNotFoundError(f"audio folder not found: {audio_dir}")
    exts = {"." + e.lower() for e in extensions}
    index: dict[str, str] = {}
    for entry in _walk(audio_dir):
        stem, ext = os.path.splitext(entry.name)
        if ext.lower() not in exts:
            continue
        m = _SEGMENT.match(stem)
        base = m.group(1) if m else stem
        candidates = [stem, base]
        if len(base) == 12 and base.startswith("Y"):
            candidates.append(base[1:])
        for c in candidates:
            index.setdefault(c, entry.path)
    return index


def fusionaudio_jobs(json_path: str | Path, audio_dir: str | Path) -> tuple[list[Job], list[dict[str, str]]]:
    """FusionAudio records -> one job per clip: the "Captioning questions" output is the long
    caption, every other record a QA pair {"q": instruction + input, "a": output}."""
    json_path = Path(json_path)
    if not json_path.is_file():
        raise FileNotFoundError(f"FusionAudio JSON not found: {json_path}")
    records = [row for _, row in iter_table(json_path)]
    captions: dict[str, list[str]] = {}
    qa: dict[str, list[dict[str, str]]] = {}
    datasets: dict[str, str] = {}
    for n, rec in enumerate(records):
        aid = str(rec.get("audio_id") or "").strip()
        if not aid:
            raise ValueError(f"{json_path}: record {n} has no audio_id")
        captions.setdefault(aid, [])
        qa.setdefault(aid, [])
        output = str(rec.get("output") or "")
        if rec.get("task") == FUSIONAUDIO_CAPTION_TASK:
            captions[aid].append(output)
            if rec.get("dataset"):
                datasets[aid] = str(rec["dataset"])
        else:
            question = " ".join(str(rec.get(k) or "").strip() for k in ("instruction", "input")).strip()
            qa[aid].append({"q": question, "a": output, "task": str(rec.get("task") or "")})
    index = audioset_index(audio_dir)
    jobs, problems = [], []
    for aid in captions:  # dict order = first appearance in the JSON: deterministic
        path = index.get(aid) or index.get("Y" + aid)
        if path is None:
            problems.append(_problem(aid, "no_audio", f"no file for {aid} in {audio_dir}"))
            continue
        try:
            meta = make_meta(aid, source="fusionaudio", long=captions[aid], qa=qa[aid], dataset=datasets.get(aid))
        except CaptionError as exc:
            problems.append(_problem(aid, exc.reason, "no 'Captioning questions' record"))
            continue
        jobs.append(Job(aid, meta, path))
    return jobs, problems


# -- FCaps / ParaSpeechCaps / lhotse cuts ---------------------------------------------------------
def _fcaps_record(rec: dict[str, Any]) -> tuple[dict[str, Any], str | None, float, float | None, str | None]:
    """(fields, audio path, offset, duration, id) from a ParaSpeechCaps record or a lhotse cut."""
    if "supervisions" in rec or "recording" in rec:
        sups = rec.get("supervisions") or [{}]
        fields = dict(sups[0].get("custom") or {})
        fields.setdefault("text", sups[0].get("text"))
        fields.setdefault("speaker", sups[0].get("speaker"))
        fields.update({k: v for k, v in (rec.get("custom") or {}).items() if k not in fields})
        sources = (rec.get("recording") or {}).get("sources") or [{}]
        audio = sources[0].get("source")
        duration = rec.get("duration")
        return fields, audio, float(rec.get("start") or 0.0), (float(duration) if duration else None), rec.get("id")
    audio = next((rec[k] for k in FCAPS_AUDIO_FIELDS if isinstance(rec.get(k), str)), None)
    ident = rec.get("id") or rec.get("utterance_id") or rec.get("segment_id")
    return rec, audio, 0.0, None, ident


def fcaps_jobs(
    manifest: str | Path, audio_root: str | Path | None = None
) -> tuple[list[Job], list[dict[str, str]]]:
    """FCaps/ParaSpeechCaps JSONL(.gz) records or lhotse cuts -> jobs (cuts read only their segment)."""
    manifest = Path(manifest)
    if not manifest.is_file():
        raise FileNotFoundError(f"manifest not found: {manifest}")
    root = Path(audio_root) if audio_root is not None else manifest.parent
    jobs, problems = [], []
    for n, rec in iter_table(manifest):
        fields, audio, offset, duration, ident = _fcaps_record(rec)
        ident = str(ident or (Path(audio).stem if audio else f"line{n}"))
        path = _audio_file(audio, root, ident, f"line {n}: no audio path field", problems)
        if path is None:
            continue
        try:
            meta = make_meta(
                ident,
                source="fcaps",
                short=fields.get("short_captions") or fields.get("short_caption"),
                long=fields.get("long_captions") or fields.get("long_caption"),
                attributes={k: fields.get(k) for k in FCAPS_ATTRIBUTES},
                transcript=fields.get("text") or fields.get("transcription"),
                speaker=fields.get("speaker") or fields.get("speakerid"),
            )
        except CaptionError as exc:
            problems.append(_problem(ident, exc.reason, f"line {n}"))
            continue
        jobs.append(Job(ident, meta, str(path), offset, duration))
    return jobs, problems
