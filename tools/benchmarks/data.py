"""Data pipeline benchmarks: decode/resample/crop throughput per worker, container seeking, shard writing throughput."""

from __future__ import annotations

import contextlib
import csv
import io
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from benchmarks.common import interleaved


def _noise_clip(seconds: float, rate: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate), dtype=np.float32) / rate
    return (0.2 * np.sin(2 * np.pi * (200 + seed) * t) + 0.05 * rng.standard_normal(t.shape)).astype(np.float32)


def _write_corpus(folder: Path, n: int, seconds: float, rate: int) -> list[str]:
    from clsp.data.writer import ShardWriter

    with ShardWriter(folder, samples_per_shard=n) as writer:
        for i in range(n):
            writer.write(f"c{i}", _noise_clip(seconds, rate, i), rate, {"text": f"clip {i}"})
    return sorted(str(p) for p in folder.glob("*.tar"))


def data_decode() -> None:
    """Samples/s of one worker (in-process): clsp decode+resample+crop+collate vs the same + a HF feature extractor."""
    from transformers import ClapFeatureExtractor, WhisperFeatureExtractor

    from clsp.data.dataset import build_dataloader
    from clsp.tiny import tiny_tokenizer

    tok = tiny_tokenizer()
    cases = [
        ("10 s 48 kHz FLAC -> 48 kHz, 10 s crop", 10.0, 48000, 48000, 10.0, ClapFeatureExtractor()),
        ("5 s 16 kHz FLAC speech -> 16 kHz", 5.0, 16000, 16000, 10.0, WhisperFeatureExtractor()),
        ("5 s 24 kHz FLAC speech -> 16 kHz", 5.0, 24000, 16000, 10.0, WhisperFeatureExtractor()),
    ]
    n, batch = 32, 8
    with tempfile.TemporaryDirectory() as tmp:
        for label, seconds, file_rate, rate, max_s, extractor in cases:
            urls = _write_corpus(Path(tmp) / f"{file_rate}_{seconds}", n, seconds, file_rate)
            loader = build_dataloader(urls, tokenizer=tok, sample_rate=rate, max_seconds=max_s, batch_size=batch,
                                      num_workers=0, shuffle_buffer=0)  # fmt: skip

            def clsp_only(loader=loader):
                for _ in loader:
                    pass

            def with_extractor(loader=loader, extractor=extractor, rate=rate):
                for b in loader:
                    waves = [w[:n].numpy() for w, n in zip(b.audio, b.audio_lengths.tolist())]
                    extractor(waves, sampling_rate=rate, return_tensors="pt")

            t_clsp, t_base = interleaved(clsp_only, with_extractor, repeats=3)
            print(f"   {label}: clsp {n / t_clsp:.1f} samples/s  "
                  f"+{type(extractor).__name__} in the worker {n / t_base:.1f} samples/s  "
                  f"ratio {t_base / t_clsp:.2f}x")  # fmt: skip


def _naive_write(rows: list[dict], out: Path) -> None:
    """Baseline: a single-process loop with webdataset's ShardWriter, soundfile read + FLAC encode."""
    import webdataset as wds

    out.mkdir(parents=True, exist_ok=True)
    with wds.ShardWriter(str(out / "shard-%06d.tar"), maxcount=1000, verbose=0) as sink:
        for row in rows:
            audio, rate = sf.read(row["path"], dtype="float32")
            buf = io.BytesIO()
            sf.write(buf, audio, rate, format="FLAC", subtype="PCM_16")
            sink.write({"__key__": Path(row["path"]).stem, "flac": buf.getvalue(), "json": {"text": row["caption"]}})


def shards_write() -> None:
    """clips/s of `python -m clsp.shards table` (10 s 48 kHz WAV -> FLAC) with 1 and 2 workers vs a naive loop."""
    n = 48
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rows = []
        for i in range(n):
            path = tmp / f"c{i}.wav"
            sf.write(path, _noise_clip(10.0, 48000, i), 48000, subtype="PCM_16")
            rows.append({"path": str(path), "caption": f"clip {i}"})
        table = tmp / "t.csv"
        with table.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["path", "caption"])
            w.writeheader()
            w.writerows(rows)
        start = time.perf_counter()
        _naive_write(rows, tmp / "naive")
        t_base = time.perf_counter() - start
        from clsp.shards import main

        for workers in (1, 2):
            argv = ["table", str(table), "--out", str(tmp / f"out{workers}"), "--samples-per-shard", "12",
                    "--workers", str(workers)]  # fmt: skip
            start = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                main(argv)
            t = time.perf_counter() - start
            print(f"   {workers} worker(s): clsp {n / t:.1f} clips/s  naive wds loop (1 process) {n / t_base:.1f} "
                  f"clips/s  ratio {t_base / t:.2f}x")  # fmt: skip

def _m4a(seconds: float, rate: int) -> bytes:
    """AAC in an .m4a, encoded with PyAV (as yt-dlp ships AudioSet/VGGSound clips)."""
    import av

    wave = _noise_clip(seconds, rate, 0)[None]
    buf = io.BytesIO()
    with av.open(buf, "w", format="ipod") as container:
        stream = container.add_stream("aac", rate=rate, layout="mono")
        for i in range(0, wave.shape[1], 1 << 16):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave[:, i : i + (1 << 16)]), format="fltp",
                                               layout="mono")  # fmt: skip
            frame.sample_rate, frame.pts = rate, i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buf.getvalue()


def decode_container() -> None:
    """A random 10 s crop of a 10-minute 48 kHz AAC .m4a (bytes, as in a shard, and a file): the reader's
    windowed decode (PyAV seeks) vs decoding the whole file and cropping it."""
    import random

    from clsp import audio_io
    from clsp.data.samples import decode_window

    rate = 48000
    data = _m4a(600.0, rate)
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "long.m4a"
        path.write_bytes(data)
        for label, src in (("bytes", data), ("file", path)):
            def seek(src=src):
                start = rng.randrange(590 * rate)
                audio_io.decode(src, start=start, frames=10 * rate)

            def whole(src=src):
                start = rng.randrange(590 * rate)
                audio_io.decode(src)[0][start : start + 10 * rate]

            t_seek, t_whole = interleaved(seek, whole, repeats=3)
            print(f"   10 s of a 10 min m4a ({label}): seek {t_seek * 1000:.1f} ms  whole file {t_whole * 1000:.0f} ms  "
                  f"ratio {t_whole / t_seek:.1f}x")  # fmt: skip
        crops = [decode_window(data, max_seconds=10.0, crop="random", rng=rng)[0].shape[0] for _ in range(3)]
        print(f"   reader decode_window crops: {crops} samples (10 s at {rate} Hz)")


BENCHMARKS = {"data_decode": data_decode, "decode_container": decode_container, "shards_write": shards_write}
