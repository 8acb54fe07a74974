"""The one table reader: formats, gzip, line numbers, and one audio-column choice for shards and eval."""

import gzip
import json

import numpy as np
import pytest
import soundfile as sf

from clsp.data.sources import table_jobs
from clsp.data.table import iter_table, read_table
from clsp.evaluation.tables import load_retrieval_table


def test_formats_and_line_numbers(tmp_path):
    (tmp_path / "t.csv").write_text("audio,caption\na.wav,x\nb.wav,y\n")
    assert read_table(tmp_path / "t.csv") == [(2, {"audio": "a.wav", "caption": "x"}),
                                               (3, {"audio": "b.wav", "caption": "y"})]
    with gzip.open(tmp_path / "t.jsonl.gz", "wt") as f:
        f.write('{"a": 1}\n\n{"a": 2}\n')
    assert list(iter_table(tmp_path / "t.jsonl.gz")) == [(1, {"a": 1}), (3, {"a": 2})]
    (tmp_path / "t.json").write_text(json.dumps([{"a": 1}]))
    assert read_table(tmp_path / "t.json") == [(1, {"a": 1})]
    (tmp_path / "bad.jsonl").write_text('{"a": 1}\n{oops\n')
    with pytest.raises(ValueError, match="line 2: not valid JSON"):
        read_table(tmp_path / "bad.jsonl")
    (tmp_path / "t.xlsx").write_text("")
    with pytest.raises(ValueError, match="unsupported table format"):
        read_table(tmp_path / "t.xlsx")
    (tmp_path / "t.parquet").write_text("")
    with pytest.raises(ValueError, match="not a readable Parquet file"):
        read_table(tmp_path / "t.parquet")


def test_shards_and_eval_pick_the_same_audio_column(tmp_path):
    # Both "path" and "audio_path" exist; only one of them names a real file.
    sf.write(tmp_path / "real.wav", np.zeros(1600, dtype=np.float32), 16000)
    (tmp_path / "t.csv").write_text("path,audio_path,caption\nmissing.wav,real.wav,a dog barks\n")
    jobs, problems = table_jobs(tmp_path / "t.csv")
    clips = load_retrieval_table(tmp_path / "t.csv")
    assert problems == [] and jobs[0].audio_path == str(tmp_path / "real.wav")
    assert clips[0].path == tmp_path / "real.wav"


def test_is_table_tells_tables_from_shard_specs(tmp_path):
    from clsp.data.table import is_table

    (tmp_path / "t.csv").write_text("audio,caption\na.wav,x\n")
    (tmp_path / "af").mkdir()
    (tmp_path / "af" / "metadata.jsonl").write_text('{"file_name": "a.wav", "caption": "x"}\n')
    (tmp_path / "shards").mkdir()
    (tmp_path / "shards" / "shard-000000.tar").write_bytes(b"")
    assert is_table(tmp_path / "t.csv") and is_table(str(tmp_path / "af"))
    for spec in (tmp_path / "shards", str(tmp_path / "shards" / "shard-{000000..000001}.tar"),
                 f"{tmp_path / 't.csv'}::{tmp_path / 'shards'}", tmp_path / "nothing.csv", ["a.tar"]):
        assert not is_table(spec), spec
