"""The sample JSON schema of clsp shards and normalisation of the caption formats we accept.

A shard sample is `<key>.<audio ext>` + `<key>.json`; the canonical json is

    {"id": "YTID_30_40", "source": "fusionaudio", "duration": 10.0,
     "captions": {"short": ["..."], "long": ["..."]},
     "attributes": {"gender": "female", ...}, "transcript": "...", "qa": [{"q": "...", "a": "..."}]}

Only audio and at least one caption are required. Other caption layouts are mapped onto
{"short": [...], "long": [...]} by `normalize_captions`, always the same way:

- `captions` as a dict: its "short"/"long" entries (a string or a list each); also "global" -> short and
  "fine"/"fine_grained"/"detailed" -> long, as written by some tools.
- `captions` as a string or list (AudioCaps/Clotho style): short.
- LAION-CLAP `text` (string or list) and `caption`: short. LAION-CLAP captions are one-sentence,
  global descriptions (AudioCaps, Clotho, WavCaps), which is what "short" means here.
- ParaSpeechCaps-style `short_captions` / `long_captions` lists: short / long.

Strings are stripped; empty strings and exact duplicates are dropped; order is kept.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

# Shard members read as audio: what clsp writes, and containers other tools put in shards (decoded by PyAV).
AUDIO_EXTENSIONS: tuple[str, ...] = (
    "flac", "wav", "mp3", "ogg", "opus", "m4a", "mp4", "webm", "mka", "mkv", "mov", "aac", "wma", "aiff", "aif",
)  # fmt: skip
CAPTION_KINDS: tuple[str, str] = ("short", "long")

# (json field, caption kind) pairs read by normalize_captions besides the `captions` dict.
_FLAT_FIELDS: tuple[tuple[str, str], ...] = (
    ("text", "short"),
    ("caption", "short"),
    ("short_captions", "short"),
    ("long_captions", "long"),
)
_DICT_ALIASES: dict[str, str] = {
    "short": "short",
    "global": "short",
    "long": "long",
    "fine": "long",
    "fine_grained": "long",
    "detailed": "long",
}
_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9_\-]+")


class CaptionError(ValueError):
    """A sample has no caption field (`reason == "no_caption"`) or only empty ones ("empty_caption")."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, Iterable) and not isinstance(value, (bytes, Mapping)):
        return [v for v in value if isinstance(v, str)]
    return []


def _clean(texts: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for text in texts:
        text = " ".join(text.split())  # collapse newlines/tabs, strip
        if text and text not in seen:
            seen.add(text)
            out.append(text)
    return out


def normalize_captions(meta: Mapping[str, Any]) -> dict[str, list[str]]:
    """{"short": [...], "long": [...]} from any accepted layout (see the module doc); may be empty lists."""
    found: dict[str, list[str]] = {"short": [], "long": []}
    captions = meta.get("captions")
    if isinstance(captions, Mapping):
        for name, value in captions.items():
            kind = _DICT_ALIASES.get(str(name).lower())
            if kind is not None:
                found[kind].extend(_as_list(value))
    else:
        found["short"].extend(_as_list(captions))
    for field_name, kind in _FLAT_FIELDS:
        found[kind].extend(_as_list(meta.get(field_name)))
    return {kind: _clean(texts) for kind, texts in found.items()}


def has_caption_field(meta: Mapping[str, Any]) -> bool:
    """Whether the json names any caption field at all (as opposed to naming only empty ones)."""
    return "captions" in meta or any(name in meta for name, _ in _FLAT_FIELDS)


def require_captions(meta: Mapping[str, Any]) -> dict[str, list[str]]:
    """normalize_captions, raising CaptionError("no_caption"/"empty_caption") when nothing usable is left."""
    captions = normalize_captions(meta)
    if not captions["short"] and not captions["long"]:
        if has_caption_field(meta):
            raise CaptionError("empty_caption", f"sample {meta.get('id', '?')!r} has only empty captions")
        raise CaptionError("no_caption", f"sample {meta.get('id', '?')!r} has no caption field")
    return captions


def make_meta(
    id: str,
    *,
    source: str,
    short: Iterable[str] | str | None = None,
    long: Iterable[str] | str | None = None,
    duration: float | None = None,
    attributes: Mapping[str, Any] | None = None,
    transcript: str | None = None,
    qa: Iterable[Mapping[str, str]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A canonical sample json; empty optional fields are left out. Raises CaptionError with no caption."""
    meta: dict[str, Any] = {
        "id": str(id),
        "source": source,
        "captions": {"short": _clean(_as_list(short)), "long": _clean(_as_list(long))},
    }
    if duration is not None:
        meta["duration"] = round(float(duration), 4)
    attrs = {str(k): v for k, v in (attributes or {}).items() if v not in (None, "", [])}
    if attrs:
        meta["attributes"] = attrs
    if transcript:
        meta["transcript"] = str(transcript)
    qa_list = [dict(item) for item in (qa or [])]
    if qa_list:
        meta["qa"] = qa_list
    meta.update({k: v for k, v in extra.items() if v is not None})
    if not meta["captions"]["short"] and not meta["captions"]["long"]:
        given = _as_list(short) + _as_list(long)
        reason = "empty_caption" if given else "no_caption"
        raise CaptionError(reason, f"sample {meta['id']!r}: " + ("only empty captions" if given else "no caption"))
    return meta


def canonical_meta(meta: Mapping[str, Any], *, source: str | None = None) -> dict[str, Any]:
    """Rewrite any accepted json (e.g. LAION-CLAP's {"text": ...}) into the canonical layout."""
    captions = require_captions(meta)
    out = {k: v for k, v in meta.items() if k not in {"captions", *(name for name, _ in _FLAT_FIELDS)}}
    out["captions"] = captions
    if source is not None:
        out.setdefault("source", source)
    return out


def sanitize_key(identifier: str) -> str:
    """A tar- and WebDataset-safe key: webdataset splits a member name at its first dot, so no dots,
    no slashes, nothing but [A-Za-z0-9_-]. Raises ValueError when nothing is left."""
    key = _UNSAFE_KEY_CHARS.sub("_", str(identifier)).strip("_")
    if not key:
        raise ValueError(f"cannot make a shard key from id {identifier!r}")
    return key


class KeyAllocator:
    """Hands out unique sanitised keys: a clash gets `_1`, `_2`, ... appended."""

    def __init__(self) -> None:
        self._used: set[str] = set()

    def __call__(self, identifier: str) -> str:
        base = sanitize_key(identifier)
        key, n = base, 0
        while key in self._used:
            n += 1
            key = f"{base}_{n}"
        self._used.add(key)
        return key

    def __contains__(self, key: str) -> bool:
        return key in self._used


def cell_texts(value: Any) -> list[str]:
    """Captions from a table cell: a string, a list, or a JSON-encoded list in a CSV cell.

    Texts are stripped and empty ones dropped (an empty cell is a missing caption).
    """
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if not (text.startswith("[") and text.endswith("]")):
            return [text] if text else []
        try:
            value = json.loads(text)
        except ValueError:
            return [text]
        if not isinstance(value, list):
            return [text]
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if v is not None and str(v).strip()]
    text = str(value).strip()
    return [text] if text else []
