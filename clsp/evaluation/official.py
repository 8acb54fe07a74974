"""Adapters for the official release layouts of the evaluation sets (``--data NAME:DIR``).

Users point at the folder they downloaded; each adapter reads the release's own metadata
and naming rules and returns an `OfficialSet` of `Clip`s:

- ``audiocaps:``  test.csv / val.csv (audiocap_id, youtube_id, start_time, caption; one
  caption per row). Audio is named by YouTube id, with or without the start (and end)
  time and AudioSet's ``Y`` prefix, in the folder or a ``<split>/`` subfolder.
- ``clotho:``     clotho_captions_<split>.csv (file_name, caption_1..caption_5) with the
  audio under ``<split>/`` (names with spaces and commas).
- ``esc50:``      meta/esc50.csv + audio/; labels by ``target`` order, folds kept.
- ``us8k:``       metadata/UrbanSound8K.csv + audio/foldN/; labels by ``classID`` order.
- ``ravdess:``    Actor_NN/ folders of 7-part names MM-VV-EE-II-SS-RR-AA.wav (speech only).
- ``crema-d:``    AudioWAV/AAAA_SSS_EEE_LL.wav + VideoDemographics.csv (age, sex).

Every copy of these sets misses clips: a clip the metadata lists but whose audio is absent
or unreadable is counted and listed in `OfficialSet.missing`, never fatal. A file whose
name breaks the naming rules (RAVDESS, CREMA-D) is skipped and counted the same way.
Captions keep their stored order (LAION-CLAP's a2t mAP@10 depends on it).

Prompt templates are those the papers used: LAION-CLAP's "This is a sound of {label}."
for ESC-50 / UrbanSound8K, and CLSP-style speaker prompts for the speech sets.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from clsp.audio_io import AudioDecodeError, audio_info
from clsp.data.table import read_table
from clsp.errors import UserError
from clsp.evaluation.clips import Clip

__all__ = ["AGE_BINS", "OfficialSet", "audiocaps", "clotho", "crema_d", "esc50", "ravdess", "us8k"]

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".m4a", ".opus")
SOUND_TEMPLATES = ("This is a sound of {label}.",)  # LAION-CLAP's ESC-50 / US8K prompt

RAVDESS_EMOTIONS = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry", "06": "fearful",
                    "07": "disgust", "08": "surprised"}
RAVDESS_INTENSITY = {"01": "normal", "02": "strong"}
CREMAD_EMOTIONS = {"ANG": "angry", "DIS": "disgust", "FEA": "fearful", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
CREMAD_LEVELS = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified"}
# CREMA-D age bins (years, lower bound inclusive). The CLSP paper does not publish its bins
# in REFERENCE.md; these are clsp's, so its CREMA-D age row compares only approximately.
AGE_BINS = ((0, 30, "young"), (30, 50, "middle-aged"), (50, 200, "old"))

# Prompts per label attribute of the speech sets (CLSP's "A speaker in a {label} tone.").
SPEECH_TEMPLATES = {
    "emotion": ("A speaker in a {label} tone.",),
    "gender": ("A {label} speaker.",),
    "age": ("A {label} speaker.",),
    "intensity": ("A speaker with {label} emotional intensity.",),
    "level": ("A speaker with {label} emotional intensity.",),
}


@dataclass
class OfficialSet:
    """One official evaluation set as found on disk."""

    name: str  # adapter name, e.g. "audiocaps"
    task: str  # "retrieval" or "zeroshot"
    root: Path
    split: str | None
    clips: list[Clip]
    metadata: list[Path]  # the release's metadata files (part of the cache fingerprint)
    listed: int  # clips the metadata lists (or audio files seen, for folder-only sets)
    missing: list[str] = field(default_factory=list)  # "<id>: <why>" for each clip left out
    label_columns: tuple[str, ...] = ()  # attributes usable as --label-column
    default_label: str | None = None
    class_order: dict[str, list[str]] = field(default_factory=dict)  # attribute -> the release's label order
    templates: dict[str, tuple[str, ...]] = field(default_factory=dict)  # attribute -> the papers' prompts
    notes: list[str] = field(default_factory=list)


def _is_audio(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_SUFFIXES and path.is_file()


def _add(clip: Clip, out: OfficialSet) -> None:
    """Keep the clip if its header reads and it has frames; otherwise list it as missing, with why."""
    try:
        frames, rate, _ = audio_info(clip.path)
    except AudioDecodeError:
        out.missing.append(f"{clip.key}: unreadable audio ({clip.path.name})")
        return
    if frames == 0:
        out.missing.append(f"{clip.key}: empty audio")
        return
    clip.frames, clip.sample_rate = frames, rate
    out.clips.append(clip)


def _need(path: Path, name: str, what: str) -> Path:
    if not path.exists():
        raise UserError(f"{name}: {path} not found", f"point {name}:DIR at the folder holding {what}")
    return path


def _split(name: str, split: str | None, allowed: tuple[str, ...]) -> str:
    split = split or allowed[0]
    if split not in allowed:
        raise UserError(f"{name}: unknown split {split!r}", f"use one of {', '.join(allowed)}")
    return split


# -- AudioCaps --------------------------------------------------------------------------------

_YT_ID = 11  # YouTube ids are 11 characters of [A-Za-z0-9_-]


def _youtube_name(stem: str) -> tuple[str, float | None] | None:
    """(youtube id, start seconds or None) from a downloader's file stem, or None.

    Accepts ``<id>``, ``Y<id>`` (AudioSet), ``<id>_<start>``, ``<id>_<start>_<end>`` and
    ``<id>_<start>.000_<end>.000``. The id may itself contain '_' and '-'.
    """
    if len(stem) >= _YT_ID + 1 and stem[0] == "Y" and (len(stem) == _YT_ID + 1 or stem[_YT_ID + 1] == "_"):
        stem = stem[1:]
    vid, rest = stem[:_YT_ID], stem[_YT_ID:]
    if len(vid) != _YT_ID or not re.fullmatch(r"[A-Za-z0-9_-]+", vid):
        return None
    if not rest:
        return vid, None
    m = re.fullmatch(r"_(\d+(?:\.\d+)?)(?:_\d+(?:\.\d+)?)?", rest)
    return (vid, float(m.group(1))) if m else None


def audiocaps(root: Path, split: str | None = None) -> OfficialSet:
    split = _split("audiocaps", split, ("test", "val", "train"))
    table = _need(root / f"{split}.csv", "audiocaps", f"{split}.csv")
    index: dict[tuple[str, float | None], Path] = {}
    for folder in (root, root / split):
        if folder.is_dir():
            for path in sorted(folder.iterdir()):
                parsed = _youtube_name(path.stem) if _is_audio(path) else None
                if parsed is not None:
                    index.setdefault(parsed, path)
    by_clip: dict[str, Clip] = {}
    for line, row in read_table(table):
        vid = str(row.get("youtube_id") or "").strip()
        caption = str(row.get("caption") or "").strip()
        if not vid or not caption:
            raise UserError(f"{table}: line {line}: needs youtube_id and caption",
                            "use the release's CSV (audiocap_id, youtube_id, start_time, caption)")
        clip = by_clip.get(vid)
        if clip is None:
            try:
                start = float(row.get("start_time") or 0)
            except ValueError:
                raise UserError(f"{table}: line {line}: start_time {row.get('start_time')!r} is not a number") from None
            clip = by_clip[vid] = Clip(key=vid, line=line, attributes={"start_time": f"{start:g}"})
            clip.path = index.get((vid, start)) or index.get((vid, None))
        clip.captions.append(caption)
        clip.kinds.append("caption")
    out = OfficialSet("audiocaps", "retrieval", root, split, [], [table], listed=len(by_clip))
    for clip in by_clip.values():
        if clip.path is None:
            out.missing.append(f"{clip.key}: no audio file")
        else:
            _add(clip, out)
    return out


# -- Clotho -----------------------------------------------------------------------------------


def clotho(root: Path, split: str | None = None) -> OfficialSet:
    split = _split("clotho", split, ("evaluation", "validation", "development"))
    table = _need(root / f"clotho_captions_{split}.csv", "clotho", f"clotho_captions_{split}.csv")
    out = OfficialSet("clotho", "retrieval", root, split, [], [table], listed=0)
    for line, row in read_table(table):
        name = str(row.get("file_name") or "").strip()
        captions = [str(row[c]).strip() for c in sorted((c for c in row if re.fullmatch(r"caption_\d+", c)),
                                                        key=lambda c: int(c.split("_")[1])) if str(row[c] or "").strip()]
        if not name or not captions:
            raise UserError(f"{table}: line {line}: needs file_name and caption_1..caption_5",
                            "use the release's clotho_captions CSV")
        out.listed += 1
        clip = Clip(key=name, path=root / split / name, line=line, captions=captions, kinds=["caption"] * len(captions))
        if clip.path.is_file():
            _add(clip, out)
        else:
            out.missing.append(f"{name}: no audio file")
    return out


# -- ESC-50 and UrbanSound8K ------------------------------------------------------------------


def _classification(name: str, root: Path, table: Path, file_col: str, label_col: str, index_col: str,
                    audio_dir: Callable[[dict], Path]) -> OfficialSet:
    out = OfficialSet(name, "zeroshot", root, None, [], [table], listed=0, label_columns=("label",),
                      default_label="label", templates={"label": SOUND_TEMPLATES})
    order: dict[int, str] = {}
    for line, row in read_table(table):
        fname, label = str(row.get(file_col) or "").strip(), str(row.get(label_col) or "").strip()
        try:
            fold, index = int(row["fold"]), int(row[index_col])
        except (KeyError, TypeError, ValueError):
            raise UserError(f"{table}: line {line}: needs {file_col}, fold, {index_col} and {label_col}",
                            f"use the release's {table.name}") from None
        if not fname or not label:
            raise UserError(f"{table}: line {line}: empty {file_col} or {label_col}", f"use the release's {table.name}")
        order.setdefault(index, label)
        out.listed += 1
        clip = Clip(key=fname, path=audio_dir(row) / fname, line=line, label=label,
                    attributes={"label": label, "fold": str(fold)})
        if clip.path.is_file():
            _add(clip, out)
        else:
            out.missing.append(f"{fname}: no audio file")
    out.class_order["label"] = [order[i] for i in sorted(order)]
    return out


def esc50(root: Path, split: str | None = None) -> OfficialSet:
    table = _need(root / "meta" / "esc50.csv", "esc50", "meta/esc50.csv and audio/")
    out = _classification("esc50", root, table, "filename", "category", "target", lambda row: root / "audio")
    out.notes.append("zero-shot over all 5 folds; WA_fold1..5 and their mean are reported (equal-sized folds)")
    return out


def us8k(root: Path, split: str | None = None) -> OfficialSet:
    table = _need(root / "metadata" / "UrbanSound8K.csv", "us8k", "metadata/UrbanSound8K.csv and audio/foldN/")
    return _classification("us8k", root, table, "slice_file_name", "class", "classID",
                           lambda row: root / "audio" / f"fold{int(row['fold'])}")


# -- RAVDESS and CREMA-D ----------------------------------------------------------------------


def ravdess(root: Path, split: str | None = None) -> OfficialSet:
    actors = sorted(p for p in root.glob("Actor_[0-9][0-9]") if p.is_dir())
    if not actors:
        raise UserError(f"ravdess: no Actor_NN folders in {root}", "point ravdess:DIR at the folder holding Actor_01..24")
    out = OfficialSet("ravdess", "zeroshot", root, None, [], [], listed=0,
                      label_columns=("emotion", "gender", "intensity", "statement", "actor"), default_label="emotion",
                      templates=dict(SPEECH_TEMPLATES))
    for folder in actors:
        for path in sorted(folder.iterdir()):
            if not _is_audio(path):
                continue
            out.listed += 1
            parts = path.stem.split("-")
            if (len(parts) != 7 or not all(re.fullmatch(r"\d\d", p) for p in parts) or parts[2] not in RAVDESS_EMOTIONS
                    or parts[3] not in RAVDESS_INTENSITY or parts[0] not in ("01", "02", "03")
                    or parts[1] not in ("01", "02") or not 1 <= int(parts[6]) <= 24):
                out.missing.append(f"{path.name}: not a RAVDESS name (MM-VV-EE-II-SS-RR-AA)")
                continue
            if parts[1] != "01":
                out.missing.append(f"{path.name}: song (vocal channel 02), not speech")
                continue
            actor = int(parts[6])
            attrs = {"emotion": RAVDESS_EMOTIONS[parts[2]], "intensity": RAVDESS_INTENSITY[parts[3]],
                     "statement": parts[4], "repetition": parts[5], "actor": parts[6],
                     "gender": "male" if actor % 2 else "female"}
            _add(Clip(key=f"{folder.name}/{path.name}", path=path, attributes=attrs), out)
    out.class_order = {"emotion": list(RAVDESS_EMOTIONS.values()), "gender": ["male", "female"],
                       "intensity": list(RAVDESS_INTENSITY.values())}
    return out


def _age_bin(age: str) -> str | None:
    try:
        years = float(age)
    except ValueError:
        return None
    return next((name for lo, hi, name in AGE_BINS if lo <= years < hi), None)


def crema_d(root: Path, split: str | None = None) -> OfficialSet:
    audio = _need(root / "AudioWAV", "crema-d", "AudioWAV/ and VideoDemographics.csv")
    demo_path = root / "VideoDemographics.csv"
    demographics: dict[str, dict] = {}
    if demo_path.is_file():
        for _, row in read_table(demo_path):
            demographics[str(row.get("ActorID", "")).strip()] = row
    out = OfficialSet("crema-d", "zeroshot", root, None, [], [demo_path] if demo_path.is_file() else [], listed=0,
                      label_columns=("emotion", "gender", "age", "level", "sentence"), default_label="emotion",
                      templates=dict(SPEECH_TEMPLATES))
    if not demo_path.is_file():
        out.notes.append("VideoDemographics.csv not found: no gender or age labels")
    for path in sorted(audio.iterdir()):
        if not _is_audio(path):
            continue
        out.listed += 1
        parts = path.stem.split("_")
        if (len(parts) != 4 or not re.fullmatch(r"\d{4}", parts[0]) or parts[2] not in CREMAD_EMOTIONS
                or parts[3] not in CREMAD_LEVELS):
            out.missing.append(f"{path.name}: not a CREMA-D name (AAAA_SSS_EEE_LL)")
            continue
        attrs = {"emotion": CREMAD_EMOTIONS[parts[2]], "level": CREMAD_LEVELS[parts[3]], "sentence": parts[1],
                 "actor": parts[0]}
        person = demographics.get(parts[0])
        if person is not None:
            sex = str(person.get("Sex", "")).strip().lower()
            if sex in ("male", "female"):
                attrs["gender"] = sex
            age = _age_bin(str(person.get("Age", "")).strip())
            if age is not None:
                attrs["age"] = age
        _add(Clip(key=path.name, path=path, attributes=attrs), out)
    out.class_order = {"emotion": list(CREMAD_EMOTIONS.values()), "gender": ["male", "female"],
                       "age": [name for _, _, name in AGE_BINS]}
    out.notes.append("age bins (years): " + ", ".join(f"{name} [{lo}, {hi})" for lo, hi, name in AGE_BINS))
    return out
