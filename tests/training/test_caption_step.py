"""Captioning in the trainer: configs and their checks, the step (decoder run, parts no term reads frozen, no
host reads), validation's captions, the run folder's decoder tokenizer. Tiny models, a few batches."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from test_sync_free import STEP, CountStep, _Fixed

from clsp.config import CLSPConfig
from clsp.data.dataset import build_dataloader, decoder_tokenizer
from clsp.evaluation.clips import shard_clips
from clsp.model import CLSPModel
from clsp.training.caption_validation import CaptionValidation
from clsp.training.components import build_losses
from clsp.training.compose import ConfigError, compose_config, typed_config
from clsp.training.module import CLSPTrainingModule
from clsp.training.runner import build_model
from clsp.training.schema import OptimConfig

GLOBAL = {"_target_": "clsp.losses.GlobalInfoNCE"}
CAPTION = {"_target_": "clsp.losses.CaptioningLoss"}


@pytest.fixture(scope="module")
def caption_model() -> CLSPModel:
    torch.manual_seed(0)
    return CLSPModel(CLSPConfig.preset("tiny_whisper_caption"))


def _batches(demo_root, model: CLSPModel, n: int, **data):
    loader = build_dataloader(f"{demo_root}/train", tokenizer=model.tokenizer, sample_rate=model.sample_rate,
                              max_seconds=4.0, batch_size=8, num_workers=0, drop_last=True,
                              decoder_tokenize=decoder_tokenizer(model.decoder.tokenizer, model.config.decoder), **data)
    return [b for _, b in zip(range(n), loader)]


def _trainable(module: torch.nn.Module) -> bool:
    return any(p.requires_grad for p in module.parameters())


# ------------------------------------------------------------------ configs


def test_caption_recipes_and_loss_configs_compose():
    cfg = typed_config(compose_config(["recipe=demo_caption"]))
    assert cfg.model.decoder is not None and cfg.data.decoder_captions == "short"
    assert {k: type(m).__name__ for k, m in build_losses(cfg.loss).terms.items()} == \
        {"global": "GlobalInfoNCE", "caption": "CaptioningLoss"}
    assert build_losses(compose_config(["recipe=demo_caption", "loss=caption"]).loss).needs_embeddings is False
    fusion = typed_config(compose_config(["recipe=fusionaudio_caption", "model.audio.pretrained=/m", "data.train=/x"]))
    assert fusion.model.decoder.pretrained == "openai-community/gpt2" and fusion.data.decoder_captions == "long"
    for recipe in ("clotho_caption_ft", "audiocaps_caption_ft"):
        ft = typed_config(compose_config([f"recipe={recipe}", "run.init_from=/m", "data.train=/x"]))
        assert ft.run.init_from == "/m" and "caption" in ft.loss


def test_a_captioning_term_without_a_decoder_is_one_line():
    with pytest.raises(ConfigError, match="model.decoder") as info:
        compose_config(["recipe=demo", "loss=global_caption"])
    assert "\n" not in str(info.value)


def test_init_from_a_model_without_a_decoder_is_one_line(tmp_path):
    CLSPModel(CLSPConfig.tiny()).save_pretrained(tmp_path / "plain")
    cfg = typed_config(compose_config(["recipe=demo_caption", f"run.init_from={tmp_path / 'plain'}"]))
    with pytest.raises(ConfigError, match="has none"):
        build_model(cfg)


def test_init_from_a_decoder_model_keeps_its_decoder_under_overrides(caption_model, tmp_path):
    caption_model.save_pretrained(tmp_path / "captioner")
    cfg = typed_config(compose_config(["recipe=demo_caption", f"run.init_from={tmp_path / 'captioner'}"]))
    model, prefixes = build_model(cfg, {"decoder": {"max_new_tokens": 5}})
    assert model.config.decoder.max_new_tokens == 5 and "decoder.lm." in prefixes
    torch.testing.assert_close(model.decoder.lm.get_input_embeddings().weight,
                               caption_model.decoder.lm.get_input_embeddings().weight)


# ------------------------------------------------------------------ the step


def test_the_step_runs_the_decoder_on_the_batchs_captions(caption_model, demo_root):
    (batch,) = _batches(demo_root, caption_model, 1)
    module = CLSPTrainingModule(caption_model, build_losses({"global": GLOBAL, "caption": CAPTION}))
    out = module.contrastive_outputs(batch)
    width = max(batch.decoder_lengths)
    assert out.caption_logits.shape == (8, width, caption_model.decoder.lm.config.vocab_size)
    assert torch.equal(out.caption_ids, batch.decoder_input_ids[:, :width])
    total, parts = module.losses(out)
    total.backward()
    assert set(parts) == {"global", "caption"}
    assert caption_model.decoder.lm.get_input_embeddings().weight.grad is not None
    assert caption_model.text_head[0].weight.grad is not None and caption_model.audio_head[0].weight.grad is not None
    caption_model.zero_grad(set_to_none=True)


def test_parts_no_term_reads_are_frozen():
    model = CLSPModel(CLSPConfig.preset("tiny_whisper_caption"))
    CLSPTrainingModule(model, build_losses({"global": GLOBAL}))  # a decoder but no captioning term
    assert not _trainable(model.decoder) and _trainable(model.text)
    model = CLSPModel(CLSPConfig.preset("tiny_whisper_caption"))
    CLSPTrainingModule(model, build_losses({"caption": CAPTION}))  # captioning alone
    assert _trainable(model.decoder) and _trainable(model.audio) and _trainable(model.audio_head)
    assert not _trainable(model.text) and not _trainable(model.text_head) and not model.logit_scale.requires_grad
    with pytest.raises(ValueError, match="has none"):
        CLSPTrainingModule(CLSPModel(CLSPConfig.tiny()), build_losses({"caption": CAPTION}))


def test_captioning_alone_trains_without_text_embeddings(caption_model, demo_root):
    model = CLSPModel(CLSPConfig.preset("tiny_whisper_caption"))
    module = CLSPTrainingModule(model, build_losses({"caption": CAPTION}), OptimConfig(lr=1e-3))
    (batch,) = _batches(demo_root, model, 1)
    out = module.contrastive_outputs(batch)
    assert out.text is None and out.caption_logits is not None
    text_before = model.text_head[0].weight.detach().clone()
    trainer = L.Trainer(accelerator="cpu", max_steps=2, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(module, train_dataloaders=_Fixed([batch, batch]))
    assert torch.equal(model.text_head[0].weight, text_before)


def test_a_captioning_step_reads_nothing_on_the_host(demo_root):
    torch.manual_seed(0)
    model = CLSPModel(CLSPConfig.preset("tiny_whisper_caption"))
    batches = _batches(demo_root, model, STEP + 2)
    module = CLSPTrainingModule(model, build_losses({"global": GLOBAL, "caption": CAPTION}), OptimConfig(lr=1e-3))
    counter = CountStep()
    trainer = L.Trainer(accelerator="cpu", max_steps=STEP + 1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, gradient_clip_val=1.0,
                        log_every_n_steps=1000, limit_val_batches=0, callbacks=[counter])
    trainer.fit(module, train_dataloaders=_Fixed(batches))
    assert counter.reads == [], "host reads of device scalars in one training step:\n" + "\n".join(counter.reads)


# ------------------------------------------------------------------ validation


def test_validation_captions_its_share_and_scores_it(caption_model, demo_root):
    caption_model.eval()
    validation = CaptionValidation(5)
    assert [validation.quota(r, 2) for r in range(2)] == [3, 2] and validation.quota(0, 1) == 5
    clips = list(shard_clips([str(p) for p in sorted((demo_root / "val").glob("*.tar"))], "short",
                             sample_rate=caption_model.sample_rate))[:8]
    validation.add(caption_model, clips[:4], rank=0, world=1)
    validation.add(caption_model, clips[4:], rank=0, world=1)
    assert len(validation.predictions) == 5 and validation.references == [c.captions for c in clips[:5]]
    got = validation.result(world=1)
    assert set(got) == {"caption/CIDEr-D", "caption/loss"} and got["caption/loss"] > 0
    assert validation.predictions == [] and validation.result(world=1) == {}  # reset for the next epoch
    caption_model.train()
