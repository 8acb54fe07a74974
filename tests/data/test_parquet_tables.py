"""Tables beyond CSV: Parquet files and folders (Hugging Face `datasets` Audio columns holding bytes
and/or paths) and `audiofolder` layouts, through `clsp.shards table`; unusable tables are one line."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from data_helpers import encoded, tone, write_container

from clsp.data.parquet import EmbeddedAudio, read_embedded
from clsp.data.samples import read_samples
from clsp.data.table import iter_table, read_table
from clsp.shards import main

AUDIO = pa.struct([("bytes", pa.binary()), ("path", pa.string())])  # what `datasets` writes for Audio()


def _hf_parquet(path, rows, row_group_size=2):
    table = pa.table({"audio": pa.array([r[0] for r in rows], type=AUDIO),
                      "text": [r[1] for r in rows], "label": [r[2] for r in rows]})  # fmt: skip
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def _samples(out):
    return {s.meta["id"]: s for s in read_samples(str(out))}


def test_hf_parquet_with_bytes_paths_and_bad_rows(tmp_path):
    m4a = write_container(tmp_path / "m.m4a", tone(1.0, 16000), 16000, "aac").read_bytes()
    sf.write(tmp_path / "on_disk.wav", tone(0.5, 16000), 16000)
    rows = [
        ({"bytes": encoded(tone(0.5, 16000), 16000), "path": "first.flac"}, "a flac", "x"),
        ({"bytes": m4a, "path": "second.m4a"}, "an m4a", "y"),
        ({"bytes": None, "path": "on_disk.wav"}, "a path only", "x"),  # relative to the table's folder
        ({"bytes": None, "path": "gone.wav"}, "missing", "y"),
        ({"bytes": b"garbage" * 10, "path": "bad.wav"}, "undecodable", "x"),
        ({"bytes": encoded(tone(0.5, 16000), 16000), "path": "nocap.wav"}, "", "y"),
    ]
    table = _hf_parquet(tmp_path / "train-00000-of-00001.parquet", rows)
    assert isinstance(read_table(table)[0][1]["audio"], EmbeddedAudio)
    out = tmp_path / "out"
    assert main(["table", str(table), "--attribute-columns", "label", "--samples-per-shard", "2", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["written"] == 3
    assert report["skipped"] == {"decode_error": 1, "no_audio": 1, "no_caption": 1}
    got = _samples(out)
    assert sorted(got) == ["first", "on_disk", "second"]
    assert got["second"].captions["short"] == ["an m4a"] and got["second"].attributes == {"label": "y"}
    assert abs(len(got["second"].audio) / 16000 - 1.0) < 0.06
    skipped = {json.loads(x)["reason"]: x for x in (out / "skipped.jsonl").read_text().splitlines()}
    assert "gone.wav" in skipped["no_audio"] and "#row4" in skipped["decode_error"]


def test_parquet_folder_and_read_embedded_across_row_groups(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    clips = [encoded(tone(0.2 + 0.1 * i, 16000), 16000) for i in range(5)]
    _hf_parquet(folder / "train-00000-of-00002.parquet", [({"bytes": b, "path": f"c{i}.flac"}, f"cap {i}", "x")
                                                         for i, b in enumerate(clips[:3])])  # fmt: skip
    _hf_parquet(folder / "train-00001-of-00002.parquet", [({"bytes": b, "path": f"c{i + 3}.flac"}, f"cap {i + 3}", "x")
                                                         for i, b in enumerate(clips[3:])])  # fmt: skip
    rows = [row for _, row in iter_table(folder)]
    assert [n for n, _ in iter_table(folder)] == [1, 2, 3, 4, 5]
    cells = [r["audio"] for r in rows]
    assert read_embedded(cells[::-1]) == clips[::-1]  # any order, over files and row groups
    out = tmp_path / "out"
    assert main(["table", str(folder), "--out", str(out)]) == 0
    got = _samples(out)
    assert sorted(got) == [f"c{i}" for i in range(5)]
    assert len(got["c4"].audio) == len(tone(0.6, 16000))


@pytest.mark.parametrize("metadata", ["metadata.csv", "metadata.jsonl"])
def test_audiofolder(tmp_path, metadata):
    folder = tmp_path / "my_audio"
    (folder / "clips").mkdir(parents=True)
    write_container(folder / "clips" / "a.webm", tone(1.0, 48000), 48000, "libopus")
    sf.write(folder / "clips" / "b.wav", tone(0.5, 16000), 16000)
    rows = [{"file_name": "clips/a.webm", "caption": "an opus clip"}, {"file_name": "clips/b.wav", "caption": "a wav"}]
    if metadata.endswith(".csv"):
        (folder / metadata).write_text("file_name,caption\n" + "".join(f"{r['file_name']},{r['caption']}\n" for r in rows))
    else:
        (folder / metadata).write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    assert main(["table", str(folder), "--out", str(out)]) == 0
    got = _samples(out)
    assert sorted(got) == ["a", "b"] and got["a"].captions["short"] == ["an opus clip"]
    assert got["a"].meta["source"] == "my_audio"


def test_unusable_tables_are_one_line_naming_the_columns(tmp_path, capsys):
    pq.write_table(pa.table({"caption": ["x"], "score": [1.0]}), tmp_path / "noaudio.parquet")
    (tmp_path / "empty.csv").write_text("audio,caption\n")
    pq.write_table(pa.table({"audio": pa.array([], type=AUDIO), "text": pa.array([], pa.string())}),
                   tmp_path / "empty.parquet")  # fmt: skip
    (tmp_path / "noaudio.csv").write_text("name,caption\nx,y\n")
    (tmp_path / "nofiles").mkdir()
    cases = {
        "noaudio.parquet": "no audio column among ['caption', 'score']",
        "empty.csv": "no rows (columns: audio, caption)",
        "empty.parquet": "no rows (columns: audio, text)",
        "noaudio.csv": "no audio column among ['name', 'caption']",
        "nofiles": "has none of ['metadata.csv'",
    }
    for name, message in cases.items():
        assert main(["table", str(tmp_path / name), "--out", str(tmp_path / "out")]) == 2, name
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, (name, err)
    assert not (tmp_path / "out").exists()
