"""Tiny generated replicas of the official evaluation-set layouts (test helper).

Each follows the release's real file naming and CSV headers, leaves a few listed clips
without audio, and uses odd file names (spaces, commas, ids with '-' and '_'). Audio is
0.2 s of a tone per class at 16 kHz, so a tiny model encodes a whole replica in seconds.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 16000


def _wav(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(RATE * 0.2)) / RATE
    sf.write(path, (0.3 * np.sin(2 * np.pi * (150 + 37 * (seed % 40)) * t)).astype(np.float32), RATE)


def _csv(path: Path, header: list[str], rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


# AudioCaps: (youtube id, start, how the downloader named the file; None = not downloaded)
AUDIOCAPS = [
    ("--0PQM4-hqg", 30, "{id}.wav"),
    ("Y-_A-ghSjd8", 0, "Y{id}.wav"),  # an id starting with Y, saved with AudioSet's Y prefix
    ("a_b-c_d-e_f", 20, "{id}_{start}.wav"),
    ("7fmOlUlwoNg", 20, "{id}_{start}.000_{end}.000.wav"),
    ("zzzzzzzzzz1", 70, "test/{id}_{start}_{end}.flac"),
    ("missingAAA1", 10, None),
    ("missingAAA2", 0, None),
]
AUDIOCAPS_BROKEN = ("brokenABCDE", 5)  # listed, file present but not audio


def audiocaps(root: Path) -> Path:
    d = root / "AudioCaps"
    rows, n = [], 100
    for i, (vid, start, pattern) in enumerate([*AUDIOCAPS, (*AUDIOCAPS_BROKEN, "{id}.wav")]):
        for j in range(5):
            n += 1
            rows.append([n, vid, start, f"sound {i}, take {j}: a dog barks"])
        if pattern is not None:
            path = d / pattern.format(id=vid, start=start, end=start + 10)
            if vid == AUDIOCAPS_BROKEN[0]:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"not audio at all")
            else:
                _wav(path, i)
    _csv(d / "test.csv", ["audiocap_id", "youtube_id", "start_time", "caption"], rows)
    return d


CLOTHO = ["Rain, on the roof 01.wav", "a b  c.wav", "birds (morning), park.wav", "plain.wav", "gone, missing.wav"]


def clotho(root: Path) -> Path:
    d = root / "clotho"
    rows = []
    for i, name in enumerate(CLOTHO):
        rows.append([name] + [f'caption {k} of "{name}", with a comma' for k in range(1, 6)])
        if "missing" not in name:
            _wav(d / "evaluation" / name, i)
    _csv(d / "clotho_captions_evaluation.csv", ["file_name"] + [f"caption_{k}" for k in range(1, 6)], rows)
    return d


ESC50_CLASSES = {0: "dog", 10: "rain", 14: "chirping_birds", 20: "crying_baby"}


def esc50(root: Path) -> Path:
    d = root / "ESC-50-master"
    rows = []
    for fold in range(1, 6):
        for k, (target, category) in enumerate(ESC50_CLASSES.items()):
            name = f"{fold}-{1000 + 10 * target + fold}-{'AB'[k % 2]}-{target}.wav"
            rows.append([name, fold, target, category, str(target in (0, 10)), f"{1000 + target}.ogg", "AB"[k % 2]])
            if not (fold == 5 and target == 20):  # one listed clip not downloaded
                _wav(d / "audio" / name, target)
    _csv(d / "meta" / "esc50.csv", ["filename", "fold", "target", "category", "esc10", "src_file", "take"], rows)
    return d


US8K_CLASSES = {0: "air_conditioner", 2: "children_playing", 3: "dog_bark"}


def us8k(root: Path) -> Path:
    d = root / "UrbanSound8K"
    rows = []
    for fold in (1, 2, 3):
        for class_id, name in US8K_CLASSES.items():
            fname = f"{100 + fold}-{class_id}-0-{fold}.wav"
            rows.append([fname, 100 + fold, 0.0, 4.0, 1, fold, class_id, name])
            if not (fold == 3 and class_id == 3):
                _wav(d / "audio" / f"fold{fold}" / fname, class_id)
    _csv(d / "metadata" / "UrbanSound8K.csv",
         ["slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class"], rows)
    return d


def ravdess(root: Path) -> Path:
    d = root / "RAVDESS"
    for actor in (1, 2, 3, 4):
        for emotion in ("01", "03", "05", "06"):
            _wav(d / f"Actor_{actor:02d}" / f"03-01-{emotion}-0{1 + actor % 2}-01-01-{actor:02d}.wav", actor)
    _wav(d / "Actor_01" / "03-02-03-01-01-01-01.wav", 9)  # song, not speech
    _wav(d / "Actor_02" / "notes about actor 2.wav", 9)  # not a RAVDESS name
    return d


CREMAD_AGES = {"1001": 51, "1002": 21, "1003": 36}  # 1004 is absent from the demographics


def crema_d(root: Path) -> Path:
    d = root / "CREMA-D"
    for i, actor in enumerate(("1001", "1002", "1003", "1004")):
        for emotion, level in (("ANG", "HI"), ("NEU", "XX"), ("SAD", "LO")):
            _wav(d / "AudioWAV" / f"{actor}_IEO_{emotion}_{level}.wav", i)
    _wav(d / "AudioWAV" / "1001_DFA_XYZ_XX.wav", 0)  # unknown emotion code
    _csv(d / "VideoDemographics.csv", ["ActorID", "Age", "Sex", "Race", "Ethnicity"],
         [[a, age, "Male" if a == "1001" else "Female", "Caucasian", "Not Hispanic"] for a, age in CREMAD_AGES.items()])
    return d


def all_sets(root: Path) -> dict[str, Path]:
    return {"audiocaps": audiocaps(root), "clotho": clotho(root), "esc50": esc50(root), "us8k": us8k(root),
            "ravdess": ravdess(root), "crema-d": crema_d(root)}
