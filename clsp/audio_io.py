"""Audio decode / resample / mono / encode with soundfile + soxr (no torchaudio, no ffmpeg).

Everything here works on numpy float32 arrays, so the shard writer and the reader workers do
not need torch. Decoding can read only a window of the file (`start`, `frames`), which is what
the training crop uses: a 10 s crop of a 5 min file decodes 10 s, not 5 min.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile as sf

# soundfile format + subtype per codec we write; 16-bit PCM is lossless for what datasets ship.
CODECS: dict[str, tuple[str, str | None]] = {
    "flac": ("FLAC", "PCM_16"),
    "wav": ("WAV", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}


class AudioDecodeError(ValueError):
    """The bytes or file could not be decoded as audio."""


def _open(src: bytes | str | Path | io.IOBase) -> sf.SoundFile:
    try:
        if isinstance(src, (bytes, bytearray, memoryview)):
            return sf.SoundFile(io.BytesIO(src))
        return sf.SoundFile(src)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        name = src if isinstance(src, (str, Path)) else f"{len(src)} bytes" if isinstance(src, bytes) else "stream"
        raise AudioDecodeError(f"cannot decode audio ({name}): {exc}") from exc


def audio_info(src: bytes | str | Path) -> tuple[int, int, int]:
    """(frames, sample_rate, channels) from the header only."""
    with _open(src) as f:
        return f.frames, f.samplerate, f.channels


def decode(
    src: bytes | str | Path,
    *,
    start: int = 0,
    frames: int = -1,
    mono: bool = True,
) -> tuple[np.ndarray, int]:
    """Decode `frames` frames from frame `start` (-1: to the end). Returns (float32 [T] or [T, C], rate)."""
    with _open(src) as f:
        try:
            if start:
                f.seek(start)
            data = f.read(frames, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
            raise AudioDecodeError(f"cannot decode audio: {exc}") from exc
        rate = f.samplerate
    return (to_mono(data) if mono else data), rate


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
    import soxr

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
    path: str | Path,
    *,
    sample_rate: int | None = None,
    offset_s: float = 0.0,
    duration_s: float | None = None,
) -> tuple[np.ndarray, int]:
    """Read a file (or a [offset, offset+duration] segment of it) as mono float32, resampled if asked."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"audio file not found: {path}")
    start, frames = 0, -1
    if offset_s or duration_s is not None:
        _, rate, _ = audio_info(path)
        start = int(round(offset_s * rate))
        frames = -1 if duration_s is None else int(round(duration_s * rate))
    audio, rate = decode(path, start=start, frames=frames)
    return resample(audio, rate, sample_rate), (sample_rate or rate)
