"""transformers' AutoConfig / AutoModel load clsp folders (model_type "clsp", registered by `import clsp`);
folders saved before model_type existed keep loading with CLSPModel.from_pretrained."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModel

from clsp import CLSPConfig, CLSPModel
from clsp.export import main
from clsp.hf_auto import CLSPTransformersConfig


@pytest.fixture(params=["htsat", "whisper"])
def folder(request, tmp_path):
    torch.manual_seed(0)
    model = CLSPModel(CLSPConfig.tiny(request.param))
    model.save_pretrained(tmp_path / "model")
    return tmp_path / "model"


def _same_embeddings(a: CLSPModel, b: CLSPModel) -> None:
    wave = [np.random.default_rng(0).normal(0, 0.1, a.sample_rate * 2).astype(np.float32)]
    torch.testing.assert_close(a.encode_audio(wave), b.encode_audio(wave), atol=0, rtol=0)
    torch.testing.assert_close(a.encode_text(["a dog barks"]), b.encode_text(["a dog barks"]), atol=0, rtol=0)


def test_automodel_loads_a_clsp_folder(folder):
    assert json.loads((folder / "config.json").read_text())["model_type"] == "clsp"
    config = AutoConfig.from_pretrained(folder)
    assert isinstance(config, CLSPTransformersConfig)
    assert config.to_clsp() == CLSPModel.from_pretrained(folder).config
    assert config.audio.tower == config.to_clsp().audio.tower
    model = AutoModel.from_pretrained(folder)
    assert type(model) is CLSPModel and not model.training
    _same_embeddings(model, CLSPModel.from_pretrained(folder))
    random = AutoModel.from_config(config)
    assert type(random) is CLSPModel and random.config == config.to_clsp()


def test_automodel_rejects_arguments_clsp_does_not_take(folder):
    with pytest.raises(TypeError, match="device_map"):
        AutoModel.from_pretrained(folder, device_map="auto")


def test_old_folder_loads_and_re_export_makes_it_automodel_ready(folder, tmp_path):
    config = json.loads((folder / "config.json").read_text())
    del config["model_type"]  # a folder written before clsp wrote model_type
    (folder / "config.json").write_text(json.dumps(config))
    old = CLSPModel.from_pretrained(folder)
    assert hasattr(old, "encode_audio")
    with pytest.raises(ValueError, match="model_type"):  # AutoConfig dispatches on model_type only
        AutoModel.from_pretrained(folder)
    assert main([str(folder), str(tmp_path / "new")]) == 0
    _same_embeddings(AutoModel.from_pretrained(tmp_path / "new"), old)
