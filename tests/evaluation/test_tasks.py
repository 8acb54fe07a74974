"""Evaluation tasks end to end on generated wavs with a fake model: API, CLI, reports, cache, bad input."""

from __future__ import annotations

import csv
import io
import json
import re
import tarfile

import numpy as np
import pytest
import soundfile as sf
from eval_fakes import FREQS, RATE, WORDS, FakeModel, tone
from scipy import stats

import clsp.eval as cli
from clsp.evaluation import (
    evaluate_retrieval,
    evaluate_similarity,
    evaluate_zeroshot,
    load_label_table,
    load_retrieval_table,
    load_similarity_table,
    score_pairs,
)


def _csv(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture
def models(monkeypatch):
    """Patch the CLI's model loader: spec -> a FakeModel (noise level from the spec)."""
    made: dict[str, FakeModel] = {}

    def load(spec, device):
        made[spec] = FakeModel(fingerprint=spec, noise=0.5 if "noisy" in spec else 0.05)
        return made[spec]

    monkeypatch.setattr(cli, "_load_model", load)
    return made


@pytest.fixture
def caption_table(tmp_path, tone_files):
    # One row per caption, two captions per clip (AudioCaps layout).
    rows = [(f, f"a {WORDS[c]} tone") for f, c in tone_files] + [(f, f"{WORDS[c]} pitched beep") for f, c in tone_files]
    return _csv(tmp_path / "captions.csv", ["audio", "caption"], rows)


def test_retrieval_api(tmp_path, tone_files, fake_model):
    paths = [str(tmp_path / f) for f, _ in tone_files]
    captions = [[f"a {WORDS[c]} tone", f"the {WORDS[c]} one"] for _, c in tone_files]
    m = evaluate_retrieval(fake_model, paths, captions)
    assert m["num_clips"] == 8 and m["num_captions"] == 16
    # Each class has two clips and the captions only name the class: the right clip is in the top 2.
    assert m["t2a/R@5"] == 100.0 and m["a2t/R@1"] >= 50.0
    # In-memory waveforms give the same numbers as the files.
    waves = [tone(FREQS[c], 0.2 + 0.05 * i) for i, (_, c) in enumerate(tone_files)]
    assert evaluate_retrieval(fake_model, waves, captions, sample_rate=RATE) == pytest.approx(m)


def test_table_layouts(tmp_path, tone_files):
    # Clotho layout: caption_1..caption_N columns; JSONL with a list column.
    _csv(tmp_path / "clotho.csv", ["file_name", "caption_1", "caption_2"],
         [(f, f"{WORDS[c]} a", f"{WORDS[c]} b") for f, c in tone_files])
    clips = load_retrieval_table(tmp_path / "clotho.csv")
    assert len(clips) == 8 and all(len(c.captions) == 2 for c in clips)
    with open(tmp_path / "t.jsonl", "w") as f:
        for name, c in tone_files:
            f.write(json.dumps({"path": name, "short_captions": [WORDS[c]], "long_captions": ["x", "y"]}) + "\n")
    clips = load_retrieval_table(tmp_path / "t.jsonl", captions="long")
    assert [c.kinds for c in clips[:1]] == [["long", "long"]]
    assert load_retrieval_table(tmp_path / "t.jsonl")[0].captions == [WORDS[0], "x", "y"]


def test_zeroshot_api(tmp_path, tone_files, fake_model):
    # Clip 0 (a "low" tone) is labelled "mid": WA 7/8, recall low 1/1, mid 2/3.
    rows = [(f, "mid" if i == 0 else WORDS[c]) for i, (f, c) in enumerate(tone_files)]
    clips = load_label_table(_csv(tmp_path / "labels.csv", ["filename", "category"], rows))
    m = evaluate_zeroshot(fake_model, clips, class_names=WORDS,
                          templates=["This is a sound of {label}.", "a {label} sound"])
    assert m["WA"] == pytest.approx(100 * 7 / 8)
    assert m["per_class_recall"] == pytest.approx({"low": 100.0, "mid": 100 * 2 / 3, "high": 100.0, "top": 100.0})
    assert m["UAR"] == pytest.approx(100 * (1 + 2 / 3 + 1 + 1) / 4)
    assert m["confusion"][1] == [1, 2, 0, 0]


def test_similarity_api(tmp_path, tone_files, fake_model):
    rng = np.random.default_rng(0)
    rows = [(f, f"{WORDS[(c + i) % 4]} voice", float(rng.integers(1, 6))) for i, (f, c) in enumerate(tone_files)]
    clips = load_similarity_table(_csv(tmp_path / "sim.csv", ["audio", "description", "score"], rows))
    m = evaluate_similarity(fake_model, clips)
    assert m["num_pairs"] == 8
    assert m["pearson"] == pytest.approx(stats.pearsonr(m["cosine"], m["human"])[0], abs=1e-9)
    assert m["spearman"] == pytest.approx(stats.spearmanr(m["cosine"], m["human"])[0], abs=1e-6)


def test_cli_retrieval_report_and_cache(tmp_path, caption_table, models, capsys):
    out = tmp_path / "out"
    argv = ["retrieval", "--model", "fake-a", "--model", "fake-noisy", "--data", str(caption_table), "--out", str(out)]
    assert cli.main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    assert set(report["models"]) == {"fake-a", "fake-noisy"}
    assert report["models"]["fake-a"]["t2a/R@5"] == 100.0
    assert "fake-noisy" in (out / "report.md").read_text()
    assert (out / "rank_histogram.png").stat().st_size > 1000
    assert "t2a/R@1" in capsys.readouterr().out
    assert list((out / ".cache").glob("*.safetensors"))
    # Second run: every embedding comes from the cache, no encoder is called.
    assert cli.main(argv) == 0
    assert all(m.audio_calls == 0 and m.text_calls == 0 for m in models.values())
    again = json.loads((out / "report.json").read_text())
    assert again["models"] == report["models"] and again["cache"] == {"hits": 2, "misses": 0}


def test_cli_zeroshot(tmp_path, tone_files, models):
    _csv(tmp_path / "z.csv", ["audio", "label"], [(f, WORDS[c]) for f, c in tone_files])
    (tmp_path / "labels.txt").write_text("\n".join(WORDS) + "\nextra\n")
    out = tmp_path / "z"
    argv = ["zeroshot", "--model", "fake", "--data", str(tmp_path / "z.csv"), "--labels", str(tmp_path / "labels.txt"),
            "--template", "This is a sound of {label}.", "--template", "{label}", "--out", str(out)]
    assert cli.main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["models"]["fake"]["WA"] == 100.0 and report["templates"][1] == "{label}"
    assert (out / "confusion_fake.png").is_file()
    assert cli.main(argv) == 0 and models["fake"].audio_calls == models["fake"].text_calls == 0


def test_cli_similarity_and_score(tmp_path, tone_files, models):
    _csv(tmp_path / "s.csv", ["audio", "style", "rating"], [(f, f"{WORDS[c]} voice", i) for i, (f, c) in enumerate(tone_files)])
    assert cli.main(["similarity", "--model", "fake", "--data", str(tmp_path / "s.csv"), "--out", str(tmp_path / "s")]) == 0
    assert "pearson" in json.loads((tmp_path / "s" / "report.json").read_text())["models"]["fake"]

    # Every clip gets a matching caption and one naming another tone (cosine near 0).
    rows = [(f, f"a {WORDS[c]} tone") for f, c in tone_files] + [(f, f"a {WORDS[(c + 1) % 4]} tone") for f, c in tone_files]
    table = _csv(tmp_path / "pairs.csv", ["audio", "caption"], rows)
    out = tmp_path / "score"
    assert cli.main(["score", "--model", "fake", "--data", str(table), "--out", str(out), "--threshold", "0.5"]) == 0
    records = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    assert len(records) == 16 and set(records[0]) == {"key", "caption", "kind", "score"}
    kept = [json.loads(line)["caption"] for line in (out / "kept.jsonl").read_text().splitlines()]
    dropped = [json.loads(line)["caption"] for line in (out / "dropped.jsonl").read_text().splitlines()]
    assert len(kept) == len(dropped) == 8
    assert sorted(kept) == sorted(c for _, c in rows[:8])


def _write_shard(path, tone_files, kinds=("short", "long")):
    with tarfile.open(path, "w") as tar:
        for i, (_, c) in enumerate(tone_files):
            buf = io.BytesIO()
            sf.write(buf, tone(FREQS[c], 0.2 + 0.05 * i), RATE, format="WAV")
            captions = {"short": [f"{WORDS[c]} tone"], "long": [f"a long {WORDS[c]} tone"]}
            meta = {"id": f"k{i}", "captions": {k: captions[k] for k in kinds}}
            for ext, data in (("wav", buf.getvalue()), ("json", json.dumps(meta).encode())):
                info = tarfile.TarInfo(f"k{i}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def test_shards_api(tmp_path, tone_files, fake_model):
    from clsp.evaluation.clips import shard_clips

    shard = _write_shard(tmp_path / "test-0000.tar", tone_files)
    records = score_pairs(fake_model, shard_clips([str(shard)], captions="long"))
    assert len(records) == 8 and {r["kind"] for r in records} == {"long"}
    assert sorted(r["key"] for r in records) == [f"k{i}" for i in range(8)]
    assert all(r["caption"].startswith("a long") for r in records)


def test_shards_cli(tmp_path, tone_files, models, capsys):
    shard = _write_shard(tmp_path / "s-0000.tar", tone_files, kinds=("short",))
    out = tmp_path / "r"
    assert cli.main(["retrieval", "--model", "fake", "--data", str(shard), "--out", str(out), "--captions", "short"]) == 0
    assert json.loads((out / "report.json").read_text())["models"]["fake"]["num_clips"] == 8
    # No long captions at all: every sample is a counted skip and the empty set is an error.
    assert cli.main(["retrieval", "--model", "fake", "--data", str(shard), "--out", str(out), "--captions", "long"]) == 2
    err = capsys.readouterr().err
    assert "error: no clips to evaluate" in err and '"no_long_caption": 8' in err


def test_bad_rows_are_skipped_counted_and_named(tmp_path, tone_files, models, capsys):
    """A missing file or an empty caption costs its row, not the evaluation; the report says which."""
    good = [(f, WORDS[c]) for f, c in tone_files]
    data = tmp_path / "t.csv"
    _csv(data, ["audio", "caption"], good + [("audio/nope.wav", "x"), (good[0][0].replace("0", "9"), "")])
    out = tmp_path / "o"
    assert cli.main(["retrieval", "--model", "fake", "--data", str(data), "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["models"]["fake"]["num_clips"] == 8
    assert report["skipped"]["counts"] == {"missing_file": 1, "empty_caption": 1}
    assert any("line 10" in e and "nope.wav" in e for e in report["skipped"]["examples"])
    assert "skipped:" in capsys.readouterr().out
    # Similarity: a row whose score is not a number is skipped the same way.
    scored = tmp_path / "s.csv"
    _csv(scored, ["audio", "description", "score"], [(f, "voice", k) for k, (f, _) in enumerate(tone_files)] +
         [(tone_files[0][0], "voice", "high")])
    assert cli.main(["similarity", "--model", "fake", "--data", str(scored), "--out", str(out)]) == 0
    assert json.loads((out / "report.json").read_text())["skipped"]["counts"] == {"bad_score": 1}


@pytest.mark.parametrize(
    "case, match",
    [
        ("no_caption_column", r"no caption column"),
        ("empty_table", r"no rows"),
        ("missing_table", r"table not found"),
        ("label_not_in_list", r"line 2 .*label 'low' is not in the label list"),
        ("no_label_column", r"no label column"),
        ("zeroshot_on_shards", r"needs a table"),
        ("bad_template", r"no \{label\} placeholder"),
    ],
)
def test_cli_bad_input(tmp_path, tone_files, models, capsys, case, match):
    good = [(f, WORDS[c]) for f, c in tone_files]
    data = tmp_path / "t.csv"
    task, extra = "retrieval", []
    if case == "no_caption_column":
        _csv(data, ["audio", "words"], good)
    elif case == "empty_table":
        _csv(data, ["audio", "caption"], [])
    elif case == "missing_table":
        data = tmp_path / "missing.csv"
    elif case == "label_not_in_list":
        _csv(data, ["audio", "label"], good)
        (tmp_path / "l.txt").write_text("mid\nhigh\ntop\n")
        task, extra = "zeroshot", ["--labels", str(tmp_path / "l.txt")]
    elif case == "no_label_column":
        _csv(data, ["audio", "caption"], good)
        task = "zeroshot"
    elif case == "zeroshot_on_shards":
        data = tmp_path / "x-0000.tar"
        with tarfile.open(data, "w"):
            pass
        task = "zeroshot"
    elif case == "bad_template":
        _csv(data, ["audio", "label"], good)
        task, extra = "zeroshot", ["--template", "no placeholder"]
    code = cli.main([task, "--model", "fake", "--data", str(data), "--out", str(tmp_path / "o"), *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and "Traceback" not in err
    assert re.search(match, err), err
    assert not models or all(m.audio_calls == 0 for m in models.values())
