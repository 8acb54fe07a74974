"""Split and part arithmetic: seeded, stable splits; `--part I/N` parsing and its SLURM default."""

from __future__ import annotations

from collections import Counter

import pytest

from clsp.data.parts import WHOLE, Part, parse_part, part_from_env, resolve_part
from clsp.data.sources import Job
from clsp.data.splits import parse_fractions, split_jobs, split_of


def test_split_of_is_seeded_uniform_and_independent_of_other_rows():
    fractions = parse_fractions("train=0.8,val=0.1,test=0.1")
    groups = [f"audio/{i}.wav" for i in range(5000)]
    draw = {g: split_of(g, fractions) for g in groups}
    counts = Counter(draw.values())
    assert abs(counts["train"] / 5000 - 0.8) < 0.03 and abs(counts["val"] / 5000 - 0.1) < 0.02
    assert {g: split_of(g, fractions) for g in reversed(groups)} == draw  # no dependence on order or neighbours
    assert sum(split_of(g, fractions, seed=1) != draw[g] for g in groups) > 500


def test_split_jobs_by_hash_or_column():
    jobs = [Job(f"c{i}", {}, f"a/{i % 10}.wav") for i in range(40)]
    by_hash = split_jobs(jobs, {"train": 0.5, "test": 0.5})
    assert set(by_hash) == {"train", "test"} and sum(map(len, by_hash.values())) == 40
    for name, members in by_hash.items():  # one audio file, one split
        assert all(split_of(j.audio_path, {"train": 0.5, "test": 0.5}) == name for j in members)
    named = [Job("a", {}, "a.wav", split="train"), Job("b", {}, "b.wav", split="dev")]
    assert {k: [j.id for j in v] for k, v in split_jobs(named).items()} == {"train": ["a"], "dev": ["b"]}
    with pytest.raises(ValueError, match="sum to 0.9"):
        parse_fractions("train=0.8,val=0.1")


def test_parts():
    assert parse_part("3/8") == Part(3, 8) and Part(3, 8).tag == "p003of008"
    assert Part(3, 8).prefix("train") == "train-p003of008" and Part(3, 8).file("sizes.json") == "sizes-p003of008.json"
    assert WHOLE.prefix("shard") == "shard" and WHOLE.file("sizes.json") == "sizes.json"
    assert [t for t in range(10) if Part(1, 3).owns(t)] == [1, 4, 7]
    for bad in ("3/2", "x", "0/0", "1", "1/2/3"):
        with pytest.raises(ValueError, match="I/N"):
            parse_part(bad)
    env = {"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "8"}
    assert part_from_env(env) == Part(4, 8) and part_from_env({}) is None
    assert resolve_part("0/2", env) == Part(0, 2) and resolve_part(None, {}) == WHOLE
    with pytest.raises(ValueError, match="pass --part"):
        part_from_env({"SLURM_ARRAY_TASK_ID": "x", "SLURM_ARRAY_TASK_COUNT": "2"})
