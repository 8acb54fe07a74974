"""Atomic file writes: the one helper every writer in clsp uses (configs, weights, reports, sizes.json).

A file is written under a temporary name next to its target and renamed onto it only when complete,
so a reader, a resumed run or a killed process never sees half a file. It lives at the bottom of the
package (it imports nothing from clsp), so model, data, training and evaluation code can all use it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["atomic_path", "write_atomic", "write_text_atomic", "write_json_atomic"]


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; it replaces `path` when the block ends without error.

    The temporary name is hidden and carries the process id, so concurrent writers (ranks, workers)
    never share one; on error it is removed and `path` is left as it was.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.is_file():
            tmp.unlink()


def write_atomic(path: str | os.PathLike, write: Callable[[Path], object]) -> None:
    """Call `write(tmp)` on a temporary path, then rename it over `path` (e.g. safetensors' save_file)."""
    with atomic_path(path) as tmp:
        write(tmp)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike, obj: Any, **dumps: Any) -> None:
    """Write `obj` as JSON (default: indent 1, sorted keys) to `path` atomically."""
    options = {"indent": 1, "sort_keys": True} | dumps
    write_text_atomic(path, json.dumps(obj, **options) + "\n")
