"""Every source through `clsp.shards.main` on small generated inputs, read back with read_samples."""

from __future__ import annotations

import gzip
import json

import soundfile as sf
from data_helpers import encoded, js, tone, write_raw_tar

from clsp.data.samples import read_samples
from clsp.data.sources import audioset_index
from clsp.shards import main


def _read(folder):
    return {s.meta["id"]: s for s in read_samples(str(folder))}


def test_fusionaudio(tmp_path, capsys):
    audio = tmp_path / "audioset"
    (audio / "sub").mkdir(parents=True)
    sf.write(audio / "Y--abcdefghi_30_40.flac", tone(0.3, 16000), 16000)  # leading Y + segment
    sf.write(audio / "sub" / "_xyz12345ab.wav", tone(0.3, 16000), 16000)
    sf.write(audio / "nocaption00.ogg", tone(0.3, 16000), 16000)
    records = [
        {"audio_id": "--abcdefghi", "instruction": "Describe.", "input": "", "dataset": "audioset",
         "task": "Captioning questions", "output": "A dog barks twice."},
        {"audio_id": "--abcdefghi", "instruction": "How many barks?", "input": "Count.", "dataset": "audioset",
         "task": "Counting", "output": "Two."},
        {"audio_id": "_xyz12345ab", "instruction": "", "input": "", "dataset": "audioset",
         "task": "Captioning questions", "output": "Rain on a roof."},
        {"audio_id": "missing0000", "instruction": "", "input": "", "dataset": "audioset",
         "task": "Captioning questions", "output": "Nothing here."},
        {"audio_id": "nocaption00", "instruction": "Q", "input": "", "dataset": "audioset", "task": "QA", "output": "A"},
    ]  # fmt: skip
    (tmp_path / "fa.json").write_text(json.dumps(records))
    assert audioset_index(audio)["--abcdefghi"].endswith("Y--abcdefghi_30_40.flac")
    out = tmp_path / "out"
    assert main(["fusionaudio", "--json", str(tmp_path / "fa.json"), "--audio-dir", str(audio), "--out", str(out)]) == 0
    got = _read(out)
    assert set(got) == {"--abcdefghi", "_xyz12345ab"}
    s = got["--abcdefghi"]
    assert s.captions == {"short": [], "long": ["A dog barks twice."]}
    assert s.meta["qa"] == [{"q": "How many barks? Count.", "a": "Two.", "task": "Counting"}]
    report = json.loads((out / "report.json").read_text())
    assert report["written"] == 2 and report["skipped"] == {"no_audio": 1, "no_caption": 1}
    skipped = [json.loads(x)["id"] for x in (out / "skipped.jsonl").read_text().splitlines()]
    assert sorted(skipped) == ["missing0000", "nocaption00"]
    assert '"written": 2' in capsys.readouterr().out


def test_fcaps_paraspeechcaps_and_lhotse(tmp_path):
    sf.write(tmp_path / "a.wav", tone(0.5, 16000), 16000)
    sf.write(tmp_path / "long.flac", tone(2.0, 24000), 24000)
    psc = {"id": "utt1", "audio_path": "a.wav", "short_captions": ["A woman speaks fast."],
           "long_captions": ["A young woman with a high pitch speaks quickly and clearly."], "gender": "female",
           "pitch": "high", "speaking_rate": "fast", "accent": "american", "intrinsic_tags": ["clear"],
           "situational_tags": [], "text": "hello there", "speaker": "spk1"}
    cut = {"id": "cut1", "start": 0.5, "duration": 1.0, "recording": {"id": "r", "sources": [
           {"type": "file", "channels": [0], "source": str(tmp_path / "long.flac")}]},
           "supervisions": [{"id": "s", "text": "good morning", "speaker": "spk2",
                             "custom": {"short_captions": ["A man speaks slowly."], "gender": "male"}}]}
    nocap = {"id": "utt2", "audio_path": "a.wav", "short_captions": [], "long_captions": []}
    manifest = tmp_path / "m.jsonl.gz"
    with gzip.open(manifest, "wt") as f:
        f.write("\n".join(json.dumps(r) for r in [psc, cut, nocap]) + "\n")  # fmt: skip
    out = tmp_path / "out"
    main(["fcaps", "--manifest", str(manifest), "--out", str(out), "--sample-rate", "16000"])
    got = _read(out)
    assert set(got) == {"utt1", "cut1"}
    u = got["utt1"]
    assert u.attributes["gender"] == "female" and u.attributes["intrinsic_tags"] == ["clear"]
    assert u.meta["transcript"] == "hello there" and u.meta["speaker"] == "spk1" and len(u.captions["long"]) == 1
    c = got["cut1"]
    assert c.sample_rate == 16000 and len(c.audio) == 16000  # only the 1 s segment, resampled 24k -> 16k
    assert c.meta["transcript"] == "good morning" and c.attributes == {"gender": "male"}
    assert json.loads((out / "report.json").read_text())["skipped"] == {"no_caption": 1}


def test_laion_reshard(tmp_path):
    src = tmp_path / "laion"
    src.mkdir()
    write_raw_tar(src / "0.tar", [("a.flac", encoded(tone(0.2, 48000), 48000)), ("a.json", js({"text": "a bell"})),
                                  ("b.flac", b"junk"), ("b.json", js({"text": "broken"}))])  # fmt: skip
    write_raw_tar(src / "1.tar", [("c.wav", encoded(tone(0.2, 44100), 44100, "WAV", "PCM_16")),
                                  ("c.json", js({"text": ["x", "y"], "tag": ["t"]}))])  # fmt: skip
    out = tmp_path / "out"
    main(["laion", "--shards", str(src / "{0..1}.tar"), "--out", str(out), "--sample-rate", "48000"])
    got = _read(out)
    assert got["a"].captions["short"] == ["a bell"] and got["c"].captions["short"] == ["x", "y"]
    assert got["c"].sample_rate == 48000 and got["c"].meta["tag"] == ["t"]
    assert json.loads((out / "sizes.json").read_text()) == {"shard-000000.tar": 1, "shard-000001.tar": 1}
    assert json.loads((out / "report.json").read_text())["skipped"] == {"decode_error": 1}


def test_every_source_takes_a_part(tmp_path):
    """laion (input shard i -> part i mod N) and fcaps (chunks) split by --part like a table does."""
    src = tmp_path / "laion"
    src.mkdir()
    for i in range(3):
        write_raw_tar(src / f"{i}.tar", [(f"k{i}.flac", encoded(tone(0.1, 16000, 300 + 50 * i), 16000)),
                                         (f"k{i}.json", js({"text": f"clip {i}"}))])  # fmt: skip
    lines = []
    for i in range(5):
        sf.write(tmp_path / f"u{i}.wav", tone(0.1, 16000, 200 + 30 * i), 16000)
        lines.append(json.dumps({"id": f"u{i}", "audio_path": f"u{i}.wav", "short_captions": [f"speech {i}"]}))
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
    sources = {"laion": ["--shards", str(src)], "fcaps": ["--manifest", str(tmp_path / "m.jsonl"),
                                                          "--samples-per-shard", "2"]}  # fmt: skip
    for name, args in sources.items():
        whole, parts = tmp_path / f"{name}_whole", tmp_path / f"{name}_parts"
        assert main([name, *args, "--out", str(whole)]) == 0
        for part in ("0/2", "1/2"):
            assert main([name, *args, "--out", str(parts), "--part", part]) == 0
        assert main(["merge", str(parts)]) == 0
        assert {k: (s.audio.tobytes(), s.meta) for k, s in _read(parts).items()} == \
            {k: (s.audio.tobytes(), s.meta) for k, s in _read(whole).items()}, name
        assert sorted(p.name for p in parts.glob("*.tar"))[:2] == ["shard-p000of002-000000.tar",
                                                                   "shard-p000of002-000002.tar"]  # fmt: skip
