"""Audio as corpora ship it: PyAV decodes what libsndfile cannot (m4a, mp4 with video, webm, ...), by
path and by bytes, seeking for a window, with the length from the header; shards, the reader and
`encode_audio` all read it."""

from __future__ import annotations

import csv
import json

import av
import numpy as np
import pytest
import soundfile as sf
from data_helpers import js, tone, write_container, write_raw_tar

from clsp import audio_io
from clsp.data.samples import probe_seconds, read_samples
from clsp.data.skips import SkipCounter
from clsp.data.tar import iter_raw
from clsp.shards import main

# name, codec, container format, rate, channels, seconds
FORMATS = [
    ("aac.m4a", "aac", None, 44100, 1, 1.5),
    ("aac_video.mp4", "aac", None, 48000, 2, 1.2),
    ("opus.webm", "libopus", None, 48000, 1, 1.0),
    ("vorbis.mkv", "vorbis", "matroska", 44100, 2, 1.0),
    ("alac.mov", "alac", None, 44100, 1, 0.8),
    ("wma.wma", "wmav2", "asf", 44100, 2, 1.2),
    ("mp3.mp3", "libmp3lame", None, 44100, 1, 1.0),
    ("pcm.aiff", "pcm_s16be", "aiff", 22050, 1, 0.5),
    ("u8.wav", "pcm_u8", None, 22050, 1, 0.5),
    ("s24.wav", "pcm_s24le", None, 22050, 2, 0.5),
    ("s32.wav", "pcm_s32le", None, 22050, 1, 0.5),
]


def _peak_hz(wave: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.argmax(spectrum) * rate / len(wave))


@pytest.mark.parametrize("name,codec,fmt,rate,channels,seconds", FORMATS)
def test_decodes_every_format(tmp_path, name, codec, fmt, rate, channels, seconds):
    path = write_container(tmp_path / name, tone(seconds, rate, 440.0, channels), rate, codec, fmt=fmt,
                           video=name.endswith(".mp4"))  # fmt: skip
    frames, info_rate, info_channels = audio_io.audio_info(path)
    assert (info_rate, info_channels) == (rate, channels)
    assert abs(frames / rate - seconds) < 0.06
    wave, got_rate = audio_io.decode(path)
    assert got_rate == rate and wave.dtype == np.float32 and wave.ndim == 1
    assert abs(len(wave) / rate - seconds) < 0.06
    assert abs(_peak_hz(wave, rate) - 440.0) < 5.0 and 0.2 < np.abs(wave).max() < 0.4
    from_bytes, _ = audio_io.decode(path.read_bytes(), mono=False)
    assert from_bytes.shape == (len(wave), channels)
    np.testing.assert_allclose(audio_io.to_mono(from_bytes), wave, atol=1e-6)


class _CountingResampler:
    """Stands in for av.AudioResampler to count the samples PyAV decodes."""

    decoded = 0
    real = av.AudioResampler

    def __init__(self, **kwargs):
        self._inner = self.real(**kwargs)

    def resample(self, frame):
        _CountingResampler.decoded += frame.samples
        return self._inner.resample(frame)


@pytest.mark.parametrize("name,codec,exact", [("long.m4a", "aac", True), ("long.webm", "libopus", False)])
def test_window_seeks_instead_of_decoding_the_file(tmp_path, monkeypatch, name, codec, exact):
    rate = 48000
    t = np.arange(60 * rate, dtype=np.float32) / rate
    wave = (0.3 * np.sin(2 * np.pi * (200 + 5 * t) * t)).astype(np.float32)  # a chirp: every window differs
    path = write_container(tmp_path / name, wave, rate, codec)
    full, _ = audio_io.decode(path)
    monkeypatch.setattr(audio_io.av, "AudioResampler", _CountingResampler)
    _CountingResampler.decoded = 0
    assert audio_io.audio_info(path)[0] == pytest.approx(60 * rate, abs=0.06 * rate)
    assert _CountingResampler.decoded == 0  # the length comes from the header
    start, frames = 40 * rate + 123, 2 * rate
    window, _ = audio_io.decode(path, start=start, frames=frames)
    assert len(window) == frames
    # mp4: the window and the pre-roll; Matroska seeks to the cluster before it (FFmpeg's muxer: ~5 s
    # apart). Either is far from the 40 s before the window a decode from the start would cost.
    assert _CountingResampler.decoded < frames + (0.5 if exact else 6.0) * rate
    if exact:  # mp4 timestamps count samples: the window is the full decode's, sample for sample
        np.testing.assert_allclose(window, full[start : start + frames], atol=1e-4)
    else:  # Matroska timestamps count milliseconds: the window lands within one of them
        errors = [np.abs(window - full[start + k : start + k + frames]).max() for k in range(-96, 97)]
        assert min(errors) < 1e-2 and abs(int(np.argmin(errors)) - 96) <= 96


def test_unreadable_audio_is_one_error(tmp_path):
    with pytest.raises(audio_io.AudioDecodeError, match="libsndfile: .*; ffmpeg: "):
        audio_io.decode(b"not audio at all" * 64)
    m4a = write_container(tmp_path / "a.m4a", tone(1.0, 16000), 16000, "aac")
    (tmp_path / "cut.m4a").write_bytes(m4a.read_bytes()[:200])
    with pytest.raises(audio_io.AudioDecodeError, match="cut.m4a"):
        audio_io.audio_info(tmp_path / "cut.m4a")
    sf.write(tmp_path / "x.wav", tone(0.1, 16000), 16000)
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(audio_io.AudioDecodeError):
        audio_io.decode(tmp_path / "x.txt")


def test_reader_decodes_container_bytes_in_shards(tmp_path):
    webm = write_container(tmp_path / "a.webm", tone(1.0, 48000), 48000, "libopus").read_bytes()
    meta = js({"captions": {"short": ["a tone"]}})
    shard = write_raw_tar(tmp_path / "s.tar", [("k1.webm", webm), ("k1.json", meta)])
    raw = next(iter_raw(str(shard), SkipCounter(None)))
    assert probe_seconds(raw) == pytest.approx(1.0, abs=0.06)
    (sample,) = read_samples(str(shard))
    assert sample.sample_rate == 48000 and abs(len(sample.audio) / 48000 - 1.0) < 0.06


def test_shards_table_and_encode_audio_read_m4a_mp4_webm(tmp_path):
    clips = {"a.m4a": ("aac", 44100, 1, 1.5, False), "b.mp4": ("aac", 48000, 2, 2.0, True),
             "c.webm": ("libopus", 48000, 1, 2.5, False)}  # fmt: skip
    for name, (codec, rate, channels, seconds, video) in clips.items():
        write_container(tmp_path / name, tone(seconds, rate, 330.0, channels), rate, codec, video=video)
    with open(tmp_path / "t.csv", "w", newline="") as f:
        csv.writer(f).writerows([("audio", "caption"), *[(n, f"clip {n}") for n in clips]])
    out = tmp_path / "out"
    assert main(["table", str(tmp_path / "t.csv"), "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["written"] == 3 and report["skipped"] == {}
    got = {s.meta["id"]: s for s in read_samples(str(out))}
    for name, (_, rate, _, seconds, _) in clips.items():
        sample = got[name.split(".")[0]]
        assert sample.sample_rate == rate and abs(len(sample.audio) / rate - seconds) < 0.06, name
        assert abs(sample.meta["duration"] - seconds) < 0.06

    from clsp.config import CLSPConfig
    from clsp.model import CLSPModel

    model = CLSPModel(CLSPConfig.tiny("whisper")).eval()
    embeds = model.encode_audio([str(tmp_path / n) for n in clips])
    assert embeds.shape[0] == 3 and bool(embeds.isfinite().all())
