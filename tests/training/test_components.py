"""The structured config schema and the `_target_` components: losses, optimizer, scheduler, loggers."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from clsp.data.captions import CaptionSchedule
from clsp.losses import ContrastiveOutputs, LossSuite
from clsp.train import main as train_main
from clsp.training.components import build_losses
from clsp.training.compose import ConfigError, compose_config, typed_config


def _unit(*shape: int) -> torch.Tensor:
    return F.normalize(torch.randn(*shape, dtype=torch.float64), dim=-1).requires_grad_()


def test_build_losses_weights_and_logs_each_term():
    suite = build_losses({
        "global": {"_target_": "clsp.losses.GlobalInfoNCE", "weight": 1.0, "local_loss": False},
        "hard_negative": {"_target_": "clsp.losses.HardNegativeLoss", "weight": 0.2},
    })
    assert isinstance(suite, LossSuite)
    assert suite.needs_negatives and not suite.needs_tokens and not suite.needs_all_captions
    out = ContrastiveOutputs(audio=_unit(6, 8), text=_unit(6, 8), caption_to_clip=torch.arange(6),
                             scale=torch.tensor(10.0, dtype=torch.float64), negative_text=_unit(6, 8))
    total, parts = suite(out)
    assert set(parts) == {"global", "hard_negative"}
    torch.testing.assert_close(total.detach(), parts["global"] + 0.2 * parts["hard_negative"])


def test_caption_schedule_lives_in_the_data():
    """Captions are chosen in the data: the schedule is a data setting, checked against the losses."""
    cfg = compose_config(["recipe=demo", "loss=multipositive", "data.caption_policy=both",
                          "data.caption_schedule.p_start=0.2", "data.caption_schedule.p_end=0.4"])
    schedule = cfg.data.caption_schedule
    assert (schedule.p_start, schedule.p_end, schedule.ramp_steps) == (0.2, 0.4, 10000)
    assert compose_config(["recipe=fcaps_stage2", "data.train=/x"]).data.caption_schedule == CaptionSchedule()
    with pytest.raises(ConfigError, match="loss.mp.caption_schedule was renamed to data.caption_schedule"):
        build_losses({"mp": {"_target_": "clsp.losses.MultiPositiveInfoNCE", "caption_schedule": {"p_end": 0.4}}})
    with pytest.raises(ConfigError, match="two captions per clip.*data.caption_policy=short"):
        compose_config(["recipe=demo", "loss=multipositive"])
    with pytest.raises(ConfigError, match="data.hard_negatives=false"):
        compose_config(["recipe=demo", "loss=clsp_stage3"])
    with pytest.raises(ConfigError, match="caption_schedule.p_end"):
        compose_config(["recipe=demo", "loss=multipositive", "data.caption_policy=both", "data.caption_schedule.p_end=2"])


@pytest.mark.parametrize(("spec", "match"), [
    ({"g": {"_target_": "clsp.losses.Nope"}}, "loss.g: Error locating target 'clsp.losses.Nope'"),
    ({"g": {"name": "GlobalInfoNCE"}}, "loss.g: needs a `_target_`"),
    ({"g": {"_target_": "clsp.losses.GlobalInfoNCE", "temperature": 0.1}}, "loss.g: .*temperature"),
    ({"g": {"_target_": "clsp.losses.GlobalInfoNCE", "weight": float("nan")}}, "'g'.*finite"),
    ({"g": {"_target_": "clsp.losses.GlobalInfoNCE", "weight": -1}}, "'g'.*>= 0"),
    ({"t": {"_target_": "clsp.losses.TokenInfoNCE", "chunk_size": -2}}, "loss.t: .*chunk_size"),
    ({"g": {"_target_": "collections.OrderedDict"}}, "not a loss module"),
    ({}, "at least one term"),
])
def test_bad_loss_terms_are_one_line_errors(spec, match):
    with pytest.raises(ConfigError, match=match) as info:
        build_losses(spec)
    assert "\n" not in str(info.value)


def test_every_loss_config_builds():
    data = {"multipositive": ["data.caption_policy=both"], "clsp_stage3": ["data.hard_negatives=true"]}
    terms = {"global": {"global": "GlobalInfoNCE"}, "siglip": {"siglip": "SigLIPLoss"},
             "multipositive": {"multipositive": "MultiPositiveInfoNCE"},
             "global_token": {"global": "GlobalInfoNCE", "token": "TokenInfoNCE"},
             "clsp_stage3": {"global": "GlobalInfoNCE", "hard_negative": "HardNegativeLoss"}}
    for name, expected in terms.items():
        suite = build_losses(compose_config(["recipe=demo", f"loss={name}", *data.get(name, [])]).loss)
        assert {k: type(m).__name__ for k, m in suite.terms.items()} == expected, name


def test_schedule_values_and_determinism():
    sched = CaptionSchedule()
    assert sched.p_two_longs(0) == pytest.approx(0.05)
    assert sched.p_two_longs(5000) == pytest.approx(min(0.05 + 0.45 * 5000 / 10000, 0.5))
    assert sched.p_two_longs(10**6) == pytest.approx(0.5)
    g1, g2 = random.Random(3), random.Random(3)
    seq1 = [sched.draw(s, g1) for s in range(0, 20000, 100)]
    assert seq1 == [sched.draw(s, g2) for s in range(0, 20000, 100)] and set(seq1) == {"short+long", "two_longs"}
    rng = random.Random(0)
    assert 0.45 < [sched.draw(50000, rng) for _ in range(2000)].count("two_longs") / 2000 < 0.55
    with pytest.raises(ValueError, match="p_end"):
        CaptionSchedule(p_end=1.5)


def test_optimizer_and_scheduler_come_from_the_recipe():
    from clsp.model import CLSPModel
    from clsp.training.optim import build_optimizer, build_scheduler

    cfg = compose_config(["recipe=fusionaudio_retrieval", "model=tiny_whisper", "model.audio.pretrained=null",
                          "data.train=/x", "optim.tower_lr=1e-5", "optim.scheduler.warmup_steps=4"])
    typed = typed_config(cfg)
    model, optim = CLSPModel(typed.model), typed.optim
    opt = build_optimizer(model, optim, pretrained_prefixes=("text.",))
    assert type(opt) is torch.optim.Adam and opt.defaults["eps"] == 1e-8 and opt.defaults["betas"] == (0.9, 0.999)
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs["tower/decay"] == 1e-5 and lrs["main/decay"] == 5e-5
    assert all(g["weight_decay"] == 0.0 for g in opt.param_groups if "no_decay" in g["name"])
    sched = build_scheduler(opt, optim, total_steps=20)
    assert [round(f(0), 3) for f in sched.lr_lambdas][:1] == [0.25]  # warmup: step 0 of 4
    with pytest.raises(ConfigError, match="optim.optimizer: .*momentum"):
        build_optimizer(model, dataclasses.replace(optim, optimizer={"_target_": "torch.optim.Adam", "momentum": 0.9}))


def test_every_field_overridable_and_misspellings_named(capsys):
    cfg = compose_config(["recipe=demo", "model.text.tokenizer=clsp:tiny-bpe", "model.audio.n_fft=512",
                          "data.val_batch_size=16", "trainer.enable_progress_bar=false"])
    assert (cfg.model.text.tokenizer, cfg.model.audio.n_fft, cfg.data.val_batch_size) == ("clsp:tiny-bpe", 512, 16)
    for override, says in (("model.audio.sampl_rate=1", "did you mean model.audio.sample_rate"),
                           ("trainer.devcies=2", "did you mean trainer.devices"),
                           ("model.audio.pooling=mean", "unknown config key 'model.audio.pooling'"),
                           ("data.resample_quality=HQ", "unknown config key 'data.resample_quality'"),
                           ("model.audio.sample_rate=abc", "model.audio.sample_rate='abc' is not valid")):
        assert train_main(["recipe=demo", override]) == 2
        err = capsys.readouterr().err.strip()
        assert says in err and len(err.splitlines()) == 1, err


def test_print_config_prints_the_resolved_yaml(capsys):
    from omegaconf import OmegaConf

    assert train_main(["recipe=fusionaudio", "--print-config", "data.train=/d/{000..001}.tar",
                       "model.audio.pretrained=/m", "optim.lr=3e-4"]) == 0
    printed = OmegaConf.create(capsys.readouterr().out)
    assert printed.optim.lr == 3e-4 and printed.run.name == "fusionaudio"
    assert printed.loss.multipositive._target_ == "clsp.losses.MultiPositiveInfoNCE"
    assert printed.logger.csv._target_ == "clsp.training.loggers.ResumableCSVLogger"


def test_trainer_loggers_and_callbacks_are_built_from_targets(tmp_path):
    from clsp.training.runner import build_trainer

    cfg = compose_config(["recipe=demo", "logger=tensorboard", "trainer.max_steps=null", "trainer.max_epochs=2",
                          "+trainer.callbacks.lr={_target_:lightning.pytorch.callbacks.LearningRateMonitor}"])
    trainer = build_trainer(typed_config(cfg), tmp_path, has_val=False)
    assert [type(x).__name__ for x in trainer.loggers] == ["ResumableCSVLogger", "TensorBoardLogger"]
    assert Path(trainer.loggers[0].log_dir) == tmp_path  # metrics.csv lands in the run folder
    assert any(type(c).__name__ == "LearningRateMonitor" for c in trainer.callbacks)
    assert (trainer.max_steps, trainer.max_epochs, trainer.limit_val_batches) == (-1, 2, 0)
    bad = compose_config(["recipe=demo", "logger.csv._target_=lightning.pytorch.loggers.NoLogger"])
    with pytest.raises(ConfigError, match="logger.csv: Error locating target"):
        build_trainer(bad, tmp_path, has_val=False)


def test_a_progress_bar_from_the_config_replaces_clsps(tmp_path):
    from clsp.training.runner import build_trainer

    cfg = compose_config(["recipe=demo", "+trainer.callbacks.bar={_target_:lightning.pytorch.callbacks.TQDMProgressBar}"])
    assert type(build_trainer(typed_config(cfg), tmp_path, has_val=False).progress_bar_callback).__name__ == "TQDMProgressBar"


def test_init_from_applies_explicit_model_keys_or_says_why(tmp_path):
    from clsp import CLSPConfig, CLSPModel
    from clsp.train import explicit_model_keys
    from clsp.training.runner import build_model, resolved_config

    CLSPModel(CLSPConfig.tiny("htsat")).save_pretrained(tmp_path / "m")
    argv = ["recipe=demo", f"run.init_from={tmp_path / 'm'}", "model.audio.freeze=true"]
    raw = compose_config(argv)
    assert explicit_model_keys(argv, raw) == {"audio": {"freeze": True}}
    model, _ = build_model(typed_config(raw), explicit_model_keys(argv, raw))
    # The architecture comes from run.init_from (an HTSAT, not the demo recipe's Whisper); the key applies.
    assert model.config.audio.tower == "htsat" and model.config.audio.freeze
    assert not any(p.requires_grad for p in model.audio.parameters())
    recorded = OmegaConf.create(resolved_config(raw, model))  # config.yaml: what ran
    assert recorded.model.audio._target_ == "clsp.audio.htsat.HTSATTower" and recorded.model.audio.freeze
    with pytest.raises(ConfigError, match="model.head.dim cannot apply to the model of run.init_from"):
        build_model(typed_config(raw), {"head": {"dim": 8}})
