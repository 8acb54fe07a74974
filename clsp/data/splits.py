"""Train/val/test splits of a table's rows: by a seeded hash of each row's audio, or by a column.

`train=0.8,val=0.1,test=0.1`: a row goes to the split its hash falls in, the hash of (seed, the row's
group). The group is the audio as the table names it (a path, as written; for audio stored in a
Parquet table, its path or else the row id), so a row keeps its split when rows are added, removed
or reordered, and rows sharing one audio file (one row per caption, cuts of one recording) share a
split: no clip leaks from train into test. A split column instead names each row's split itself.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeVar


class _Splittable(Protocol):
    """What a split needs of a row (clsp.data.sources.Job): the group a hashed split is drawn from, or the
    split a split column names."""

    group: str
    split: str | None


Job = TypeVar("Job", bound=_Splittable)

__all__ = ["check_split_name", "parse_fractions", "split_jobs", "split_of", "split_problems"]

_NAME = re.compile(r"[A-Za-z0-9_]+")


def check_split_name(name: str) -> str:
    """A split name is a folder and shard prefix: letters, digits and '_' only."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"split name {name!r} is not usable as a folder name; use letters, digits and '_'")
    return name


def parse_fractions(spec: str | Mapping[str, float]) -> dict[str, float]:
    """'train=0.8,val=0.1,test=0.1' (or a mapping) -> {name: fraction}; fractions > 0 summing to 1."""
    if isinstance(spec, str):
        pairs = [p.partition("=") for p in spec.split(",") if p.strip()]
        if not pairs or any(not sep for _, sep, _ in pairs):
            raise ValueError(f"--split {spec!r} is not NAME=FRACTION,...; use e.g. train=0.8,val=0.1,test=0.1")
        try:
            items = [(name.strip(), float(value)) for name, _, value in pairs]
        except ValueError as exc:
            raise ValueError(f"--split {spec!r}: a fraction is not a number; use e.g. train=0.8,val=0.2") from exc
    else:
        items = [(str(k), float(v)) for k, v in spec.items()]
    fractions = dict(items)
    if len(fractions) != len(items):
        raise ValueError(f"--split {spec!r} names a split twice; give each split once")
    for name, value in fractions.items():
        check_split_name(name)
        if not value > 0:
            raise ValueError(f"--split {spec!r}: split {name!r} has fraction {value}; give fractions > 0")
    if abs(sum(fractions.values()) - 1.0) > 1e-6:
        raise ValueError(f"--split {spec!r}: fractions sum to {sum(fractions.values()):g}; make them sum to 1")
    return fractions


def split_of(group: str, fractions: Mapping[str, float], seed: int = 0) -> str:
    """The split a group hashes into: a uniform draw in [0, 1) from (seed, group), cut at the fractions."""
    digest = hashlib.blake2b(f"{seed}\0{group}".encode(), digest_size=8).digest()
    u = int.from_bytes(digest, "big") / 2**64
    edge = 0.0
    for name, fraction in fractions.items():
        edge += fraction
        if u < edge:
            return name
    return name  # u beyond a float-rounded last edge


def split_jobs(jobs: Sequence[Job], fractions: Mapping[str, float] | None = None, seed: int = 0) -> dict[str, list[Job]]:
    """Jobs by split, in input order: by hash when `fractions` is given, else by each job's `split`
    (from a split column). With fractions every split is present, even one no row fell into."""
    out: dict[str, list[Job]] = {name: [] for name in fractions or {}}
    for job in jobs:
        name = split_of(job.group, fractions, seed) if fractions else check_split_name(job.split or "")
        out.setdefault(name, []).append(job)
    return out


def split_problems(problems: Sequence[dict[str, Any]], fractions: Mapping[str, float] | None,
                   seed: int = 0) -> dict[str, list[dict[str, Any]]]:
    """Skipped rows by the split they would have gone to ('': a row with no split value)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for p in problems:
        name = split_of(p.get("group") or p["id"], fractions, seed) if fractions else p.get("split", "")
        out.setdefault(name, []).append(p)
    return out
