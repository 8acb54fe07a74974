"""The table cache: written once, reused, rebuilt on change, atomic when killed, built once when asked at once."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from data_helpers import encoded, tone, write_container

from clsp.data.samples import read_samples
from clsp.data.table_cache import default_cache_root, materialize


def _table(tmp_path, n=12, name="t.csv"):
    (tmp_path / "audio").mkdir(exist_ok=True)
    rows = []
    for i in range(n):
        sf.write(tmp_path / "audio" / f"c{i}.wav", np.full(800, 0.05 * (1 + i % 4), np.float32), 16000)
        rows.append((f"audio/c{i}.wav", f"clip {i}"))
    write_container(tmp_path / "audio" / "m.m4a", tone(0.5, 16000), 16000, "aac")
    (tmp_path / "audio" / "broken.wav").write_bytes(b"RIFF....garbage")
    rows += [("audio/m.m4a", "an m4a"), ("audio/missing.wav", "gone"), ("audio/broken.wav", "broken"),
             ("audio/c0.wav", "")]  # fmt: skip
    table = tmp_path / name
    with table.open("w", newline="") as f:
        csv.writer(f).writerows([("audio", "caption"), *rows])
    return table


def test_written_once_reused_and_rebuilt_when_the_table_changes(tmp_path, capsys):
    table, cache = _table(tmp_path), tmp_path / "cache"
    train = materialize(table, cache, split="train", fractions="train=0.7,test=0.3", samples_per_shard=4)
    test = materialize(table, cache, split="test", fractions="train=0.7,test=0.3", samples_per_shard=4)
    assert not train.reused and test.reused and train.entry == test.entry
    assert train.written + test.written == 13
    ids = {s.meta["id"] for f in (train.folder, test.folder) for s in read_samples(str(f))}
    assert ids == {f"c{i}" for i in range(12)} | {"m"}
    skipped = Counter(train.skipped) + Counter(test.skipped)
    assert skipped == {"no_audio": 1, "decode_error": 1, "no_caption": 1}
    line = capsys.readouterr().err
    assert "table cache:" in line and "(cached)" in line
    assert any("missing.wav" in e for e in train.examples + test.examples)
    stamp = (train.folder / "sizes.json").stat().st_mtime_ns
    again = materialize(table, cache, split="train", fractions="train=0.7,test=0.3", samples_per_shard=4)
    assert again.reused and (again.folder / "sizes.json").stat().st_mtime_ns == stamp
    with table.open("a") as f:
        f.write("audio/c1.wav,one more row\n")
    changed = materialize(table, cache, split="train", fractions="train=0.7,test=0.3", samples_per_shard=4)
    assert not changed.reused and changed.entry != train.entry
    other = materialize(table, cache, sample_rate=8000, progress=False)  # other settings, another entry
    assert other.folder.name == "all" and other.written == 14
    assert {s.sample_rate for s in read_samples(str(other.folder))} == {8000}
    with pytest.raises(ValueError, match="name the split"):
        materialize(table, cache, fractions="train=0.7,test=0.3", progress=False)
    with pytest.raises(ValueError, match="no split 'val'"):
        materialize(table, cache, split="val", fractions="train=0.7,test=0.3", samples_per_shard=4, progress=False)
    with pytest.raises(TypeError, match="caption_column"):  # a typo fails at once, not only when building
        materialize(table, cache, caption_column="caption")


def test_default_cache_root(monkeypatch, tmp_path):
    monkeypatch.setenv("CLSP_TABLE_CACHE", str(tmp_path / "c"))
    assert default_cache_root() == tmp_path / "c"
    monkeypatch.delenv("CLSP_TABLE_CACHE")
    assert default_cache_root().parts[-3:] == (".cache", "clsp", "tables")


_KILLED_BUILD = """
    import os, signal, sys
    import clsp.data.table_cache as tc
    real = tc.write_jobs
    def write_then_die(*args, **kwargs):
        real(*args, **kwargs)  # every shard written, cache.json not yet: the worst moment to die
        os.kill(os.getpid(), signal.SIGKILL)
    tc.write_jobs = write_then_die
    tc.materialize(sys.argv[1], sys.argv[2], progress=False)
"""


def test_a_killed_build_never_looks_complete(tmp_path):
    table, cache = _table(tmp_path, n=3), tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(_KILLED_BUILD), str(table), str(cache)], env=env,
                          timeout=120)  # fmt: skip
    assert proc.returncode == -9
    left = sorted(p.name for p in cache.iterdir() if not p.name.endswith(".lock"))
    assert len(left) == 1 and left[0].startswith(".t-") and ".tmp-" in left[0]  # hidden, never the entry name
    got = materialize(table, cache, progress=False)
    assert not got.reused and got.written == 4
    assert sorted(p.name for p in cache.iterdir() if not p.name.endswith(".lock")) == [got.entry.name]


_CONCURRENT = """
    import json, sys
    from clsp.data.table_cache import default_cache_root, materialize
    got = materialize(sys.argv[1], sys.argv[2], progress=False)
    print(json.dumps({"reused": got.reused, "folder": str(got.folder)}))
"""


def test_processes_asking_at_once_build_once(tmp_path):
    table, cache = _table(tmp_path, n=6), tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(_CONCURRENT), str(table), str(cache)], env=env,
                              stdout=subprocess.PIPE, text=True) for _ in range(2)]  # fmt: skip
    results = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    assert sorted(r["reused"] for r in results) == [False, True]
    assert results[0]["folder"] == results[1]["folder"]


def test_parquet_and_split_column_through_the_cache(tmp_path):
    audio = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    rows = [{"bytes": encoded(tone(0.2, 16000), 16000), "path": f"x{i}.flac"} for i in range(4)]
    pq.write_table(pa.table({"audio": pa.array(rows, type=audio), "caption": ["a", "b", "c", "d"],
                             "split": ["train", "test", "train", "test"]}), tmp_path / "d.parquet")  # fmt: skip
    got = materialize(tmp_path / "d.parquet", tmp_path / "cache", split="test", split_column="split", progress=False)
    assert {s.meta["id"] for s in read_samples(str(got.folder))} == {"x1", "x3"}
