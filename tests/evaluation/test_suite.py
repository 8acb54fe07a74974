"""`python -m clsp.eval suite` and `--data NAME:DIR` end to end on generated replicas with the real tiny model."""

from __future__ import annotations

import csv
import json

import pytest
import replicas
import torch

import clsp.eval as cli
from clsp.evaluation import SUITES, retrieval_metrics, zeroshot_metrics
from clsp.evaluation.catalog import load_official, with_labels
from clsp.evaluation.zeroshot import class_embeddings, label_targets


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(saved tiny model folder, replica root, the loaded model)."""
    from clsp.config import CLSPConfig
    from clsp.model import CLSPModel

    root = tmp_path_factory.mktemp("suite")
    model = CLSPModel(CLSPConfig.tiny()).eval()
    model.save_pretrained(root / "model")
    replicas.all_sets(root / "data")
    return root / "model", root / "data", model


def test_suite_names_match_parser():
    for name in SUITES:
        assert cli.build_parser().parse_args(["suite", name, "--model", "m", "--root", "r"]).suite == name


def test_clap_suite_end_to_end(tiny, tmp_path, capsys):
    model_dir, data, model = tiny
    out = tmp_path / "out"
    argv = ["suite", "clap", "--model", str(model_dir), "--root", str(data), "--out", str(out)]
    assert cli.main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    spec = str(model_dir)
    assert set(report["results"]) == {"audiocaps", "clotho", "esc50", "us8k"} and report["not_found"] == []
    # Missing clips are counted and listed; metrics say over how many clips they ran.
    ac = report["results"]["audiocaps"][spec]
    assert ac["num_clips"] == 5 and ac["listed_clips"] == 8 and ac["missing_clips"] == 3
    assert report["sets"]["audiocaps"]["missing_count"] == 3
    # Independent check: encode the found clips directly, dense metrics.
    found = load_official("audiocaps", data / "AudioCaps")
    audio = model.encode_audio([str(c.path) for c in found.clips])
    text = model.encode_text([t for c in found.clips for t in c.captions])
    expected = retrieval_metrics(audio, text, torch.arange(5).repeat_interleave(5))
    for key in ("t2a/R@1", "a2t/R@5", "a2t/mAP@10", "a2t/mAP@10_laion", "t2a/medR"):
        assert ac[key] == pytest.approx(expected[key], abs=1e-4), key
    esc = load_official("esc50", data / "ESC-50-master")
    _, clips, names = with_labels(esc, None)
    direct = zeroshot_metrics(model.encode_audio([str(c.path) for c in clips]),
                              class_embeddings(model, names, ["This is a sound of {label}."]),
                              label_targets(clips, names), names)
    got = report["results"]["esc50"][spec]
    assert got["WA"] == pytest.approx(direct["WA"], abs=1e-6)
    assert {f"WA_fold{k}" for k in range(1, 6)} <= set(got) and "WA_fold_mean" in got
    assert report["protocols"]["esc50"]["templates"] == ["This is a sound of {label}."]
    # Published rows name their paper; the markdown shows them beside the model, with plots.
    md = (out / "report.md").read_text()
    assert "FusionAudio (Chen et al., ACL 2026)" in md and "LAION-CLAP (Wu et al., ICASSP 2023)" in md
    assert "missingAAA1: no audio file" in md
    assert "5 of 8 listed clips evaluated, 3 missing" in md
    for png in ("summary.png", "rank_histogram_audiocaps.png", "rank_histogram_clotho.png"):
        assert (out / png).stat().st_size > 1000
    # A re-run reads every data set from the cache: nothing is encoded again (2 retrieval sets, and the
    # audio and the prompts of 2 zero-shot sets).
    assert cli.main(argv) == 0
    assert json.loads((out / "report.json").read_text())["cache"] == {"hits": 6, "misses": 0}


def test_clsp_suite_shares_audio_and_lists_missing(tiny, tmp_path, monkeypatch):
    model_dir, data, model = tiny
    encoded = []
    from clsp.evaluation import tasks

    real = tasks.encode_clips
    monkeypatch.setattr(tasks, "encode_clips", lambda m, clips, *a, **k: (encoded.append(len(clips)), real(m, clips, *a, **k))[1])
    ratings = tmp_path / "ratings.csv"
    clips = sorted((data / "RAVDESS" / "Actor_01").glob("03-01-*.wav"))
    with open(ratings, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["audio", "description", "score"])
        w.writerows([(str(p), f"a speaker in a {k} tone", k) for k, p in enumerate(clips, 1)])
    out = tmp_path / "out"
    argv = ["suite", "clsp", "--model", str(model_dir), "--root", str(data), "--out", str(out), "--no-cache",
            "--ratings", str(ratings)]
    assert cli.main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    assert set(report["results"]) == {"ravdess/emotion", "ravdess/gender", "crema-d/emotion", "crema-d/age", "style"}
    assert sorted(encoded) == [12, 16]  # RAVDESS and CREMA-D each encoded once for both of their tasks
    assert report["results"]["crema-d/age"][str(model_dir)]["num_clips"] == 9  # actor 1004 has no age
    assert report["protocols"]["crema-d/age"]["without_label"] == 3
    assert report["protocols"]["ravdess/emotion"]["templates"] == ["A speaker in a {label} tone."]
    assert "pearson" in report["results"]["style"][str(model_dir)]
    assert "CLSP / FCaps (Yang et al., ACL 2026)" in (out / "report.md").read_text()
    # Without the ratings table and with one set gone, both are listed, not fatal.
    assert cli.main(argv[:-2] + ["--root", str(data / "RAVDESS")]) == 0
    report = json.loads((out / "report.json").read_text())
    assert set(report["results"]) == {"ravdess/emotion", "ravdess/gender"}
    assert any(line.startswith("crema-d:") for line in report["not_found"])
    assert any(line.startswith("ratings:") for line in report["not_found"])


def test_data_name_dir_and_heldout_fold(tiny, tmp_path):
    model_dir, data, _ = tiny
    out = tmp_path / "z"
    argv = ["zeroshot", "--model", str(model_dir), "--data", f"esc50:{data / 'ESC-50-master'}", "--out", str(out),
            "--fold", "5"]
    assert cli.main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["models"][str(model_dir)]["num_clips"] == 3  # fold 5 without its missing clip
    assert report["protocol"] == "held-out fold 5 only"
    assert report["official"]["missing_clips"] == 1
    argv = ["zeroshot", "--model", str(model_dir), "--data", f"ravdess:{data / 'RAVDESS'}", "--label-column", "gender",
            "--out", str(out)]
    assert cli.main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["models"][str(model_dir)]["class_names"] == ["male", "female"]
    assert report["templates"] == ["A {label} speaker."]
    argv = ["retrieval", "--model", str(model_dir), "--data", f"clotho:{data / 'clotho'}", "--out", str(tmp_path / "r")]
    assert cli.main(argv) == 0
    got = json.loads((tmp_path / "r" / "report.json").read_text())
    assert got["models"][str(model_dir)]["num_clips"] == 4 and got["official"]["missing"] == ["gone, missing.wav: no audio file"]


@pytest.mark.parametrize("argv, match", [
    (["zeroshot", "--data", "clotho:{data}/clotho"], "retrieval set"),
    (["zeroshot", "--data", "ravdess:{data}/RAVDESS", "--label-column", "pitch"], "no label column 'pitch'"),
    (["retrieval", "--data", "esc50:{data}/nowhere"], "not found"),
    (["suite", "clap", "--root", "{data}/nowhere"], "not a folder"),
])
def test_bad_input_is_one_line(tiny, tmp_path, capsys, argv, match):
    model_dir, data, _ = tiny
    argv = [a.format(data=data) for a in argv] + ["--model", str(model_dir), "--out", str(tmp_path)]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and match in err[0]


def test_heldout_fold_is_stated(tiny, tmp_path):
    from eval_fakes import FakeModel

    from clsp.evaluation import report, run_suite
    from clsp.evaluation.embed import EmbeddingCache

    _, data, _ = tiny
    payload = run_suite("clap", ["fake"], data / "ESC-50-master", load_model=lambda spec: FakeModel(),
                        cache=EmbeddingCache(None), esc50_fold="05")
    assert list(payload["results"]) == ["esc50"]
    assert [line.split(":")[0] for line in payload["not_found"]] == ["audiocaps", "clotho", "us8k"]
    assert payload["results"]["esc50"]["fake"]["num_clips"] == 3 and "WA_fold_mean" not in payload["results"]["esc50"]["fake"]
    assert payload["protocols"]["esc50"]["heldout_fold"] == "5"
    _, md = report.write_suite_report(tmp_path, payload)
    assert "Evaluated on held-out fold 5 only" in md.read_text()
