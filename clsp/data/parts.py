"""`--part I/N`: the share of one shard-writing job a process does, so N machines split the job.

A job's tasks (chunks of `--samples-per-shard` clips in input order, or input shards for `laion`) are
numbered over the whole job; part I of N does the tasks whose number is I mod N. Every part lists
the whole input and gives every clip its key before it picks its tasks, so the N parts' shards hold
exactly the samples of one whole run, byte for byte: task i is `<prefix>-<i:06d>.tar` in a whole run
and `<prefix>-pIIIofNNN-<i:06d>.tar` in part III of NNN. Each part keeps its own bookkeeping files
(`sizes-pIIIofNNN.json`, manifest, skipped list, report), so parts writing one folder at once, from
several machines, never clobber a file; `writer.folder_sizes` reads all the sizes files and
`python -m clsp.shards merge` combines the rest.

Without `--part`, a SLURM array task takes its part from SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN
of SLURM_ARRAY_TASK_COUNT (`--array=0-7` or `--array=1-8`: 8 parts).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["WHOLE", "Part", "parse_part", "part_from_env", "resolve_part"]

_PART = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


@dataclass(frozen=True)
class Part:
    """Part `index` (from 0) of `count`; Part(0, 1) is the whole job."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"part {self.index}/{self.count} is out of range; use I/N with 0 <= I < N, e.g. 0/8")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def whole(self) -> bool:
        return self.count == 1

    @property
    def tag(self) -> str:
        """'p003of008' (at least three digits each, so names sort in part order)."""
        width = max(3, len(str(self.count)))
        return f"p{self.index:0{width}d}of{self.count:0{width}d}"

    def owns(self, task: int) -> bool:
        return task % self.count == self.index

    def prefix(self, prefix: str) -> str:
        """The shard name prefix of this part's shards."""
        return prefix if self.whole else f"{prefix}-{self.tag}"

    def file(self, name: str) -> str:
        """This part's own copy of a bookkeeping file: 'sizes.json' -> 'sizes-p003of008.json'."""
        if self.whole:
            return name
        stem, dot, ext = name.partition(".")
        return f"{stem}-{self.tag}{dot}{ext}"


WHOLE = Part()


def parse_part(text: str) -> Part:
    """'I/N' -> Part; anything else is a ValueError saying what is expected."""
    m = _PART.fullmatch(text)
    if m is None:
        raise ValueError(f"--part {text!r} is not I/N; use e.g. 0/8 (part 0 of 8)")
    return Part(int(m.group(1)), int(m.group(2)))


def part_from_env(env: Mapping[str, str] = os.environ) -> Part | None:
    """The part of a SLURM array task (None outside an array)."""
    if "SLURM_ARRAY_TASK_ID" not in env or "SLURM_ARRAY_TASK_COUNT" not in env:
        return None
    try:
        index = int(env["SLURM_ARRAY_TASK_ID"]) - int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
        return Part(index, int(env["SLURM_ARRAY_TASK_COUNT"]))
    except ValueError as exc:
        raise ValueError(f"cannot take the part from SLURM_ARRAY_TASK_ID/_MIN/_COUNT ({exc}); an array with a "
                         "step or gaps does not number its tasks 0..N-1; pass --part I/N") from exc


def resolve_part(text: str | None, env: Mapping[str, str] = os.environ) -> Part:
    """`--part` when given, else the SLURM array's, else the whole job."""
    if text is not None:
        return parse_part(text)
    return part_from_env(env) or WHOLE
