"""Audio decode / resample / mono / encode: libsndfile (soundfile) first, PyAV (FFmpeg) for the rest.

Everything here works on numpy float32 arrays, so the shard writer and the reader workers do
not need torch. libsndfile reads WAV/FLAC/AIFF/OGG/MP3 (any PCM width); whatever it cannot open
(AAC/ALAC in m4a/mp4/mov, Opus/Vorbis in webm/mkv, WMA, ...) is decoded by PyAV, whose wheels ship
FFmpeg's libraries, so there is no system ffmpeg and nothing to download. A video stream in the
container is never decoded. Decoding can read only a window of the file (`start`, `frames`), which
is what the training crop uses: a 10 s crop of a 10 min file decodes 10 s, not 10 min (libsndfile
seeks to the frame; PyAV seeks the container to just before it and decodes from there).
`audio_info` reads the header only (PyAV: the container's duration), never a decode.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import av
import numpy as np
import soundfile as sf
import soxr

T = TypeVar("T")

# soundfile format + subtype per codec we write; 16-bit PCM is lossless for what datasets ship.
CODECS: dict[str, tuple[str, str | None]] = {
    "flac": ("FLAC", "PCM_16"),
    "wav": ("WAV", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}
# Decoded before a PyAV seek target and dropped: AAC needs the previous frame's overlap and Opus
# about 80 ms to converge, so the window matches a decode from the start of the file.
SEEK_PREROLL_S = 0.2

Source = bytes | str | Path


class AudioDecodeError(ValueError):
    """The bytes or file could not be decoded as audio (by libsndfile nor by FFmpeg)."""


def _name(src: Source) -> str:
    return str(src) if isinstance(src, (str, Path)) else f"{len(src)} bytes"


def _sf_open(src: Source) -> sf.SoundFile:
    if isinstance(src, (bytes, bytearray, memoryview)):
        return sf.SoundFile(io.BytesIO(src))
    return sf.SoundFile(src)


def _with_fallback(
    src: Source, with_sf: Callable[[sf.SoundFile], T], with_av: Callable[[av.container.InputContainer], T]
) -> T:
    """`with_sf` on the file opened by libsndfile; where that fails, `with_av` on it opened by PyAV."""
    try:
        with _sf_open(src) as f:
            return with_sf(f)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as sf_exc:
        sf_reason = sf_exc
    try:
        with av.open(io.BytesIO(src) if isinstance(src, (bytes, bytearray, memoryview)) else str(src)) as container:
            return with_av(container)
    except (av.FFmpegError, ValueError, OSError) as av_exc:
        raise AudioDecodeError(
            f"cannot decode audio ({_name(src)}): libsndfile: {_reason(sf_reason)}; ffmpeg: {_reason(av_exc)}"
        ) from av_exc


def _reason(exc: BaseException) -> str:
    """The library's own words, without the stream's repr or the errno ("Format not recognised")."""
    text = getattr(exc, "error_string", None) or getattr(exc, "strerror", None) or str(exc)
    return " ".join(str(text).split()) or type(exc).__name__


def audio_info(src: Source) -> tuple[int, int, int]:
    """(frames, sample_rate, channels) from the header only (a container's duration, for PyAV)."""
    return _with_fallback(src, lambda f: (f.frames, f.samplerate, f.channels), _av_info)


def decode(
    src: Source,
    *,
    start: int = 0,
    frames: int = -1,
    mono: bool = True,
) -> tuple[np.ndarray, int]:
    """Decode `frames` frames from frame `start` (-1: to the end). Returns (float32 [T] or [T, C], rate)."""
    data, rate = _with_fallback(src, lambda f: _sf_read(f, start, frames), lambda c: _av_read(c, start, frames))
    return (to_mono(data) if mono else data), rate


def _sf_read(f: sf.SoundFile, start: int, frames: int) -> tuple[np.ndarray, int]:
    if start:
        f.seek(start)
    return f.read(frames, dtype="float32", always_2d=True), f.samplerate


# -- PyAV -----------------------------------------------------------------------------------------
def _audio_stream(container: av.container.InputContainer) -> av.audio.stream.AudioStream:
    if not container.streams.audio:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        raise ValueError(f"no audio stream (streams: {', '.join(kinds)})")
    return container.streams.audio[0]


def _header_frames(container: av.container.InputContainer, stream: av.audio.stream.AudioStream) -> int | None:
    """The stream's length in frames from the header: its own duration, else the container's (None: neither)."""
    if stream.duration:
        return round(stream.duration * stream.time_base * stream.rate)
    if container.duration:
        return round(container.duration * stream.rate / av.time_base)
    return None


def _av_info(container: av.container.InputContainer) -> tuple[int, int, int]:
    stream = _audio_stream(container)
    frames = _header_frames(container, stream)
    if frames is None:  # no duration in the header (a raw ADTS stream): packet durations, still no decode
        ticks = sum(p.duration or 0 for p in container.demux(stream))
        frames = round(ticks * stream.time_base * stream.rate)
    return frames, stream.rate, stream.channels


def _av_read(container: av.container.InputContainer, start: int, frames: int) -> tuple[np.ndarray, int]:
    """Frames [start, start + frames) as float32 [T, C]; seeks when the window starts past the pre-roll."""
    stream = _audio_stream(container)
    rate = stream.rate
    end = None if frames < 0 else start + frames
    if stream.duration:  # an exact length (an mp4 edit list): drop the encoder's padding after it
        exact = _header_frames(container, stream)
        end = exact if end is None else min(end, exact)
    preroll = round(SEEK_PREROLL_S * rate)
    seeked = start > preroll
    if seeked:
        ticks = round((start - preroll) / rate / stream.time_base)
        container.seek(ticks + (stream.start_time or 0), stream=stream, backward=True)
    chunks = _decode_span(container, stream, start, end, seeked)
    if chunks is None:  # the seek landed past the window, or frames carry no timestamps: from the start
        container.seek(0, stream=stream, backward=True)
        chunks = _decode_span(container, stream, start, end, False)
    data = np.concatenate(chunks) if chunks else np.zeros((0, stream.channels), np.float32)
    return data, rate


def _decode_span(
    container: av.container.InputContainer, stream: av.audio.stream.AudioStream, start: int, end: int | None,
    seeked: bool,
) -> list[np.ndarray] | None:
    """Decoded frames [start, end) as [n, C] float32 chunks, stopping at `end`.

    Without a seek the position counts from the first decoded sample, as a whole-file decode does;
    after one it comes from the first frame's timestamp (None: unknown, or already past `start`).
    """
    resampler = av.AudioResampler(format="flt")  # packed float32, keeping the stream's layout and rate
    pos = None if seeked else 0
    chunks = []
    for frame in container.decode(stream):
        if pos is None:
            if frame.pts is None:
                return None
            pos = round((frame.pts - (stream.start_time or 0)) * stream.time_base * stream.rate)
            if pos > start:
                return None
        for out in resampler.resample(frame):
            data = out.to_ndarray().reshape(-1, len(out.layout.channels))
            lo, hi = max(start - pos, 0), len(data) if end is None else min(end - pos, len(data))
            if hi > lo:
                chunks.append(data[lo:hi])
            pos += len(data)
        if end is not None and pos >= end:
            break
    return chunks


def to_mono(audio: np.ndarray) -> np.ndarray:
    """[T] or [T, C] -> [T] float32 (channel mean)."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        return audio
    if audio.ndim != 2:
        raise ValueError(f"audio must be 1-D [T] or 2-D [T, C], got shape {audio.shape}")
    if audio.shape[1] == 1:
        return audio[:, 0]
    return audio.mean(axis=1, dtype=np.float32)


def resample(audio: np.ndarray, rate: int, target: int | None, quality: str = "HQ") -> np.ndarray:
    """Resample a 1-D (or [T, C]) float32 array with soxr; no-op when the rates agree or target is None."""
    if target is None or rate == target or audio.shape[0] == 0:
        return audio

    return soxr.resample(audio, rate, target, quality=quality).astype(np.float32, copy=False)


def encode(audio: np.ndarray, sample_rate: int, codec: str = "flac") -> bytes:
    """Encode a float32 [T] / [T, C] array (clipped to [-1, 1]) to `codec` bytes."""
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}; choose from {sorted(CODECS)}")
    fmt, subtype = CODECS[codec]
    audio = np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0)
    buf = io.BytesIO()
    try:
        sf.write(buf, audio, sample_rate, format=fmt, subtype=subtype)
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        raise ValueError(f"cannot encode {codec} at {sample_rate} Hz: {exc}") from exc
    return buf.getvalue()


def load(
    src: str | Path | bytes,
    *,
    sample_rate: int | None = None,
    offset_s: float = 0.0,
    duration_s: float | None = None,
) -> tuple[np.ndarray, int]:
    """Read a file or encoded bytes (or a [offset, offset+duration] segment) as mono float32, resampled if asked."""
    if not isinstance(src, (bytes, bytearray, memoryview)):
        src = Path(src)
        if not src.is_file():
            raise FileNotFoundError(f"audio file not found: {src}")
    start, frames = 0, -1
    if offset_s or duration_s is not None:
        _, rate, _ = audio_info(src)
        start = int(round(offset_s * rate))
        frames = -1 if duration_s is None else int(round(duration_s * rate))
    audio, rate = decode(src, start=start, frames=frames)
    return resample(audio, rate, sample_rate), (sample_rate or rate)
