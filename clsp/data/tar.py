"""Streaming WebDataset tar shards: one raw sample (a dict of the key's files) at a time.

Hand-written rather than webdataset's `tariterators`: a truncated or corrupt tar must yield what was
complete before the damage and count one `corrupt_tar`, and an unopenable one `open_error` (see
`clsp.data.skips`), where webdataset's handlers either raise or drop the rest silently. Opening
remote URLs is webdataset's `gopen`.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
from collections.abc import Iterator
from typing import Any, BinaryIO

from webdataset.gopen import gopen

from clsp.data.skips import SkipCounter
from clsp.data.urls import is_remote


class _PipeStream(io.RawIOBase):
    """stdout of a shell command as a readable stream; a non-zero exit is an error at EOF."""

    def __init__(self, cmd: str):
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, shell=True, stdout=subprocess.PIPE)

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = self.proc.stdout.readinto(b)
        if n == 0 and self.proc.wait() != 0:
            raise OSError(f"pipe command {self.cmd!r} exited with status {self.proc.returncode}")
        return n

    def close(self) -> None:
        if not self.closed:
            self.proc.stdout.close()
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
        super().close()


def open_url(url: str) -> BinaryIO:
    """A binary stream for a local path, `pipe:CMD`, or a remote URL (via webdataset's gopen)."""
    if url.startswith("pipe:"):
        return io.BufferedReader(_PipeStream(url[5:]), buffer_size=1 << 20)
    if is_remote(url):
        return gopen(url, "rb")
    return open(url.removeprefix("file://"), "rb", buffering=1 << 20)


def _split_name(name: str) -> tuple[str, str]:
    # WebDataset convention: the key is the path up to the first dot of the base name.
    folder, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext.lower()


def iter_raw(url: str, counter: SkipCounter) -> Iterator[dict[str, Any]]:
    """Raw samples of one tar: {"__key__", "__url__", "__index__", ext: bytes, ...}, in tar order.

    A truncated or corrupt tar yields what was complete before the damage and counts one
    "corrupt_tar" (the sample being read at that point is dropped); an unopenable one "open_error".
    """
    try:
        stream = open_url(url)
    except OSError:
        counter.skip("open_error", url)
        return
    index = 0
    group: dict[str, Any] | None = None
    try:
        with stream, tarfile.open(fileobj=stream, mode="r|*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                key, ext = _split_name(member.name)
                if not ext or key.startswith("__") or "/." in "/" + key:
                    continue  # e.g. macOS ._ files, __init__ entries
                if group is not None and group["__key__"] != key:
                    yield group  # before reading on: a damaged next member must not cost this sample
                    index += 1
                    group = None
                if group is None:
                    group = {"__key__": key, "__url__": url, "__index__": index}
                group[ext] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError, ValueError):
        counter.skip("corrupt_tar", url)
        return
    if group is not None:
        yield group
