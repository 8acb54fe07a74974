"""Shard URL specs: what `data.train` / `data.val` / `data.test` and `clsp.eval --data` may name.

- a brace pattern '/d/train-{000000..000511}.tar', a glob '/d/*.tar', a folder (its *.tar files),
  a list of any of these, or one string of them joined with "::";
- `pipe:CMD` (CMD's stdout is the tar) and remote URLs (http://, s3://, ... through webdataset's
  gopen) are passed through unchecked;
- several sources with sampling weights: a list of {"urls": spec, "weight": w} mappings.
A local pattern whose expansion names files that do not exist raises FileNotFoundError naming it.
Each local shard folder may hold `sizes.json` (samples per shard), which epoch planning reads.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import braceexpand

from clsp.data.writer import folder_sizes

REMOTE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


@dataclass
class ShardSource:
    urls: list[str]
    weight: float = 1.0


def is_remote(url: str) -> bool:
    """`pipe:` commands and remote URLs (not `file://`): streamed, never checked on disk."""
    return url.startswith("pipe:") or (bool(REMOTE.match(url)) and not url.startswith("file://"))


def is_shard_spec(spec: str) -> bool:
    """True for '.tar' urls, brace patterns of them, or a folder of .tar shards."""
    if spec.endswith(".tar") or (".tar" in spec and "{" in spec):
        return True
    path = Path(spec)
    return path.is_dir() and any(path.glob("*.tar"))


def _braceexpand(pattern: str) -> list[str]:
    return list(braceexpand.braceexpand(pattern))


def _expand_one(part: str) -> list[str]:
    part = part.strip()
    if not part:
        return []
    if is_remote(part):
        return _braceexpand(part)
    part = part.removeprefix("file://")
    if os.path.isdir(part):
        found = sorted(glob.glob(os.path.join(part, "*.tar")))
        if not found:
            raise FileNotFoundError(f"shard folder {part!r} has no *.tar files")
        return found
    urls: list[str] = []
    for pattern in _braceexpand(part):
        if any(c in pattern for c in "*?["):
            urls.extend(sorted(glob.glob(pattern)))
        else:
            urls.append(pattern)
    missing = [u for u in urls if not os.path.isfile(u)]
    if not urls or len(missing) == len(urls):
        raise FileNotFoundError(f"no shard file matches {part!r}" + (f" (e.g. {missing[0]})" if missing else ""))
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of {len(urls)} shard files of {part!r} do not exist, e.g. {missing[0]}"
        )
    return urls


def expand_urls(spec: str | os.PathLike | Sequence[Any]) -> list[str]:
    """A flat list of shard URLs from a string ('a::b', braces, globs, folders), a path or a list."""
    if isinstance(spec, (str, os.PathLike)):
        return [u for part in str(spec).split("::") for u in _expand_one(part)]
    if isinstance(spec, Mapping):
        raise ValueError(f"expected shard URLs, got a mapping {dict(spec)!r} (use parse_sources for weights)")
    if isinstance(spec, Sequence):
        return [u for item in spec for u in expand_urls(item)]
    raise ValueError(f"cannot read shard URLs from {spec!r}")


def parse_sources(spec: Any) -> list[ShardSource]:
    """Weighted sources from a URL spec, a {"urls", "weight"} mapping or a list of such mappings."""
    if isinstance(spec, Mapping):
        if "urls" not in spec:
            raise ValueError(f"a source mapping needs 'urls' (and optionally 'weight'), got keys {list(spec)}")
        weight = float(spec.get("weight", 1.0))
        if not weight > 0:
            raise ValueError(f"source weight must be > 0, got {weight} for {spec['urls']!r}")
        return [ShardSource(expand_urls(spec["urls"]), weight)]
    if isinstance(spec, Sequence) and not isinstance(spec, str) and any(isinstance(s, Mapping) for s in spec):
        return [src for item in spec for src in parse_sources(item if isinstance(item, Mapping) else {"urls": item})]
    urls = expand_urls(spec)
    if not urls:
        raise ValueError(f"no shard URLs in {spec!r}")
    return [ShardSource(urls)]


def shard_sizes(urls: Sequence[str]) -> dict[str, int | None]:
    """Samples per shard from each local shard folder's sizes files (`clsp.data.writer.folder_sizes`:
    sizes.json and the parts' own), None where unknown."""
    folders: dict[str, dict[str, int]] = {}
    out: dict[str, int | None] = {}
    for url in urls:
        if is_remote(url):
            out[url] = None
            continue
        folder = os.path.dirname(os.path.abspath(url))
        if folder not in folders:
            folders[folder] = folder_sizes(folder)
        out[url] = folders[folder].get(os.path.basename(url))
    return out


def deal_shards(urls: Sequence[str], reader: int, readers: int) -> tuple[list[str], int | None]:
    """(shards, sample stride or None) that reader `reader` of `readers` reads in one pass.

    Shards are dealt round robin; with fewer shards than readers every reader reads all of them
    and keeps every `readers`-th sample instead (stride), so nothing hangs and nothing is read twice.
    """
    if len(urls) >= readers:
        return list(urls[reader::readers]), None
    return list(urls), readers
