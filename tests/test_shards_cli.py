"""`python -m clsp.shards table ...` end to end: a subprocess run, workers, resume, the report files."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import soundfile as sf

from clsp.data.samples import read_samples
from clsp.data.writer import folder_sizes
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


def _members(folder) -> dict[str, bytes]:
    """Every member of every shard of a folder: name -> bytes."""
    out = {}
    for path in sorted(folder.glob("*.tar")):
        with tarfile.open(path) as tar:
            for m in tar.getmembers():
                out[m.name] = tar.extractfile(m).read()
    return out


def test_parts_together_are_the_whole_run_byte_for_byte(tmp_path, monkeypatch, capsys):
    table = _table(tmp_path)
    base = ["table", str(table), "--samples-per-shard", "2"]
    assert main([*base, "--out", str(tmp_path / "whole")]) == 0
    parts = tmp_path / "parts"
    assert main([*base, "--out", str(parts), "--part", "0/2"]) == 0
    assert main(["merge", str(parts)]) == 2  # part 1 has not run
    assert "part 1/2 has not finished" in capsys.readouterr().err
    # Part 1 from a SLURM array numbered 1..2 (`--array=1-2`).
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "2")
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "1")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
    assert main([*base, "--out", str(parts)]) == 0
    whole = _members(tmp_path / "whole")
    assert _members(parts) == whole and len(whole) == 14  # 7 clips: same keys, same audio and json bytes
    names = sorted(p.name for p in parts.glob("*.tar"))
    assert names == ["shard-p000of002-000000.tar", "shard-p000of002-000002.tar",
                     "shard-p001of002-000001.tar", "shard-p001of002-000003.tar"]  # fmt: skip
    sizes = folder_sizes(parts)  # what the reader combines: both parts' sizes files
    assert sizes == {"shard-p000of002-000000.tar": 2, "shard-p000of002-000002.tar": 2,
                     "shard-p001of002-000001.tar": 2, "shard-p001of002-000003.tar": 1}  # fmt: skip
    assert not (parts / "sizes.json").exists()
    # A part resumes on its own.
    (parts / "shard-p001of002-000003.tar").unlink()
    assert main([*base, "--out", str(parts), "--resume"]) == 0
    report = json.loads((parts / "report-p001of002.json").read_text())
    assert (report["shards_kept"], report["shards_written"], report["part"]) == (1, 1, "1/2")
    assert main([*base, "--out", str(parts), "--part", "0/3"]) == 2  # one folder, one layout
    assert "another layout" in capsys.readouterr().err
    capsys.readouterr()
    assert main(["merge", str(parts)]) == 0
    merged = json.loads((parts / "report.json").read_text())
    whole_report = json.loads((tmp_path / "whole" / "report.json").read_text())
    assert (merged["written"], merged["skipped"]) == (whole_report["written"], whole_report["skipped"])
    assert json.loads((parts / "sizes.json").read_text()) == sizes
    assert len((parts / "manifest.jsonl").read_text().splitlines()) == 7
    assert sorted(s.key for s in read_samples(str(parts))) == [f"c{i}" for i in range(7)]


@pytest.mark.parametrize("part,env", [("3/2", {}), ("x", {}), ("0/0", {}), ("-1/2", {}), ("1/2/3", {}),
                                      (None, {"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "4"})])
def test_bad_part_is_one_line(tmp_path, monkeypatch, capsys, part, env):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    table = _table(tmp_path)
    argv = ["table", str(table), "--out", str(tmp_path / "out"), *([f"--part={part}"] if part else [])]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and "I/N" in err
    assert not (tmp_path / "out").exists()


def _split_table(tmp_path, n, extra=()):
    (tmp_path / "wavs").mkdir(exist_ok=True)
    rows = []
    for i in range(n):
        path = tmp_path / "wavs" / f"c{i}.wav"
        if not path.exists():
            sf.write(path, np.full(160, 0.1 * (1 + i % 5), np.float32), 16000)
        rows.append({"path": f"wavs/c{i}.wav", "caption": f"clip {i}"})
    table = tmp_path / f"t{n}.csv"
    with table.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "caption"])
        writer.writeheader()
        writer.writerows([*rows, *extra])
    return table


def _split_ids(out):
    return {d.name: {s.meta["id"] for s in read_samples(str(d))} for d in out.iterdir()
            if d.is_dir() and any(d.glob("*.tar"))}  # fmt: skip


def test_split_by_fraction_is_seeded_stable_and_keeps_files_together(tmp_path, capsys):
    # c0 twice (one row per caption, Clotho style): both rows must land in one split.
    table = _split_table(tmp_path, 40, extra=[{"path": "wavs/c0.wav", "caption": "another caption"}])
    spec = ["--split", "train=0.6,val=0.2,test=0.2"]
    assert main(["table", str(table), *spec, "--samples-per-shard", "8", "--out", str(tmp_path / "a")]) == 0
    first = _split_ids(tmp_path / "a")
    assert set(first) == {"train", "val", "test"} and sum(map(len, first.values())) == 40
    assert 15 <= len(first["train"]) <= 33
    assert sorted(p.name for p in (tmp_path / "a" / "val").glob("*.tar"))[0] == "val-000000.tar"
    with_c0 = [name for name, ids in first.items() if "c0" in ids or "c0_1" in ids]
    assert len(with_c0) == 1  # both c0 rows in one split
    # 20 more rows: every earlier row keeps its split.
    bigger = _split_table(tmp_path, 60, extra=[{"path": "wavs/c0.wav", "caption": "another caption"}])
    assert main(["table", str(bigger), *spec, "--out", str(tmp_path / "b")]) == 0
    second = _split_ids(tmp_path / "b")
    for name, ids in first.items():
        assert ids <= second[name]
    assert main(["table", str(table), *spec, "--split-seed", "1", "--out", str(tmp_path / "c")]) == 0
    assert _split_ids(tmp_path / "c") != first  # another seed, another draw
    capsys.readouterr()
    for bad in ("train=0.8,val=0.1", "train", "train=0.5,train=0.5", "a b=1"):
        assert main(["table", str(table), "--split", bad, "--out", str(tmp_path / "d")]) == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_split_by_column(tmp_path):
    table = _split_table(tmp_path, 6)
    text = table.read_text().splitlines()
    names = ["train", "train", "test", "train", "", "test"]
    table.write_text("\n".join([text[0] + ",split", *[f"{r},{s}" for r, s in zip(text[1:], names)]]) + "\n")
    out = tmp_path / "out"
    assert main(["table", str(table), "--split-column", "split", "--out", str(out)]) == 0
    assert _split_ids(out) == {"train": {"c0", "c1", "c3"}, "test": {"c2", "c5"}}
    assert [json.loads(x)["reason"] for x in (out / "skipped.jsonl").read_text().splitlines()] == ["no_split"]
