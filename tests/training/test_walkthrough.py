"""The README's "Fine-tune on your own data", end to end offline: a table of one's own clips (WAV and
m4a, a caption and a label each) -> fine-tune a model folder on the table's train part -> retrieval and
zero-shot on its held-out part. The three commands as the README gives them, only shorter."""

from __future__ import annotations

import csv
import json
import sys

import numpy as np
import pytest
import soundfile as sf

from clsp import CLSPConfig, CLSPModel
from clsp.data.demo import generate_clip
from clsp.eval import main as eval_main
from clsp.train import main as train_main

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "data"))
from data_helpers import write_container  # noqa: E402

pytestmark = pytest.mark.slow  # end-to-end: `make test` runs it, `pytest -m "not slow"` skips it

SPLIT = "train=0.7,val=0.15,test=0.15"


def _table(root):
    """64 demo clips at 48 kHz, every fourth one as AAC in .m4a, with a short caption and the pitch as label."""
    (root / "clips").mkdir(parents=True)
    with open(root / "mine.csv", "w", newline="") as f:
        rows = csv.writer(f)
        rows.writerow(["audio", "caption", "label"])
        for i in range(64):
            audio, meta = generate_clip(i, seed=3, split="train", sample_rate=48000)
            name = f"clips/{i:04d}.{'m4a' if i % 4 == 0 else 'wav'}"
            if name.endswith(".m4a"):
                write_container(root / name, np.asarray(audio, np.float32), 48000, "aac")
            else:
                sf.write(root / name, audio, 48000)
            rows.writerow([name, meta["captions"]["short"][0], meta["attributes"]["pitch"]])
        rows.writerow(["clips/missing.wav", "a row whose file is gone", "high"])  # counted, not fatal
    return root / "mine.csv"


def test_own_table_finetune_then_retrieval_and_zeroshot(tmp_path, monkeypatch):
    monkeypatch.setenv("CLSP_TABLE_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    table = _table(tmp_path)
    CLSPModel(CLSPConfig.tiny("htsat")).save_pretrained(tmp_path / "models" / "start")
    assert train_main(["recipe=clap_finetune", f"run.init_from={tmp_path / 'models' / 'start'}",
                       f"data.train={table}", f"data.table.split={SPLIT}", "trainer.max_steps=12",
                       "data.batch_size=8"]) == 0
    (run,) = (tmp_path / "runs" / "clap_finetune").iterdir()
    results = json.loads((run / "results.json").read_text())
    held_out = results["test"]["num_clips"]
    assert 4 <= held_out <= 20  # about 15 % of 64 rows
    split = ["--table-split", SPLIT, "--split", "test"]
    assert eval_main(["retrieval", "--model", str(run / "model"), "--data", str(table), *split,
                      "--out", str(tmp_path / "r")]) == 0
    retrieval = json.loads((tmp_path / "r" / "report.json").read_text())["models"][str(run / "model")]
    assert retrieval["num_clips"] == held_out and retrieval["t2a/R@1"] == pytest.approx(results["test"]["t2a/R@1"])
    assert eval_main(["zeroshot", "--model", str(run / "model"), "--data", str(table), *split, "--label-column",
                      "label", "--out", str(tmp_path / "z")]) == 0
    zeroshot = json.loads((tmp_path / "z" / "report.json").read_text())["models"][str(run / "model")]
    assert zeroshot["num_clips"] == held_out and 0 <= zeroshot["WA"] <= 100
