"""One end-to-end run of `python -m clsp.eval retrieval` with the real tiny CLSPModel."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from eval_fakes import WORDS

import clsp.eval as cli
from clsp.evaluation import retrieval_metrics


def test_cli_retrieval_with_tiny_model(tmp_path, tone_files):
    model_mod = pytest.importorskip("clsp.model")
    config_mod = pytest.importorskip("clsp.config")
    model = model_mod.CLSPModel(config_mod.CLSPConfig.tiny()).eval()
    model.save_pretrained(tmp_path / "model")
    with open(tmp_path / "t.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["audio", "caption"])
        w.writerows([(name, f"a {WORDS[c]} tone") for name, c in tone_files[:4]])
        w.writerows([(name, f"{WORDS[c]} pitched beep") for name, c in tone_files[:4]])
    out = tmp_path / "out"
    argv = ["retrieval", "--model", str(tmp_path / "model"), "--data", str(tmp_path / "t.csv"), "--out", str(out)]
    assert cli.main(argv) == 0
    got = json.loads((out / "report.json").read_text())["models"][str(tmp_path / "model")]
    # Independent: encode directly with the model, dense metrics.
    audio = model.encode_audio([str(tmp_path / name) for name, _ in tone_files[:4]])
    texts = [f"a {WORDS[c]} tone" for _, c in tone_files[:4]] + [f"{WORDS[c]} pitched beep" for _, c in tone_files[:4]]
    expected = retrieval_metrics(audio, model.encode_text(texts), torch.arange(8) % 4)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-6), key
    assert cli.main(argv) == 0
    assert json.loads((out / "report.json").read_text())["cache"] == {"hits": 1, "misses": 0}
