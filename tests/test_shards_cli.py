"""`python -m clsp.shards table ...` end to end: a subprocess run, workers, resume, the report files."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from clsp.data.samples import read_samples
from clsp.shards import main


def _table(tmp_path, n=7):
    (tmp_path / "wavs").mkdir()
    rows = []
    for i in range(n):
        t = np.arange(4000, dtype=np.float32) / 16000
        sf.write(tmp_path / "wavs" / f"c{i}.wav", 0.2 * np.sin(2 * np.pi * (200 + 50 * i) * t), 16000)
        rows.append({"path": f"wavs/c{i}.wav", "caption": f"tone {i}", "detail": f"a long tone {i}", "gender": "male"})
    rows.append({"path": "wavs/missing.wav", "caption": "gone", "detail": "", "gender": ""})
    rows.append({"path": "wavs/c0.wav", "caption": "", "detail": "", "gender": ""})
    table = tmp_path / "clips.csv"
    with table.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return table


def test_table_cli_subprocess(tmp_path):
    table = _table(tmp_path)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "clsp.shards", "table", str(table), "--short-columns", "caption",
           "--long-columns", "detail", "--attribute-columns", "gender", "--samples-per-shard", "3",
           "--sample-rate", "8000", "--workers", "2", "--out", str(out)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["written"] == 7 and report["skipped"] == {"no_audio": 1, "no_caption": 1}
    assert report["hours"] == pytest.approx(7 * 0.25 / 3600, rel=0.01) and report["clips_per_s"] > 0
    assert json.loads((out / "sizes.json").read_text()) == {
        "shard-000000.tar": 3, "shard-000001.tar": 3, "shard-000002.tar": 1,
    }  # fmt: skip
    manifest = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert sorted(m["key"] for m in manifest) == [f"c{i}" for i in range(7)]
    samples = list(read_samples(str(out / "shard-{000000..000002}.tar")))
    assert [s.key for s in samples] == [f"c{i}" for i in range(7)]  # input order kept across workers
    s = samples[2]
    assert s.sample_rate == 8000 and len(s.audio) == 2000
    assert s.captions == {"short": ["tone 2"], "long": ["a long tone 2"]} and s.attributes == {"gender": "male"}


def test_resume_keeps_finished_shards(tmp_path):
    table = _table(tmp_path)
    out = tmp_path / "out"
    args = ["table", str(table), "--samples-per-shard", "3", "--out", str(out)]
    main(args)
    assert main(args) == 2  # shards of an earlier run: one line asking for --resume or --overwrite
    first = (out / "shard-000000.tar").stat().st_mtime_ns
    (out / "shard-000001.tar").unlink()  # as if the run died before this shard
    main([*args, "--resume"])
    report = json.loads((out / "report.json").read_text())
    assert report["shards_kept"] == 2 and report["shards_written"] == 1 and report["samples_total"] == 7
    assert (out / "shard-000000.tar").stat().st_mtime_ns == first
    assert len((out / "manifest.jsonl").read_text().splitlines()) == 7
    assert len(list(read_samples(str(out)))) == 7
    main([*args, "--overwrite"])
    assert json.loads((out / "report.json").read_text())["shards_written"] == 3
