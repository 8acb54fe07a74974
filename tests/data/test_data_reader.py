"""Reading shards: URL specs, LAION-style shards, bad samples skipped and counted, failure-rate stop."""

from __future__ import annotations

import numpy as np
import pytest
from data_helpers import encoded, js, tone, write_raw_tar, write_shards

from clsp.data.samples import read_samples
from clsp.data.skips import DataError, SkipCounter
from clsp.data.urls import expand_urls, parse_sources, shard_sizes


def test_url_specs(tmp_path):
    urls = write_shards(tmp_path, 6, 2)
    assert expand_urls(str(tmp_path / "shard-{000000..000002}.tar")) == urls
    assert expand_urls(str(tmp_path)) == urls
    assert expand_urls(f"{urls[0]}::{urls[2]}") == [urls[0], urls[2]]
    assert expand_urls([urls[1], str(tmp_path / "shard-00000[02].tar")]) == [urls[1], urls[0], urls[2]]
    assert expand_urls("pipe:cat x.tar") == ["pipe:cat x.tar"]
    with pytest.raises(FileNotFoundError, match=r"train-\{0000..0003\}"):
        expand_urls(str(tmp_path / "train-{0000..0003}.tar"))
    with pytest.raises(FileNotFoundError, match="1 of 4"):
        expand_urls(str(tmp_path / "shard-{000000..000003}.tar"))
    sources = parse_sources([{"urls": urls[:1], "weight": 3}, {"urls": urls[1:]}])
    assert [(len(s.urls), s.weight) for s in sources] == [(1, 3.0), (2, 1.0)]
    assert shard_sizes(urls) == dict(zip(urls, [2, 2, 2]))


def test_read_samples_order_and_pipe(tmp_path):
    urls = write_shards(tmp_path, 5, 2)
    keys = [s.key for s in read_samples(urls)]
    assert keys == [f"s{i:04d}" for i in range(5)]
    piped = list(read_samples(f"pipe:cat {urls[0]}"))
    assert [s.key for s in piped] == ["s0000", "s0001"] and piped[0].url == f"pipe:cat {urls[0]}"
    s = piped[1]
    assert s.audio.dtype == np.float32 and s.sample_rate == 16000 and s.attributes["gender"] == "female"


def test_laion_style_shards_read_unchanged(tmp_path):
    flac = encoded(tone(0.3, 48000), 48000)
    wav = encoded(tone(0.3, 44100, channels=2), 44100, "WAV", "PCM_16")
    tar = write_raw_tar(
        tmp_path / "0.tar",
        [
            ("0.flac", flac), ("0.json", js({"text": ["a dog barks", "a dog barking"], "tag": ["dog"]})),
            ("1.wav", wav), ("1.json", js({"text": "rain falls", "original_data": {}})),
            ("2.flac", flac), ("2.json", js({"caption": "a bell rings"})),
        ],
    )  # fmt: skip
    samples = list(read_samples(str(tar)))
    assert [s.captions["short"] for s in samples] == [["a dog barks", "a dog barking"], ["rain falls"], ["a bell rings"]]
    assert [s.sample_rate for s in samples] == [48000, 44100, 48000]
    assert samples[1].audio.ndim == 1 and samples[0].meta["tag"] == ["dog"]


def _bad_shards(tmp_path):
    good = encoded(tone(0.2), 16000)
    ok = js({"text": "fine"})
    members = [
        ("ok1.flac", good), ("ok1.json", ok),
        ("badjson.flac", good), ("badjson.json", b"{not json"),
        ("noaudio.json", ok),
        ("corrupt.flac", b"fLaC" + b"\x00garbage" * 20), ("corrupt.json", ok),
        ("empty.wav", encoded(np.zeros(0, np.float32), 16000, "WAV", "PCM_16")), ("empty.json", ok),
        ("nan.wav", encoded(np.full(100, np.nan, np.float32), 16000, "WAV", "FLOAT")), ("nan.json", ok),
        ("nocap.flac", good), ("nocap.json", js({"id": "nocap"})),
        ("emptycap.flac", good), ("emptycap.json", js({"captions": {"short": [""], "long": [" "]}})),
        ("ok2.flac", good), ("ok2.json", ok),
    ]  # fmt: skip
    write_raw_tar(tmp_path / "bad.tar", members)
    full = write_raw_tar(tmp_path / "trunc.tar", [("t1.flac", good), ("t1.json", ok), ("t2.flac", good * 3)])
    data = full.read_bytes()
    full.write_bytes(data[: 512 + 2048 + 1024 + 512 + 1000])  # cut inside t2.flac's data
    return [str(tmp_path / "bad.tar"), str(full)]


def test_every_bad_sample_kind_is_skipped_and_counted(tmp_path):
    urls = _bad_shards(tmp_path)
    counter = SkipCounter(max_failure_rate=None)
    samples = list(read_samples(urls, counter=counter))
    assert [s.key for s in samples] == ["ok1", "ok2", "t1"]
    expected = ["bad_json", "no_audio", "decode_error", "empty_audio", "nan_audio", "no_caption", "empty_caption"]
    assert {r: counter.totals[r] for r in expected} == dict.fromkeys(expected, 1)
    assert counter.totals["corrupt_tar"] == 1
    assert counter.good == 3 and counter.failures == 8


def test_failure_rate_stop_names_shard_and_reason(tmp_path):
    ok = js({"text": "x"})
    members = []
    for i in range(60):
        members += [(f"k{i}.flac", encoded(tone(0.05), 16000)), (f"k{i}.json", ok)]
        members += [(f"b{i}.flac", b"garbage"), (f"b{i}.json", ok)]
    tar = str(write_raw_tar(tmp_path / "mostly_bad.tar", members))
    with pytest.raises(DataError, match=r"mostly_bad\.tar.*|decode_error") as err:
        list(read_samples(tar, max_failure_rate=0.2))
    assert "decode_error" in str(err.value) and "mostly_bad.tar" in str(err.value)
    assert len(list(read_samples(tar, max_failure_rate=0.6))) == 60
    with pytest.raises(DataError, match="b0"):
        list(read_samples(tar, handler="raise"))
