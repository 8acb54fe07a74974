"""The captioning recipes end to end: `recipe=demo_caption` as shipped (its held-out captions name their own
clip), and a few steps on 2 CPU processes (DDP over gloo) whose validation captions equal a single process's."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from test_ddp import _env

from clsp.evaluation.captioning import simple_tokenize

pytestmark = pytest.mark.slow  # end-to-end: `make test` runs it, `pytest -m "not slow"` skips it


def word_f1(prediction: str, references: list[str]) -> float:
    """Bag-of-words F1 of a caption against its best-matching reference (the metrics' own tokenisation)."""
    best = 0.0
    for reference in references:
        pred, ref = Counter(simple_tokenize(prediction).split()), Counter(simple_tokenize(reference).split())
        common = sum((pred & ref).values())
        if common:
            precision, recall = common / sum(pred.values()), common / sum(ref.values())
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def own_vs_other(captions: list[str], references: list[list[str]]) -> tuple[float, float]:
    """Mean word-F1 of each clip's caption against its own references, and against another clip's (clip i +
    n/2: every clip once, never itself)."""
    n = len(captions)
    own = sum(word_f1(c, r) for c, r in zip(captions, references)) / n
    other = sum(word_f1(c, references[(i + n // 2) % n]) for i, c in enumerate(captions)) / n
    return own, other


def test_demo_caption_recipe_learns_to_caption(tmp_path, capsys):
    from clsp import CLSPModel
    from clsp.eval import main as eval_main
    from clsp.evaluation.clips import shard_clips
    from clsp.train import main as train_main

    demo = tmp_path / "demo"
    assert train_main(["recipe=demo_caption", f"data.demo.root={demo}", f"run.output_dir={tmp_path}/runs",
                       "trainer.enable_progress_bar=false"]) == 0
    assert "held-out captions" in capsys.readouterr().out
    (run,) = (tmp_path / "runs" / "demo_caption").iterdir()
    for name in ("model/model.safetensors", "model/decoder_tokenizer", "decoder_tokenizer", "test_captions.jsonl"):
        assert (run / name).exists(), name
    header = (run / "metrics.csv").read_text().splitlines()[0]
    assert "train/caption" in header and "val/caption/CIDEr-D" in header and "val/caption/loss" in header
    # Held-out captions describe their own clip far better than another clip's: the issue asks for 1.5x.
    # Perfect short captions would score 1.68x, an untrained decoder ~1.0x. The recipe gives 1.547x here (seed 0
    # on the one torch thread tests run with, tests/conftest.py), and 1.563x / 1.542x / 1.512x with run.seed=1 / 2 / 3
    # (1.557x on 2 threads). At 1000 steps its last validation (step 896) came before the end, and seed 0
    # here gave 1.483x.
    model = CLSPModel.from_pretrained(run / "model")
    clips = list(shard_clips([str(p) for p in sorted((demo / "test").glob("*.tar"))], "all",
                             sample_rate=model.sample_rate))
    captions = model.caption([c.audio for c in clips])
    own, other = own_vs_other(captions, [c.captions for c in clips])
    print(f"word-F1 own {own:.3f}, other {other:.3f}, ratio {own / other:.3f}")  # shown with -s
    assert own >= 1.5 * other, (own, other, captions[:5])
    # `python -m clsp.eval captioning` on the held-out shards reports BLEU-4, ROUGE-L and CIDEr-D.
    out = tmp_path / "eval"
    assert eval_main(["captioning", "--model", str(run / "model"), "--data", str(demo / "test"),
                      "--out", str(out)]) == 0
    got = json.loads((out / "report.json").read_text())["models"][str(run / "model")]
    assert {"BLEU_4", "ROUGE_L", "CIDEr-D"} <= set(got) and got["num_clips"] == len(clips)
    printed = capsys.readouterr().out
    assert "BLEU_4" in printed and "CIDEr-D" in printed


def test_demo_caption_on_two_processes(demo, tmp_path):
    # 96 clips in 3 shards of 32, dealt to 2 ranks as 64 + 32: both stop at 2 batches of 16 an epoch, so 2 steps
    # end with one validation (the recipe validates every 4th epoch: here every epoch).
    overrides = [o for o in demo if not o.startswith("trainer.max_steps")]
    args = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "clsp.train",
            "recipe=demo_caption", *overrides, "trainer.devices=2", "trainer.strategy=ddp", "trainer.max_steps=2",
            "trainer.check_val_every_n_epoch=1"]
    proc = subprocess.run([sys.executable, *args], env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = (tmp_path / "runs" / "demo_caption").iterdir()
    assert json.loads((run / "results.json").read_text())["test_captioning"]["num_clips"] == 32
    rows = [r for r in csv.DictReader((run / "metrics.csv").open()) if r.get("val/caption/CIDEr-D")]
    assert len(rows) == 1
    single = _single_process_caption_validation(run)
    for key in ("caption/CIDEr-D", "caption/loss"):
        assert float(rows[0][f"val/{key}"]) == pytest.approx(single[key], abs=1e-5), key


def _single_process_caption_validation(run: Path) -> dict[str, float]:
    """The captioning part of validation, on one process, over the same clips and weights."""
    from clsp.data.config import DataConfig
    from clsp.loading import model_from_checkpoint
    from clsp.training.caption_validation import CaptionValidation
    from clsp.training.datamodule import CLSPDataModule

    model = model_from_checkpoint(run / "checkpoints" / "best.ckpt")
    data = DataConfig(**OmegaConf.to_container(OmegaConf.load(run / "config.yaml").data, resolve=True))
    validation = CaptionValidation(data.caption_val_clips)
    for clips, _ in CLSPDataModule(data, model.config, model.tokenizer).val_dataloader():
        validation.add(model, clips, rank=0, world=1)
    assert len(validation.predictions) == 32
    return validation.result(world=1)
