"""Reading WebDataset tar shards: URL specs, sizes.json, tar streaming, decoding, skip accounting.

URL specs (`expand_urls`, `parse_sources`):
- a brace pattern '/d/train-{000000..000511}.tar', a glob '/d/*.tar', a folder (its *.tar files),
  a list of any of these, or one string of them joined with "::";
- `pipe:CMD` (CMD's stdout is the tar) and remote URLs (http://, s3://, ... through webdataset's
  gopen) are passed through unchecked;
- several sources with sampling weights: a list of {"urls": spec, "weight": w} mappings.
A local pattern whose expansion names files that do not exist raises FileNotFoundError naming it.

Bad samples are skipped and counted by reason in a `SkipCounter`; once at least `min_samples`
samples were seen, a failure rate above `max_failure_rate` raises `DataError` naming the shard with
the most failures and the most common reason.
"""

from __future__ import annotations

import glob
import io
import json
import math
import os
import random
import re
import subprocess
import tarfile
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from clsp import audio_io
from clsp.data.schema import AUDIO_EXTENSIONS, CaptionError, require_captions
from clsp.errors import DataFailure

# Counted by SkipCounter.skip: these are failures and count toward max_failure_rate.
SKIP_REASONS: tuple[str, ...] = (
    "open_error",
    "corrupt_tar",
    "no_json",
    "bad_json",
    "no_audio",
    "decode_error",
    "empty_audio",
    "nan_audio",
    "no_caption",
    "empty_caption",
)
_REMOTE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


class DataError(DataFailure):
    """Too many bad samples (or a bad sample with handler="raise"): the message says where and why."""


class SkipCounter:
    """Counts skipped samples by reason and stops the run when the failure rate passes a limit.

    `skip()` counts a failure; `note()` counts an event that is not a failure (e.g. a caption
    fallback); `ok()` counts a good sample. `drain()` returns what was counted since the previous
    drain (what a batch reports), `totals` everything.
    """

    def __init__(self, max_failure_rate: float | None = 0.1, min_samples: int = 100):
        if max_failure_rate is not None and not 0.0 <= max_failure_rate <= 1.0:
            raise ValueError(f"max_failure_rate must be in [0, 1] or None, got {max_failure_rate}")
        self.max_failure_rate = max_failure_rate
        self.min_samples = min_samples
        self.good = 0
        self.failures = 0
        self.totals: Counter[str] = Counter()
        self.by_url: Counter[str] = Counter()
        self._pending: Counter[str] = Counter()

    @property
    def seen(self) -> int:
        return self.good + self.failures

    @property
    def failure_rate(self) -> float:
        return self.failures / self.seen if self.seen else 0.0

    def ok(self) -> None:
        self.good += 1

    def note(self, name: str, n: int = 1) -> None:
        self.totals[name] += n
        self._pending[name] += n

    def skip(self, reason: str, url: str = "") -> None:
        self.failures += 1
        self.totals[reason] += 1
        self._pending[reason] += 1
        self.by_url[url] += 1
        self.check()

    def check(self) -> None:
        """Raise DataError when the failure rate is above the limit (after min_samples samples)."""
        if self.max_failure_rate is None or self.seen < self.min_samples:
            return
        if self.failure_rate > self.max_failure_rate:
            failures = {r: n for r, n in self.totals.items() if r in SKIP_REASONS}
            reason, count = max(failures.items(), key=lambda kv: kv[1])
            url, url_count = self.by_url.most_common(1)[0]
            raise DataError(
                f"data failure rate {self.failure_rate:.1%} ({self.failures} of {self.seen} samples) exceeds "
                f"max_failure_rate={self.max_failure_rate:.1%}; top reason: {reason} ({count}); "
                f"most failures in shard {url} ({url_count}); all: {dict(failures)}"
            )

    def drain(self) -> dict[str, int]:
        out = dict(self._pending)
        self._pending.clear()
        return out


@dataclass
class Sample:
    """One decoded sample: mono float32 audio at `sample_rate` + normalised captions + its json."""

    key: str
    audio: np.ndarray
    sample_rate: int
    captions: dict[str, list[str]]
    attributes: dict[str, Any]
    meta: dict[str, Any]
    url: str


@dataclass
class ShardSource:
    urls: list[str]
    weight: float = 1.0


# -- URL specs ------------------------------------------------------------------------------------
def _braceexpand(pattern: str) -> list[str]:
    import braceexpand

    return list(braceexpand.braceexpand(pattern))


def _expand_one(part: str) -> list[str]:
    part = part.strip()
    if not part:
        return []
    if part.startswith("pipe:") or (_REMOTE.match(part) and not part.startswith("file://")):
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
    """Samples per shard from each local shard folder's sizes.json (None where unknown)."""
    cache: dict[str, dict[str, int]] = {}
    out: dict[str, int | None] = {}
    for url in urls:
        if url.startswith("pipe:") or _REMOTE.match(url):
            out[url] = None
            continue
        folder = os.path.dirname(os.path.abspath(url))
        if folder not in cache:
            path = os.path.join(folder, "sizes.json")
            try:
                with open(path) as f:
                    cache[folder] = {str(k): int(v) for k, v in json.load(f).items()}
            except FileNotFoundError:
                cache[folder] = {}
            except (ValueError, AttributeError) as exc:
                raise ValueError(f"{path}: not a JSON object of shard name -> sample count ({exc})") from exc
        out[url] = cache[folder].get(os.path.basename(url))
    return out


# -- tar streaming --------------------------------------------------------------------------------
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
    if _REMOTE.match(url) and not url.startswith("file://"):
        from webdataset.gopen import gopen

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


# -- decoding -------------------------------------------------------------------------------------
def _audio_field(raw: Mapping[str, Any]) -> tuple[str, bytes] | None:
    for ext, value in raw.items():
        if not ext.startswith("__") and ext.rsplit(".", 1)[-1] in AUDIO_EXTENSIONS:
            return ext, value
    return None


def probe_seconds(raw: Mapping[str, Any], max_seconds: float | None = None) -> float:
    """Duration of a raw sample's audio from its header alone (capped at max_seconds); 0.0 when unreadable.

    What duration bucketing sorts by: it costs a header parse, not a decode. An unreadable sample
    gets 0.0 and is counted (by reason) when it is decoded.
    """
    found = _audio_field(raw)
    if found is None:
        return 0.0
    try:
        frames, rate, _ = audio_io.audio_info(found[1])
    except audio_io.AudioDecodeError:
        return 0.0
    seconds = frames / rate if rate > 0 else 0.0
    return min(seconds, max_seconds) if max_seconds is not None else seconds


def decode_window(
    data: bytes,
    *,
    max_seconds: float | None = None,
    crop: str = "start",
    rng: random.Random | None = None,
) -> tuple[np.ndarray, int]:
    """Decode (a window of) encoded audio to mono float32 at the file's rate.

    Only the window is decoded: crop="random" picks a uniformly random window of max_seconds,
    "start" and "none" take the first max_seconds (max_seconds=None: the whole file).
    """
    if crop not in ("random", "start", "none"):
        raise ValueError(f"crop must be 'random', 'start' or 'none', got {crop!r}")
    total, rate, _ = audio_io.audio_info(data)  # a header parse: cheap next to the decode
    start, frames = 0, -1
    if max_seconds is not None:
        frames = max(1, math.ceil(max_seconds * rate))
        if crop == "random" and 0 < total - frames:
            start = (rng or random).randrange(total - frames + 1)
    return audio_io.decode(data, start=start, frames=frames)


def decode_raw(
    raw: Mapping[str, Any],
    counter: SkipCounter,
    *,
    sample_rate: int | None = None,
    max_seconds: float | None = None,
    crop: str = "start",
    rng: random.Random | None = None,
) -> Sample | None:
    """A Sample from a raw tar group, or None (counted in `counter` by reason) when it is unusable."""
    url = raw.get("__url__", "")
    if "json" not in raw:
        counter.skip("no_json", url)
        return None
    try:
        meta = json.loads(raw["json"])
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
    except (ValueError, UnicodeDecodeError):
        counter.skip("bad_json", url)
        return None
    try:
        captions = require_captions(meta)
    except CaptionError as exc:
        counter.skip(exc.reason, url)
        return None
    found = _audio_field(raw)
    if found is None:
        counter.skip("no_audio", url)
        return None
    try:
        audio, rate = decode_window(found[1], max_seconds=max_seconds, crop=crop, rng=rng)
    except audio_io.AudioDecodeError:
        counter.skip("decode_error", url)
        return None
    if audio.size == 0:
        counter.skip("empty_audio", url)
        return None
    if not np.isfinite(audio).all():
        counter.skip("nan_audio", url)
        return None
    if sample_rate is not None and rate != sample_rate:
        audio = audio_io.resample(audio, rate, sample_rate)
        if max_seconds is not None:
            audio = audio[: int(round(max_seconds * sample_rate))]  # the ceil above may add one sample
        rate = sample_rate
    attributes = meta.get("attributes")
    counter.ok()
    return Sample(
        key=raw["__key__"],
        audio=audio,
        sample_rate=rate,
        captions=captions,
        attributes=dict(attributes) if isinstance(attributes, Mapping) else {},
        meta=meta,
        url=url,
    )


def read_samples(
    urls: Any,
    *,
    handler: str = "skip",
    max_failure_rate: float | None = 0.1,
    counter: SkipCounter | None = None,
) -> Iterator[Sample]:
    """Every good sample of the shards, in order, single process, audio at each file's own rate.

    handler="skip" skips and counts bad samples (see SkipCounter; pass `counter` to read the
    counts afterwards); handler="raise" raises DataError at the first bad one.
    """
    if handler not in ("skip", "raise"):
        raise ValueError(f"handler must be 'skip' or 'raise', got {handler!r}")
    counter = counter if counter is not None else SkipCounter(max_failure_rate)
    for url in expand_urls(urls):
        counter.drain()
        for raw in iter_raw(url, counter):
            sample = decode_raw(raw, counter)
            if sample is not None:
                yield sample
            elif handler == "raise":
                raise DataError(f"bad sample {raw['__key__']!r} in {url}: {counter.drain()}")
        if handler == "raise" and counter.drain():
            raise DataError(f"bad shard {url}: {dict(counter.totals)}")  # open_error / corrupt_tar

