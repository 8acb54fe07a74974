"""Sample schema normalisation, keys, and audio codecs through the ShardWriter."""

from __future__ import annotations

import json
import tarfile

import numpy as np
import pytest
import soundfile as sf
from data_helpers import tone

from clsp import audio_io
from clsp.data.samples import read_samples
from clsp.data.schema import CaptionError, KeyAllocator, normalize_captions, require_captions, sanitize_key
from clsp.data.writer import ShardWriter, read_sizes


def test_normalize_captions_all_layouts():
    assert normalize_captions({"captions": {"short": "a dog", "long": ["x y", " x  y ", ""]}}) == {
        "short": ["a dog"],
        "long": ["x y"],
    }
    # LAION-CLAP: text (string or list) and caption -> short
    assert normalize_captions({"text": ["one", "two"], "caption": "three"})["short"] == ["one", "two", "three"]
    assert normalize_captions({"text": "rain"}) == {"short": ["rain"], "long": []}
    assert normalize_captions({"short_captions": ["s"], "long_captions": ["l"]}) == {"short": ["s"], "long": ["l"]}
    assert normalize_captions({"captions": ["c1", "c2"]})["short"] == ["c1", "c2"]


def test_require_captions_reasons():
    with pytest.raises(CaptionError) as err:
        require_captions({"id": "a"})
    assert err.value.reason == "no_caption"
    with pytest.raises(CaptionError) as err:
        require_captions({"id": "a", "captions": {"short": ["  "], "long": []}})
    assert err.value.reason == "empty_caption"


def test_keys_are_sanitised_and_unique():
    assert sanitize_key("Y--abc_1.5_11.5.wav") == "Y--abc_1_5_11_5_wav"
    alloc = KeyAllocator()
    assert [alloc("a.b"), alloc("a_b"), alloc("a/b")] == ["a_b", "a_b_1", "a_b_2"]
    with pytest.raises(ValueError, match="key"):
        sanitize_key("...")


@pytest.mark.parametrize("codec", ["flac", "wav", "ogg", "mp3"])
def test_writer_codecs_round_trip(tmp_path, codec):
    if codec == "mp3" and "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile cannot write MP3")
    rate = 16000 if codec != "mp3" else 24000
    audio = tone(0.5, rate, channels=2)  # stereo in -> mono out
    with ShardWriter(tmp_path, samples_per_shard=2, codec=codec) as w:
        for i in range(3):
            w.write(f"clip.{i}", audio, rate, {"id": f"clip.{i}", "text": f"tone {i}"})
    assert read_sizes(tmp_path) == {"shard-000000.tar": 2, "shard-000001.tar": 1}
    assert not list(tmp_path.glob("*.tmp"))
    with tarfile.open(tmp_path / "shard-000000.tar") as tar:
        assert tar.getnames() == [f"clip_0.{codec}", "clip_0.json", f"clip_1.{codec}", "clip_1.json"]
    samples = list(read_samples(str(tmp_path / "shard-{000000..000001}.tar")))
    assert [s.meta["id"] for s in samples] == ["clip.0", "clip.1", "clip.2"]
    s = samples[0]
    assert s.audio.ndim == 1 and s.sample_rate == rate and s.captions["short"] == ["tone 0"]
    assert s.meta["duration"] == pytest.approx(0.5, abs=0.01)
    n = min(len(s.audio), len(audio))
    tol = 1e-3 if codec in ("flac", "wav") else 0.2  # lossy codecs: only roughly the same wave
    err = np.abs(s.audio[:n] - audio[:n, 0])
    assert (err.max() if codec in ("flac", "wav") else err.mean()) < tol


def test_writer_resamples_and_rejects_bad_audio(tmp_path):
    with ShardWriter(tmp_path, sample_rate=8000) as w:
        w.write("a", tone(1.0, 16000), 16000, {"captions": {"short": ["x"]}})
        with pytest.raises(ValueError, match="NaN"):
            w.write("b", np.full(100, np.nan, np.float32), 16000, {"text": "x"})
        with pytest.raises(ValueError, match="empty"):
            w.write("c", np.zeros(0, np.float32), 16000, {"text": "x"})
        with pytest.raises(CaptionError):
            w.write("d", tone(0.1), 16000, {"id": "d"})
    (sample,) = read_samples(str(tmp_path / "shard-000000.tar"))
    assert sample.sample_rate == 8000 and len(sample.audio) == 8000
    assert json.loads((tmp_path / "sizes.json").read_text()) == {"shard-000000.tar": 1}


def test_audio_io_segment_and_mono(tmp_path):
    path = tmp_path / "x.wav"
    sf.write(path, tone(1.0, 16000, channels=2), 16000)
    audio, rate = audio_io.load(path, offset_s=0.25, duration_s=0.5)
    assert rate == 16000 and audio.shape == (8000,)
    audio, rate = audio_io.load(path, sample_rate=8000)
    assert rate == 8000 and audio.shape == (8000,)
    with pytest.raises(FileNotFoundError, match="missing"):
        audio_io.load(tmp_path / "missing.wav")
    with pytest.raises(audio_io.AudioDecodeError):
        audio_io.decode(b"not audio at all")


def test_cell_texts_reads_strings_lists_and_json_lists():
    from clsp.data.schema import cell_texts

    assert cell_texts(None) == [] and cell_texts("   ") == []
    assert cell_texts(" a dog barks ") == ["a dog barks"]
    assert cell_texts('["one", " two ", ""]') == ["one", "two"]
    assert cell_texts("[not json") == ["[not json"]
    assert cell_texts(("x", None, " ")) == ["x"]
    assert cell_texts(3) == ["3"]
