"""Raw tar samples -> decoded `Sample`s: JSON, captions, a window of audio, resampling, skip reasons.

The audio header is parsed once per sample (`audio_header`, kept in the raw dict): bucketing sorts
by the duration it gives, and the decode reads only the window it picks. Only the window is decoded:
a 10 s crop of a 5 min file decodes 10 s.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from clsp import audio_io
from clsp.data.schema import AUDIO_EXTENSIONS, CaptionError, require_captions
from clsp.data.skips import DataError, SkipCounter
from clsp.data.tar import iter_raw
from clsp.data.urls import expand_urls

CROPS = ("random", "start", "none")
_HEADER = "__header__"  # raw-dict key of the parsed header: (frames, rate, channels), or None if unreadable


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


def _audio_field(raw: Mapping[str, Any]) -> tuple[str, bytes] | None:
    for ext, value in raw.items():
        if not ext.startswith("__") and ext.rsplit(".", 1)[-1] in AUDIO_EXTENSIONS:
            return ext, value
    return None


def audio_header(raw: dict[str, Any]) -> tuple[int, int, int] | None:
    """(frames, rate, channels) of a raw sample's audio, parsed once and kept in `raw`; None if unreadable."""
    if _HEADER not in raw:
        found = _audio_field(raw)
        try:
            raw[_HEADER] = None if found is None else audio_io.audio_info(found[1])
        except audio_io.AudioDecodeError:
            raw[_HEADER] = None
    return raw[_HEADER]


def probe_seconds(raw: dict[str, Any], max_seconds: float | None = None) -> float:
    """Duration of a raw sample's audio from its header (capped at max_seconds); 0.0 when unreadable.

    What duration bucketing sorts by: a header parse, not a decode. An unreadable sample gets 0.0 and
    is counted (by reason) when it is decoded.
    """
    header = audio_header(raw)
    if header is None or header[1] <= 0:
        return 0.0
    seconds = header[0] / header[1]
    return min(seconds, max_seconds) if max_seconds is not None else seconds


def _window(total: int, rate: int, max_seconds: float | None, crop: str, rng: random.Random | None) -> tuple[int, int]:
    """(start, frames) of the window to decode: crop="random" a uniformly random window of max_seconds,
    "start" and "none" the first max_seconds (max_seconds=None: the whole file, frames=-1)."""
    if max_seconds is None:
        return 0, -1
    frames = max(1, math.ceil(max_seconds * rate))
    start = (rng or random).randrange(total - frames + 1) if crop == "random" and total > frames else 0
    return start, frames


def decode_window(data: bytes, *, max_seconds: float | None = None, crop: str = "start",
                  rng: random.Random | None = None, header: tuple[int, int, int] | None = None,
                  ) -> tuple[np.ndarray, int]:
    """Decode (a window of) encoded audio to mono float32 at the file's rate; only the window is decoded.

    `header` (frames, rate, channels), when the caller has parsed it already, saves a second parse."""
    total, rate, _ = header or audio_io.audio_info(data)
    start, frames = _window(total, rate, max_seconds, crop, rng)
    return audio_io.decode(data, start=start, frames=frames)


def decode_raw(
    raw: dict[str, Any],
    counter: SkipCounter,
    *,
    sample_rate: int | None = None,
    max_seconds: float | None = None,
    crop: str = "start",
    rng: random.Random | None = None,
) -> Sample | None:
    """A Sample from a raw tar group, or None (counted in `counter` by reason) when it is unusable."""
    if crop not in CROPS:
        raise ValueError(f"crop must be one of {CROPS}, got {crop!r}")
    url = raw.get("__url__", "")
    meta = _meta(raw, counter, url)
    if meta is None:
        return None
    try:
        captions = require_captions(meta)
    except CaptionError as exc:
        counter.skip(exc.reason, url)
        return None
    audio, rate = _decode(raw, counter, url, max_seconds, crop, rng)
    if audio is None:
        return None
    if sample_rate is not None and rate != sample_rate:
        audio = audio_io.resample(audio, rate, sample_rate)
        if max_seconds is not None:
            audio = audio[: int(round(max_seconds * sample_rate))]  # the ceil of the window may add one sample
        rate = sample_rate
    attributes = meta.get("attributes")
    counter.ok()
    return Sample(key=raw["__key__"], audio=audio, sample_rate=rate, captions=captions,
                  attributes=dict(attributes) if isinstance(attributes, Mapping) else {}, meta=meta, url=url)


def _meta(raw: Mapping[str, Any], counter: SkipCounter, url: str) -> dict | None:
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
    return meta


def _decode(raw: dict[str, Any], counter: SkipCounter, url: str, max_seconds: float | None, crop: str,
            rng: random.Random | None) -> tuple[np.ndarray | None, int]:
    """(mono float32 window, rate), or (None, 0) counted by reason."""
    found = _audio_field(raw)
    if found is None:
        counter.skip("no_audio", url)
        return None, 0
    header = audio_header(raw)
    if header is None:
        counter.skip("decode_error", url)
        return None, 0
    try:
        audio, rate = decode_window(found[1], max_seconds=max_seconds, crop=crop, rng=rng, header=header)
    except audio_io.AudioDecodeError:
        counter.skip("decode_error", url)
        return None, 0
    if audio.size == 0:
        counter.skip("empty_audio", url)
        return None, 0
    if not np.isfinite(audio).all():
        counter.skip("nan_audio", url)
        return None, 0
    return audio, rate


def read_samples(
    urls: Any,
    *,
    handler: str = "skip",
    max_failure_rate: float | None = 0.1,
    counter: SkipCounter | None = None,
    sample_rate: int | None = None,
) -> Iterator[Sample]:
    """Every good sample of the shards, in order, single process, audio at each file's own rate
    (or resampled to `sample_rate`).

    handler="skip" skips and counts bad samples (see SkipCounter; pass `counter` to read the
    counts afterwards); handler="raise" raises DataError at the first bad one.
    """
    if handler not in ("skip", "raise"):
        raise ValueError(f"handler must be 'skip' or 'raise', got {handler!r}")
    counter = counter if counter is not None else SkipCounter(max_failure_rate)
    for url in expand_urls(urls):
        counter.drain()
        for raw in iter_raw(url, counter):
            sample = decode_raw(raw, counter, sample_rate=sample_rate)
            if sample is not None:
                yield sample
            elif handler == "raise":
                raise DataError(f"bad sample {raw['__key__']!r} in {url}: {counter.drain()}")
        if handler == "raise" and counter.drain():
            raise DataError(f"bad shard {url}: {dict(counter.totals)}")  # open_error / corrupt_tar
