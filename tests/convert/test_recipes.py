"""Recipes that start from converted checkpoints, and the caption preprocessing applied alike in training."""

from __future__ import annotations

import numpy as np
import pytest
from convert_sources import htsat_checkpoint

from clsp import CLSPConfig, CLSPModel
from clsp.convert import convert_htsat
from clsp.data.collate import collate
from clsp.data.dataset import text_tokenizer
from clsp.errors import UserError
from clsp.tokenizer import preprocess, tokenize
from clsp.training.compose import compose_config, typed_config
from clsp.training.datamodule import CLSPDataModule
from clsp.training.runner import build_model


def test_fusionaudio_starts_from_a_converted_htsat(tmp_path):
    htsat_checkpoint(tmp_path / "HTSAT.ckpt")
    convert_htsat(tmp_path / "HTSAT.ckpt", tmp_path / "tower")
    cfg = compose_config(["recipe=fusionaudio", "model=tiny_htsat", "data.train=/tmp",
                          f"model.audio.pretrained={tmp_path / 'tower'}"])
    model, prefixes = build_model(typed_config(cfg))
    assert "audio." in prefixes  # the pretrained tower trains at optim.tower_lr
    assert model.config.audio.sample_rate == 32000 and model.config.audio.hop_length == 320
    assert model.config.audio.hf_config["depths"] == [1, 2]  # the tower's architecture, not tiny_htsat's [1, 1]
    # The data pipeline follows the model's (adopted) frontend.
    datamodule = CLSPDataModule(typed_config(cfg).data, model.config, model.tokenizer)
    assert datamodule.model_config.audio.sample_rate == 32000


def test_fusionaudio_needs_its_pretrained_tower():
    from clsp.training.compose import ConfigError

    with pytest.raises(ConfigError, match="model.audio.pretrained"):
        compose_config(["recipe=fusionaudio", "data.train=/tmp"])


def test_missing_pretrained_tower_is_one_line(tmp_path):
    cfg = CLSPConfig.tiny("htsat").to_dict()
    cfg["audio"]["pretrained"] = str(tmp_path / "no-tower")
    with pytest.raises(UserError, match="audio.pretrained.*clsp.convert"):
        CLSPModel(CLSPConfig.from_dict(cfg))


def test_fusionaudio_retrieval_recipes():
    pre = compose_config(["recipe=fusionaudio_retrieval", "data.train=/tmp", "model.audio.pretrained=/t"])
    assert (pre.optim.lr, pre.data.batch_size, pre.trainer.max_epochs) == (5e-5, 196, 15)
    assert pre.model.text.pooling == "cls" and pre.model.head.dim == 1024 and pre.model.audio.sample_rate == 32000
    ft = compose_config(["recipe=fusionaudio_retrieval_ft", "data.train=/tmp", "run.init_from=/m"])
    assert (ft.optim.lr, ft.trainer.max_epochs, ft.model.audio.pretrained) == (1e-5, 20, None)
    CLSPConfig.from_dict(dict(pre.model))  # the model section is a valid config


def test_caption_preprocessing_is_the_same_in_training_and_encode_text():
    cfg = CLSPConfig.tiny("htsat").to_dict()
    cfg["text"].update(lowercase=True, punctuation='(),.!?;:|*"')
    model = CLSPModel(CLSPConfig.from_dict(cfg))
    assert preprocess(['A Dog (Big), barks!'], True, '(),.!?;:|*"') == ["a dog  big   barks "]
    texts = ['A LOUD Beep, then "rain".', "Wind (soft) | hum*"]
    worker_tokenize = text_tokenizer(model.tokenizer, model.config.text)  # what the data module hands the workers

    class Sample:
        audio = np.zeros(10, np.float32)
        key, attributes = "k", {}

    batch = collate([Sample(), Sample()], [[(t, "short")] for t in texts], worker_tokenize)
    tok = model.tokenize(texts)
    assert batch.input_ids.tolist() == tok.input_ids.tolist()
    assert tok.input_ids.tolist() == model.tokenize([t.lower() for t in ['A LOUD Beep  then  rain  ',
                                                                         "Wind  soft    hum "]]).input_ids.tolist()
    assert tok.input_ids.tolist() != tokenize(model.tokenizer, texts, 77).input_ids.tolist()  # it does something
