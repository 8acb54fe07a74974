"""The official evaluation sets by name: `NAME:DIR` specs, finding a release under a root, loading it,
its labels and a fingerprint for the embedding cache. The layouts themselves are `official`."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

from clsp.errors import UserError
from clsp.evaluation.clips import Clip
from clsp.evaluation.official import OfficialSet, audiocaps, clotho, crema_d, esc50, ravdess, us8k

__all__ = ["ADAPTERS", "fingerprint", "fold_name", "load_official", "locate", "parse_official_spec", "with_labels"]

ADAPTERS: dict[str, Callable[[Path, str | None], OfficialSet]] = {
    "audiocaps": audiocaps,
    "clotho": clotho,
    "esc50": esc50,
    "us8k": us8k,
    "ravdess": ravdess,
    "crema-d": crema_d,
}

# Files or folders that identify a release layout (for `locate`).
_SIGNATURES: dict[str, tuple[str, ...]] = {
    "audiocaps": ("test.csv", "val.csv"),
    "clotho": ("clotho_captions_evaluation.csv", "clotho_captions_validation.csv"),
    "esc50": ("meta/esc50.csv",),
    "us8k": ("metadata/UrbanSound8K.csv",),
    "ravdess": ("Actor_01", "Actor_02"),
    "crema-d": ("AudioWAV",),
}


def parse_official_spec(spec: str) -> tuple[str, Path] | None:
    """(adapter name, folder) for ``NAME:DIR`` with a known NAME, else None (a plain table or shards)."""
    name, sep, rest = spec.partition(":")
    if not sep or name.lower() not in ADAPTERS or not rest:
        return None
    return name.lower(), Path(rest).expanduser()


def load_official(name: str, root: str | Path, split: str | None = None) -> OfficialSet:
    """Read one official set; its clips have their audio probed, missing ones listed."""
    if name not in ADAPTERS:
        raise UserError(f"unknown data set {name!r}", f"use one of {', '.join(ADAPTERS)}")
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{name}: folder {root} not found", f"point {name}:DIR at the downloaded release")
    found = ADAPTERS[name](root, split)
    if not found.clips:
        raise UserError(f"{name}: none of the {found.listed} listed clips has readable audio under {root}",
                        "check the folder layout (see `python -m clsp.eval --help`)")
    return found


def locate(name: str, root: str | Path, depth: int = 2) -> Path | None:
    """The folder at or below `root` (at most `depth` levels) holding set `name`'s layout, if any."""
    root = Path(root)
    level = [root]
    for _ in range(depth + 1):
        for folder in level:
            if name == "audiocaps":
                ok = any(_looks_like_audiocaps(folder / f) for f in _SIGNATURES[name])
            else:
                ok = any((folder / f).exists() for f in _SIGNATURES[name])
            if ok:
                return folder
        level = [Path(e.path) for f in level for e in _subdirs(f)]
    return None


def _subdirs(folder: Path) -> list[os.DirEntry]:
    # scandir reads the entry type from the directory listing: no stat per file in folders of
    # thousands of clips.
    with os.scandir(folder) as entries:
        return sorted((e for e in entries if e.is_dir() and not e.name.startswith(".")), key=lambda e: e.name)


def _looks_like_audiocaps(path: Path) -> bool:
    # test.csv is a common name: only AudioCaps' header has youtube_id and caption.
    if not path.is_file():
        return False
    with path.open(encoding="utf-8", errors="replace") as f:
        header = f.readline()
    return "youtube_id" in header and "caption" in header


def fold_name(fold: object) -> str:
    """A fold as the adapters store it: "05" and 5 are fold "5"."""
    return str(int(fold)) if str(fold).strip().isdigit() else str(fold).strip()


def with_labels(found: OfficialSet, label_column: str | None) -> tuple[list[int], list[Clip], list[str]]:
    """(indices into found.clips, those clips with `.label` set, class names) for one attribute.

    Clips without the attribute (e.g. an actor missing from CREMA-D's demographics) are left
    out; the caller counts them. Class names follow the release's order, then any extra
    labels sorted.
    """
    column = label_column or found.default_label
    if column not in found.label_columns:
        raise UserError(f"{found.name}: no label column {column!r}", f"use one of {', '.join(found.label_columns)}")
    indices, clips = [], []
    for i, clip in enumerate(found.clips):
        value = clip.attributes.get(column)
        if value is not None:
            clip.label = value
            indices.append(i)
            clips.append(clip)
    if not clips:
        raise UserError(f"{found.name}: no clip has a {column!r} label", "check the release's metadata files")
    # Every class of the release is a candidate, even one whose clips are all missing.
    order = list(found.class_order.get(column, []))
    names = order + sorted({c.label for c in clips} - set(order))
    return indices, clips, names


def fingerprint(found: OfficialSet, **options: object) -> str:
    """A hash of the set's metadata files, its clips (path, size, mtime, captions) and `options`."""
    h = hashlib.sha256(json.dumps([found.name, found.split, options], sort_keys=True, default=str).encode())
    for path in found.metadata:
        h.update(path.read_bytes())
    for clip in found.clips:
        st = clip.path.stat()
        h.update(json.dumps([str(clip.path), st.st_size, st.st_mtime_ns, clip.captions]).encode())
    return h.hexdigest()[:24]
