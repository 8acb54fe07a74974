"""`python -m clsp.eval captioning` and `suite captioning` end to end with a tiny random captioner: the captions
written out are the model's own, the scores are pycocoevalcap's, the CLAP score is the clip-caption cosine."""

from __future__ import annotations

import json

import pytest
import replicas
import torch

import clsp.eval as cli
from clsp.evaluation.captioning import caption_metrics
from clsp.evaluation.official import clotho


@pytest.fixture(scope="module")
def captioner(tmp_path_factory):
    """(saved tiny model folder with a caption decoder, the loaded model)."""
    from clsp.config import CLSPConfig
    from clsp.model import CLSPModel

    root = tmp_path_factory.mktemp("captioner")
    torch.manual_seed(0)
    CLSPModel(CLSPConfig.preset("tiny_whisper_caption")).save_pretrained(root / "model")
    return root / "model", CLSPModel.from_pretrained(root / "model")


def _jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _no_java(monkeypatch) -> None:
    # Java's metrics and tokenizer run in tests/evaluation/test_captioning.py and the demo test; without Java
    # they are unavailable (METEOR, SPICE) or replaced (PTB by clsp's Python tokenisation), which is quick.
    import clsp.evaluation.captioning as captioning

    monkeypatch.setattr(captioning, "java_problem", lambda: "Java is not installed (test)")


def test_captioning_on_an_official_set(captioner, tmp_path, capsys, monkeypatch):
    _no_java(monkeypatch)
    model_dir, model = captioner
    root = replicas.clotho(tmp_path / "data")
    out = tmp_path / "out"
    argv = ["captioning", "--model", str(model_dir), "--data", f"clotho:{root}", "--out", str(out),
            "--max-new-tokens", "8"]
    assert cli.main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    got = report["models"][str(model_dir)]
    records = _jsonl(out / "captions.jsonl")
    found = clotho(root)
    assert [r["key"] for r in records] == [c.key for c in found.clips] and got["num_clips"] == 4
    assert [r["references"] for r in records] == [c.captions for c in found.clips]  # all 5 per clip
    # Independent: the model's own captions and cosines, scored by pycocoevalcap directly.
    paths = [str(c.path) for c in found.clips]
    captions = model.caption(paths, max_new_tokens=8)
    assert [r["caption"] for r in records] == captions
    cosine = (model.encode_audio(paths) * model.encode_text(captions)).sum(-1)
    assert [r["clap_score"] for r in records] == pytest.approx(cosine.tolist(), abs=1e-5)
    assert got["clap_score"] == pytest.approx(float(cosine.mean()), abs=1e-5)
    direct = caption_metrics(captions, [c.captions for c in found.clips], tokenizer="simple")
    for name in ("BLEU_1", "BLEU_4", "ROUGE_L", "CIDEr-D"):
        assert got[name] == pytest.approx(direct["scores"][name], abs=1e-9), name
    # A metric that cannot run is listed with why, never scored.
    printed = capsys.readouterr().out
    for name, why in got["unavailable"].items():
        assert name not in got and why and f"{name} unavailable" in printed
    assert {"METEOR", "SPICE", "SPIDEr"} <= set(got["unavailable"])


def test_captioning_on_shards(captioner, tmp_path, monkeypatch):
    from clsp.data.demo import build_demo

    _no_java(monkeypatch)
    model_dir, _ = captioner
    build_demo(tmp_path / "demo", n_train=1, n_val=1, n_test=6, samples_per_shard=4)
    out = tmp_path / "out"
    argv = ["captioning", "--model", str(model_dir), "--data", str(tmp_path / "demo" / "test"), "--out", str(out),
            "--captions", "short", "--caption-tokenizer", "simple", "--num-beams", "2", "--max-new-tokens", "6"]
    assert cli.main(argv) == 0
    got = json.loads((out / "report.json").read_text())["models"][str(model_dir)]
    assert got["num_clips"] == 6 and {"BLEU_4", "ROUGE_L", "CIDEr-D"} <= set(got)
    assert "Java is not installed" in got["unavailable"]["METEOR"] and "METEOR" not in got
    assert all(len(r["references"]) == 1 for r in _jsonl(out / "captions.jsonl"))  # the short caption


def test_captioning_needs_a_decoder(tmp_path, capsys):
    from clsp.config import CLSPConfig
    from clsp.model import CLSPModel

    CLSPModel(CLSPConfig.tiny()).save_pretrained(tmp_path / "plain")
    root = replicas.clotho(tmp_path / "data")
    assert cli.main(["captioning", "--model", str(tmp_path / "plain"), "--data", f"clotho:{root}",
                     "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "no caption decoder" in err and len(err.splitlines()) == 1
    assert cli.main(["captioning", "--model", "m", "--data", f"clotho:{root}", "--num-beams", "0"]) == 2


def test_captioning_suite_with_published_rows(captioner, tmp_path, monkeypatch):
    _no_java(monkeypatch)
    model_dir, _ = captioner
    replicas.all_sets(tmp_path / "data")
    out = tmp_path / "out"
    assert cli.main(["suite", "captioning", "--model", str(model_dir), "--root", str(tmp_path / "data"),
                     "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert set(report["results"]) == {"clotho/captioning", "audiocaps/captioning"} and report["not_found"] == []
    assert report["results"]["audiocaps/captioning"][str(model_dir)]["num_clips"] == 5
    assert any(p["metrics"].get("SPIDEr") for p in report["published"]["clotho/captioning"])
    assert len(_jsonl(next(out.glob("captions_clotho_captioning_*.jsonl")))) == 4
    md = (out / "report.md").read_text()
    assert "## clotho/captioning" in md and "CoNeTTE" in md and "SPICE unavailable" in md
