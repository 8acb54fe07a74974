"""Small generated audio + shards for the data tests (tiny clips, written into tmp_path)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import av
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


def write_container(path: Path, audio: np.ndarray, rate: int, codec: str, *, fmt: str | None = None,
                    video: bool = False) -> Path:
    """Encode float32 [T] / [T, C] audio with PyAV (e.g. "aac" in .m4a, "libopus" in .webm), optionally
    beside a small video stream (as a VGGSound .mp4 has)."""
    planar = np.ascontiguousarray(np.atleast_2d(audio.T if audio.ndim == 2 else audio), dtype=np.float32)
    layout = "mono" if planar.shape[0] == 1 else "stereo"
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=rate, layout=layout)
        if codec == "vorbis":  # FFmpeg's own Vorbis encoder is marked experimental
            stream.codec_context.options = {"strict": "experimental"}
        if codec.startswith("wma"):  # the WMA encoder has no default bit rate
            stream.bit_rate = 128000
        if video:
            picture = container.add_stream("mpeg4", rate=10)
            picture.width, picture.height, picture.pix_fmt = 64, 48, "yuv420p"
        for i in range(0, planar.shape[1], 4096):
            frame = av.AudioFrame.from_ndarray(planar[:, i : i + 4096], format="fltp", layout=layout)
            frame.sample_rate, frame.pts = rate, i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        if video:
            for k in range(int(planar.shape[1] / rate * 10)):
                image = av.VideoFrame.from_ndarray(np.full((48, 64, 3), k % 255, np.uint8), format="rgb24")
                image.pts = k
                container.mux(picture.encode(image))
            container.mux(picture.encode(None))
    return Path(path)
