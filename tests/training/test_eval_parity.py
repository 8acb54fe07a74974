"""Validation, the end-of-run test (results.json) and `python -m clsp.eval retrieval` score the same
clips, captions and windows the same way, for clips longer than the model's window."""

from __future__ import annotations

import json

import pytest
import torch
from omegaconf import OmegaConf

from clsp import CLSPConfig, CLSPModel
from clsp.data.demo import build_demo
from clsp.data.reader import expand_urls
from clsp.eval import main as eval_main
from clsp.evaluation.datasets import iter_shard_clips
from clsp.evaluation.embed import embed_pairs
from clsp.training.datamodule import CLSPDataModule
from clsp.training.module import batches_retrieval, embed_batch
from clsp.training.runner import finish

# (model preset, sample rate, clip seconds): every clip is longer than the tower's window
# (Whisper keeps the first 30 s, HTSAT the centre 10 s in eval mode).
CASES = [("tiny_whisper", 16000, 40.0), ("tiny_htsat", 48000, 13.0)]


class _Module:  # what `finish` reads from the LightningModule when there is no checkpoint
    def __init__(self, model):
        self.model, self.skipped, self.truncated = model, {}, 0


@pytest.mark.parametrize(("preset", "rate", "seconds"), CASES)
def test_results_json_equals_eval_retrieval_on_long_clips(tmp_path, preset, rate, seconds):
    build_demo(tmp_path / "data", n_train=1, n_val=0, n_test=8, samples_per_shard=8, sample_rate=rate,
               min_duration=seconds, max_duration=seconds + 2)
    test = str(tmp_path / "data" / "test")
    model = CLSPModel(CLSPConfig.preset(preset)).eval()
    data = {"test": test, "val_caption_policy": "short", "batch_size": 3, "num_workers": 0}
    cfg = OmegaConf.create({"data": data, "run": {"final_eval": True}})
    run = tmp_path / "run"
    results = finish(cfg, run, _Module(model), "cpu")
    assert json.loads((run / "results.json").read_text())["test"] == results["test"]

    out = tmp_path / "eval"
    assert eval_main(["retrieval", "--model", str(run / "model"), "--data", test, "--captions", "short",
                      "--out", str(out), "--no-cache"]) == 0
    evaluated = json.loads((out / "report.json").read_text())["models"][str(run / "model")]
    assert results["test"]["num_clips"] == 8
    for key, value in evaluated.items():
        assert results["test"][key] == value, key

    # Validation reads the same shards through the training loader (each rank its share) and must agree.
    loaded = CLSPModel.from_pretrained(run / "model")
    module = CLSPDataModule(data, loaded.config, loaded.tokenizer)
    parts = [embed_batch(loaded, batch) for batch in module.eval_loader(test)]
    val = batches_retrieval(parts)
    # Embeddings, not only ranks: a window taken elsewhere in the clip gives another embedding.
    pairs = embed_pairs(loaded, iter_shard_clips(expand_urls(test), "short"))
    torch.testing.assert_close(torch.cat([a for a, _, _ in parts]), pairs.audio, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.cat([t for _, t, _ in parts]), pairs.text, atol=1e-5, rtol=0)
    assert val["n_clips"] == 8 and val["n_captions"] == evaluated["num_captions"]
    for key in ("t2a/R@1", "t2a/R@5", "t2a/mean_rank", "a2t/R@1", "a2t/R@5", "a2t/mean_rank", "t2a/mAP@10",
                "a2t/mAP@10"):
        assert val[key] == pytest.approx(evaluated[key], abs=1e-9), key
