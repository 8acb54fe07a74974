"""End-to-end training runs on tiny configs: each recipe family, export, config errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from clsp import CLSPModel
from clsp.train import main as train_main

pytestmark = pytest.mark.slow  # end-to-end: `make test` runs it, `pytest -m "not slow"` skips it


def _run_dir(tmp_path: Path, name: str) -> Path:
    runs = sorted((tmp_path / "runs" / name).iterdir())
    assert len(runs) == 1
    return runs[0]


def test_demo_recipe_runs_and_writes_everything(demo, tmp_path, capsys):
    assert train_main(["recipe=demo", *demo]) == 0
    out = capsys.readouterr().out
    assert "t2a/R@1" in out and "chance" in out and "model written to" in out
    run = _run_dir(tmp_path, "demo")
    for name in ("config.yaml", "metrics.csv", "results.json", "checkpoints/last.ckpt", "checkpoints/best.ckpt",
                 "model/config.json", "model/model.safetensors", "tokenizer/tokenizer.json"):
        assert (run / name).exists(), name
    results = json.loads((run / "results.json").read_text())
    assert results["test"]["num_clips"] == 32
    card = (run / "model" / "README.md").read_text()  # the model card carries the run's test table
    assert f"| test / t2a/R@1 | {results['test']['t2a/R@1']:.4g} |" in card and "library_name: clsp" in card
    header = (run / "metrics.csv").read_text().splitlines()[0]
    assert "train/loss" in header and "val/mAP@10" in header and "train/logit_scale" in header
    model = CLSPModel.from_pretrained(run / "model")
    assert model.encode_text(["a high beep"]).shape == (1, 64)


def test_fusionaudio_shaped_run(fast, demo_root, tmp_path):
    # HTSAT + long captions + global, token-level and multi-positive losses.
    code = train_main(["recipe=fusionaudio", "model=tiny_htsat", "model.audio.pretrained=null", "trainer=cpu", *fast,
                       f"data.train={demo_root}/train", f"data.val={demo_root}/val", "data.epoch_mode=true",
                       "data.samples_per_epoch=null", "trainer.max_steps=3", "trainer.val_check_interval=null",
                       "data.batch_size=8"])
    assert code == 0
    run = _run_dir(tmp_path, "fusionaudio")
    header = (run / "metrics.csv").read_text().splitlines()[0]
    assert "train/token" in header and "train/multipositive" in header and "train/global" in header


@pytest.mark.parametrize("recipe, term", [("fcaps_stage2", "train/loss"), ("fcaps_stage3", "train/hard_negative")])
def test_fcaps_shaped_runs(fast, demo_root, tmp_path, recipe, term):
    code = train_main([f"recipe={recipe}", "model=tiny_whisper", "trainer=cpu", *fast,
                       f"data.train={demo_root}/train", "data.epoch_mode=true", "data.samples_per_epoch=null",
                       "trainer.max_steps=3"])
    assert code == 0
    run = _run_dir(tmp_path, recipe)
    assert term in (run / "metrics.csv").read_text().splitlines()[0]


def test_export_round_trip(demo, tmp_path):
    from clsp.export import main as export_main

    assert train_main(["recipe=demo", *demo]) == 0
    run = _run_dir(tmp_path, "demo")
    assert export_main([str(run / "checkpoints" / "best.ckpt"), str(tmp_path / "exported")]) == 0
    a = CLSPModel.from_pretrained(tmp_path / "exported")
    b = CLSPModel.from_pretrained(run / "model")
    texts = ["a loud high beep", "quiet low hum"]
    torch.testing.assert_close(a.encode_text(texts), b.encode_text(texts), atol=0, rtol=0)
    assert export_main([str(tmp_path / "missing.ckpt"), str(tmp_path / "x")]) == 2


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["recipe=nope"], "unknown recipe 'nope'"),
        (["recipe=demo", "optim.not_a_key=1"], "not_a_key"),
        (["recipe=demo", "model=nope"], "bad override"),
        (["recipe=fusionaudio"], "data.train"),
        (["recipe=demo", "loss.global.weight=nan"], "finite"),
        (["recipe=fusionaudio", "trainer=cpu", "model.audio.pretrained=/x", "data.train=/no/such/shards-{000..003}.tar"], "data.train"),
        (["recipe=demo", "notakeyvalue"], "key=value"),
        (["recipe=demo", "trainer=deepspeed2", "trainer.ema_decay=0.99"], "ema_decay"),
    ],
)
def test_config_errors_are_one_line(overrides, message, capsys, tmp_path):
    overrides = [*overrides, f"run.output_dir={tmp_path}/runs"] if "notakeyvalue" not in overrides else overrides
    assert train_main(overrides) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "runs").exists()  # nothing built or written


def test_resume_latest_without_a_run(tmp_path, capsys, demo):
    assert train_main(["recipe=demo", *demo, "resume=latest"]) == 2
    assert "no" in capsys.readouterr().err


def test_deepspeed_configs_compose():
    from clsp.training.compose import compose_config

    for name, stage in (("deepspeed2", "deepspeed_stage_2"), ("deepspeed3", "deepspeed_stage_3")):
        cfg = compose_config(["recipe=fcaps", f"trainer={name}", "data.train=/tmp"])
        assert cfg.trainer.strategy == stage and cfg.trainer.precision == "auto"  # bf16-mixed on a bf16 GPU
        assert cfg.trainer.accelerator == "gpu"


def test_packaged_configs_found():
    from clsp.resources import config_dir, recipe_dir

    assert (config_dir() / "train.yaml").exists()
    assert {"demo", "fusionaudio", "fcaps", "clap_finetune", "laion_clap"} <= {p.stem for p in recipe_dir().glob("*.yaml")}


def test_ema_and_tensorboard(demo, tmp_path):
    from clsp.loading import load_checkpoint, model_from_checkpoint

    assert train_main(["recipe=demo", *demo, "trainer.ema_decay=0.5", "logger=tensorboard",
                       "run.final_eval=false"]) == 0
    run = _run_dir(tmp_path, "demo")
    assert list((run / "tensorboard").rglob("events.out.tfevents.*"))
    # Lightning's WeightAveraging layout: the average in state_dict, the raw weights beside it.
    ckpt = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 6 and ckpt["averaging_state"]["n_averaged"] == 6
    ema = model_from_checkpoint(run / "checkpoints" / "last.ckpt")
    raw = model_from_checkpoint(run / "checkpoints" / "last.ckpt", use_ema=False)
    key = "audio_head.0.weight"
    torch.testing.assert_close(ema.state_dict()[key], ckpt["state_dict"][f"model.{key}"], atol=0, rtol=0)
    torch.testing.assert_close(raw.state_dict()[key], ckpt["current_model_state"][f"model.{key}"], atol=0, rtol=0)
    assert not torch.equal(ema.state_dict()[key], raw.state_dict()[key])
    # The exported model is the average.
    exported = CLSPModel.from_pretrained(run / "model")
    torch.testing.assert_close(exported.state_dict()[key], ema.state_dict()[key], atol=0, rtol=0)


def test_param_groups_skip_decay_on_biases_norms_and_scales():
    from clsp import CLSPConfig
    from clsp.training.optim import param_groups

    model = CLSPModel(CLSPConfig.tiny("whisper"))
    groups = param_groups(model, lr=1e-3, weight_decay=0.1, tower_lr=1e-5, pretrained_prefixes=("text.",))
    by_name = {g["name"]: g for g in groups}
    no_decay = {id(p) for g in groups if g["weight_decay"] == 0.0 for p in g["params"]}
    assert id(model.logit_scale) in no_decay
    assert id(model.audio_head[0].bias) in no_decay and id(model.audio_head[0].weight) not in no_decay
    assert by_name["tower/decay"]["lr"] == 1e-5 and by_name["main/decay"]["lr"] == 1e-3
    text_ids = {id(p) for p in model.text.parameters()}
    assert {id(p) for p in by_name["tower/decay"]["params"]} <= text_ids


def test_too_many_bad_samples_stops_with_one_line(tmp_path, capsys, fast):
    import io
    import shutil
    import tarfile

    from clsp.data.demo import build_demo

    root = tmp_path / "bad"
    build_demo(root, n_train=128, n_val=8, n_test=8, samples_per_shard=128)
    shard = next((root / "train").glob("*.tar"))
    # Rewrite the shard with every audio member's bytes destroyed (JSON left intact).
    broken = tmp_path / "broken.tar"
    with tarfile.open(shard) as src, tarfile.open(broken, "w") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read()
            if member.name.endswith(".flac"):
                data = b"\x00" * len(data)
            info = tarfile.TarInfo(member.name)
            info.size = len(data)
            dst.addfile(info, io.BytesIO(data))
    shutil.move(broken, shard)
    code = train_main(["recipe=fusionaudio", "model=tiny_whisper", "model.audio.pretrained=null", "trainer=cpu", *fast,
                       f"data.train={root}/train",
                       "data.epoch_mode=true", "data.samples_per_epoch=null", "data.num_workers=1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err[-1].startswith("error: data failure rate") and "decode_error" in err[-1] and shard.name in err[-1]
