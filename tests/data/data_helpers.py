"""Small generated audio + shards for the data tests (tiny clips, written into tmp_path)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import soundfile as sf

from clsp.data.writer import ShardWriter


def tone(seconds: float = 0.5, rate: int = 16000, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate), dtype=np.float32) / rate
    wave = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return wave if channels == 1 else np.stack([wave] * channels, axis=1)


def encoded(audio: np.ndarray, rate: int, fmt: str = "FLAC", subtype: str | None = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, audio, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def write_shards(
    out_dir: Path,
    n: int,
    samples_per_shard: int,
    *,
    rate: int = 16000,
    seconds: float = 0.25,
    codec: str = "flac",
    with_long: bool = True,
) -> list[str]:
    """n samples id s0000.. with short (and long) captions; returns the shard paths."""
    with ShardWriter(out_dir, samples_per_shard=samples_per_shard, codec=codec) as writer:
        for i in range(n):
            meta = {
                "id": f"s{i:04d}",
                "source": "test",
                "captions": {"short": [f"short caption {i}"], "long": [f"long caption {i}"] if with_long else []},
                "attributes": {"gender": "female" if i % 2 else "male", "pitch": "high"},
            }
            writer.write(f"s{i:04d}", tone(seconds, rate, 200 + 10 * i), rate, meta)
    return sorted(str(p) for p in Path(out_dir).glob("*.tar"))


def write_raw_tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    """A tar with exactly these (name, bytes) members, in order."""
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def js(obj: object) -> bytes:
    return json.dumps(obj).encode()
