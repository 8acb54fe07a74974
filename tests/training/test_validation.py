"""Validation, the end-of-run test (results.json) and `python -m clsp.eval retrieval` take one path
(`clsp.evaluation.retrieval`): the same clips, captions, windows and numbers."""

from __future__ import annotations

import csv
import json
from dataclasses import astuple

import pytest
from omegaconf import OmegaConf

from clsp import CLSPConfig, CLSPModel
from clsp.data.demo import build_demo
from clsp.data.samples import read_samples
from clsp.data.writer import ShardWriter
from clsp.eval import main as eval_main
from clsp.evaluation.embed import embed_pairs
from clsp.evaluation.retrieval import join_pairs, retrieval_scores
from clsp.train import main as train_main
from clsp.training.compose import compose_config, typed_config
from clsp.training.datamodule import CLSPDataModule
from clsp.training.runner import finish

# (model preset, sample rate, clip seconds): every clip is longer than the tower's window
# (Whisper keeps the first 30 s, HTSAT the centre 10 s in eval mode).
CASES = [("tiny_whisper", 16000, 40.0), ("tiny_htsat", 48000, 13.0)]


class _Module:  # what `finish` reads from the LightningModule when there is no checkpoint
    def __init__(self, model):
        self.model = model


def _validation(model: CLSPModel, data) -> dict[str, float]:
    """What the training module's validation computes on one process: its loader, its embedding call."""
    datamodule = CLSPDataModule(data, model.config, model.tokenizer)
    parts = [embed_pairs(model, clips, batch_size=len(clips)) for clips, _ in datamodule.val_dataloader() if clips]
    whole = join_pairs(parts)
    return retrieval_scores(whole.audio, whole.text, whole.caption_to_clip)[0]


@pytest.mark.slow
@pytest.mark.parametrize(("preset", "rate", "seconds"), CASES)
def test_results_json_equals_eval_and_validation_on_long_clips(tmp_path, preset, rate, seconds):
    build_demo(tmp_path / "data", n_train=1, n_val=0, n_test=8, samples_per_shard=8, sample_rate=rate,
               min_duration=seconds, max_duration=seconds + 2)
    test = str(tmp_path / "data" / "test")
    model = CLSPModel(CLSPConfig.preset(preset)).eval()
    cfg = typed_config(compose_config(["recipe=demo", f"model={preset}", f"data.test={test}", f"data.val={test}",
                                       "data.batch_size=3", "data.num_workers=0"]))
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
    val = _validation(CLSPModel.from_pretrained(run / "model"), cfg.data)
    for key, value in evaluated.items():
        assert val[key] == pytest.approx(value, abs=1e-9), key


def _half_without_short(src: str, out) -> str:
    """The clips of `src` again, every second one without its short captions."""
    with ShardWriter(out, prefix="val") as writer:
        for i, sample in enumerate(read_samples(src)):
            captions = dict(sample.captions) if i % 2 == 0 else {"long": sample.captions["long"]}
            writer.write(sample.key, sample.audio, sample.sample_rate, {**sample.meta, "captions": captions})
    return str(out)


@pytest.mark.slow
def test_last_validation_equals_results_json_when_clips_lack_the_kind(demo_root, demo, tmp_path):
    """The rule for a clip without the asked-for caption kind is one: left out and counted, everywhere."""
    val = _half_without_short(f"{demo_root}/val", tmp_path / "half")
    argv = ["recipe=demo", *demo, f"data.val={val}", f"data.test={val}", "data.val_caption_policy=short",
            "trainer.max_steps=6", "trainer.val_check_interval=null", "trainer.check_val_every_n_epoch=1"]
    assert train_main(argv) == 0
    run = next((tmp_path / "runs" / "demo").iterdir())
    rows = [r for r in csv.DictReader((run / "metrics.csv").open()) if r.get("val/t2a/R@1")]
    results = json.loads((run / "results.json").read_text())
    assert results["test"]["num_clips"] == 16 and results["test_skipped"] == {"no_short_caption": 16}
    assert float(rows[-1]["val/num_clips"]) == 16
    assert float(rows[-1]["val/t2a/R@1"]) == pytest.approx(results["test"]["t2a/R@1"], abs=1e-6)
    assert float(rows[-1]["val/mAP@10"]) == pytest.approx(results["test"]["mAP@10"], abs=1e-6)
    OmegaConf.load(run / "config.yaml")  # config.yaml is what ran, and loads
    assert astuple  # noqa: B018 - keep the import used when the first test is deselected
