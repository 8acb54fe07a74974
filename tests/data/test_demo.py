"""The procedural demo corpus: deterministic, honest captions, valid audio, complete shards."""

from __future__ import annotations

import io
import json
import re
import tarfile

import numpy as np
import pytest
import soundfile as sf

from clsp.data.demo import FACTORS, build_demo, caption_words, generate_clip, shard_pattern
from clsp.data.perturb import flip_candidates

# Word pairs a hard negative flips; a clip's captions must never contain the opposite word.
ANTONYMS = {("pitch", "high"): "low", ("pitch", "low"): "high", ("loudness", "loud"): "quiet",
            ("loudness", "quiet"): "loud", ("speed", "fast"): "slow", ("speed", "slow"): "fast"}


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def test_clip_is_deterministic_per_seed_split_and_index():
    a, meta = generate_clip(3, seed=1)
    b, meta_b = generate_clip(3, seed=1)
    assert a.tobytes() == b.tobytes() and meta == meta_b
    # Independent of what was generated before (per-clip RNG, so parallel builds agree).
    generate_clip(4, seed=1)
    assert generate_clip(3, seed=1)[0].tobytes() == a.tobytes()
    assert generate_clip(3, seed=2)[0].tobytes() != a.tobytes()
    assert generate_clip(3, seed=1, split="test")[0].tobytes() != a.tobytes()
    assert generate_clip(4, seed=1)[0].tobytes() != a.tobytes()


@pytest.mark.parametrize("sample_rate", [16000, 22050])
def test_audio_is_valid_and_sized(sample_rate):
    for i in range(12):
        audio, meta = generate_clip(i, sample_rate=sample_rate)
        assert audio.dtype == np.float32 and audio.ndim == 1
        assert np.isfinite(audio).all() and np.abs(audio).max() <= 1.0
        assert 2.0 * sample_rate <= audio.shape[0] <= 4.0 * sample_rate
        assert meta["duration"] == pytest.approx(audio.shape[0] / sample_rate, abs=1e-4)
        assert meta["source"] == "demo" and meta["id"] == f"demo-train-{i:06d}"
    audio, meta = generate_clip(0, min_duration=1.0, max_duration=1.0)
    assert audio.shape == (16000,) and meta["duration"] == 1.0


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="index"):
        generate_clip(-1)
    with pytest.raises(ValueError, match="sample_rate"):
        generate_clip(0, sample_rate=8000)
    with pytest.raises(ValueError, match="seed"):
        generate_clip(0, seed=-1)
    with pytest.raises(ValueError, match="split"):
        generate_clip(0, split="")
    with pytest.raises(ValueError, match="duration"):
        generate_clip(0, min_duration=3.0, max_duration=2.0)
    with pytest.raises(ValueError, match="n_val"):
        build_demo("unused", n_val=-1)
    with pytest.raises(ValueError, match="attribute"):
        caption_words("colour", "red")


def test_captions_mention_every_attribute_value():
    seen = {k: set() for k in FACTORS}
    for i in range(80):
        _, meta = generate_clip(i)
        attrs, caps = meta["attributes"], meta["captions"]
        assert len(caps["short"]) == 1 and len(caps["long"]) == 2
        assert set(FACTORS) <= set(attrs)
        assert ("speed" in attrs) == (attrs["rhythm"] != "continuous")
        for k in FACTORS:
            seen[k].add(attrs[k])
        short = caps["short"][0].lower()
        for name, value in attrs.items():
            for long in caps["long"]:
                assert caption_words(name, value) in long.lower(), (name, value, long)
            if name != "background":  # the one-sentence caption leaves out only the background
                assert caption_words(name, value) in short, (name, value, short)
        for long in caps["long"]:
            assert 2 <= long.count(".") <= 3
        # Hard negatives flip these words; the opposite word must never already be there.
        for (name, value), opposite in ANTONYMS.items():
            if attrs.get(name) == value:
                for text in caps["short"] + caps["long"]:
                    assert opposite not in _words(text), (text, name, value)
    assert all(seen[k] == set(FACTORS[k]) for k in FACTORS)  # every value is drawn


def test_hard_negative_flips_are_meaningful():
    # Each flippable attribute is named exactly once per caption, so one flip gives a coherent
    # caption that contradicts the audio in exactly one attribute (and never in the same word twice).
    groups = {"pitch": "pitch", "loudness": "loudness", "speed": "speaking_rate"}
    for i in range(40):
        _, meta = generate_clip(i)
        attrs = meta["attributes"]
        expected = {g for k, g in groups.items() if k in attrs and attrs[k] != "mid"}
        for text in meta["captions"]["short"] + meta["captions"]["long"]:
            found = flip_candidates(text)
            assert set(found) == expected, (text, found)
            assert all(len(v) == 1 for v in found.values()), (text, found)


def _dominant_hz(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    frames = np.lib.stride_tricks.sliding_window_view(audio, 2048)[::1024] * np.hanning(2048)
    spec = np.abs(np.fft.rfft(frames, axis=1))[:, 10:]  # above 78 Hz: every tone, not the rumble
    return (spec.argmax(axis=1) + 10) * sample_rate / 2048, spec.max(axis=1)


def test_audio_matches_its_pitch_contour_and_loudness():
    checked = 0
    for i in range(200):
        audio, meta = generate_clip(i)
        attrs = meta["attributes"]
        peak = np.abs(audio).max()
        assert (peak >= 0.5) if attrs["loudness"] == "loud" else (peak <= 0.1)
        if attrs["timbre"] != "sine":
            continue
        hz, energy = _dominant_hz(audio, 16000)
        hz = hz[energy > 0.5 * energy.max()]
        centre = np.exp(np.mean(np.log(hz)))
        lo, hi = {"low": (100, 230), "mid": (300, 700), "high": (850, 2000)}[attrs["pitch"]]
        assert lo < centre < hi, (attrs, centre)
        third = len(hz) // 3
        change = np.log2(hz[-third:].mean() / hz[:third].mean())
        expected = {"steady": (-0.1, 0.1), "rising": (0.3, 1.5), "falling": (-1.5, -0.3)}[attrs["contour"]]
        assert expected[0] < change < expected[1], (attrs, change)
        checked += 1
    assert checked >= 20


def test_rhythm_matches_pulse_rate():
    checked = 0
    for i in range(60):
        audio, meta = generate_clip(i)
        attrs = meta["attributes"]
        if attrs["background"] != "none" or attrs["timbre"] == "noisy":  # noise has its own dips
            continue
        level = np.abs(audio[: audio.shape[0] // 160 * 160]).reshape(-1, 160).max(axis=1)  # 10 ms frames
        on = level > 0.3 * level.max()
        onsets = np.count_nonzero(on[1:] & ~on[:-1]) / meta["duration"]
        lo, hi = {"continuous": (0, 0.1), "pulsing": (0.9, 3.0), "beeping": (5.0, 10.0)}[attrs["rhythm"]]
        assert lo <= onsets <= hi, (attrs, onsets)
        checked += 1
    assert checked >= 8


def test_build_demo_writes_reads_back_and_skips(tmp_path, monkeypatch):
    out = tmp_path / "demo"
    counts = build_demo(out, seed=3, n_train=7, n_val=3, n_test=2, samples_per_shard=4)
    assert counts == {"train": 7, "val": 3, "test": 2}
    for split, n in counts.items():
        sizes = json.loads((out / split / "sizes.json").read_text())
        assert sum(sizes.values()) == n
        assert sorted(p.name for p in (out / split).glob("shard-*.tar")) == sorted(sizes)
    assert json.loads((out / "demo.json").read_text())["counts"] == counts

    # Read back: every sample has decodable audio equal to the generator's (up to 16-bit PCM) and its json.
    with tarfile.open(out / "train" / "shard-000000.tar") as tar:
        names = tar.getnames()
        assert len(names) == 8 and sum(n.endswith(".flac") for n in names) == 4
        flac = next(n for n in names if n.endswith(".flac"))
        audio, rate = sf.read(io.BytesIO(tar.extractfile(flac).read()), dtype="float32")
        meta = json.loads(tar.extractfile(flac.replace(".flac", ".json")).read())
    index = int(meta["id"].rsplit("-", 1)[1])
    expected, expected_meta = generate_clip(index, seed=3, split="train")
    assert rate == 16000 and np.abs(audio - expected).max() < 1e-4
    assert meta["captions"] == expected_meta["captions"] and meta["attributes"] == expected_meta["attributes"]

    # Second call with the same arguments is a no-op: it must not generate anything.
    def fail(*args, **kwargs):
        raise AssertionError("build_demo regenerated a complete corpus")

    monkeypatch.setattr("clsp.data.demo.generate_clip", fail)
    assert build_demo(out, seed=3, n_train=7, n_val=3, n_test=2, samples_per_shard=4) == counts
    monkeypatch.undo()

    # Different arguments rebuild, and no stale shard from the larger build survives.
    assert build_demo(out, seed=3, n_train=3, n_val=1, n_test=1, samples_per_shard=4)["train"] == 3
    assert [p.name for p in (out / "train").glob("shard-*.tar")] == ["shard-000000.tar"]
    assert json.loads((out / "train" / "sizes.json").read_text()) == {"shard-000000.tar": 3}


def test_shards_read_with_webdataset(tmp_path):
    wds = pytest.importorskip("webdataset")
    build_demo(tmp_path, n_train=5, n_val=1, n_test=1, samples_per_shard=2)
    pattern = shard_pattern(tmp_path, "train")
    assert pattern.endswith("shard-{000000..000002}.tar")
    samples = list(wds.WebDataset(pattern, shardshuffle=False))
    assert len(samples) == 5
    assert all("flac" in s and "json" in s for s in samples)
    assert shard_pattern(tmp_path, "val").endswith("shard-000000.tar")
    with pytest.raises(FileNotFoundError, match="build_demo"):
        shard_pattern(tmp_path, "nosuchsplit")


def test_interrupted_build_is_not_complete(tmp_path):
    build_demo(tmp_path, n_train=2, n_val=1, n_test=1)
    (tmp_path / "demo.json").unlink()  # as if the process died before the marker was written
    (tmp_path / "train" / "shard-000000.tar").write_bytes(b"garbage")
    build_demo(tmp_path, n_train=2, n_val=1, n_test=1)
    with tarfile.open(tmp_path / "train" / "shard-000000.tar") as tar:
        assert len(tar.getnames()) == 4


def test_background_noise_colour_matches_its_slope():
    # Between slow pulses only the background sounds: its power spectrum falls as 1/f**slope.
    checked = 0
    for i in range(120):
        audio, meta = generate_clip(i)
        attrs = meta["attributes"]
        if attrs["rhythm"] != "pulsing" or attrs["background"] == "none":
            continue
        frames = np.lib.stride_tricks.sliding_window_view(audio, 1024)[::512]
        quiet = frames[np.argsort((frames**2).sum(axis=1))[: len(frames) // 5]] * np.hanning(1024)
        power = (np.abs(np.fft.rfft(quiet, axis=1)) ** 2).mean(axis=0)
        freqs = np.fft.rfftfreq(1024, 1 / 16000)
        band = (freqs > 100) & (freqs < 6000)
        slope = -np.polyfit(np.log10(freqs[band]), np.log10(power[band]), 1)[0]
        expected = {"white": 0.0, "pink": 1.0, "brown": 2.0}[attrs["background"]]
        assert abs(slope - expected) < 0.35, (attrs, slope)
        checked += 1
    assert checked >= 6
