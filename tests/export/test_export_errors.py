"""What a transformers ClapModel cannot hold is a one-line error naming the part and the way out,
before anything is written."""

from __future__ import annotations

import pytest
import torch
from export_models import saved_model, tiny_htsat
from torch import nn

from clsp import CLSPConfig, CLSPModel
from clsp.errors import UserError
from clsp.export import export, main
from clsp.export.transformers import check_representable, export_transformers

BERT = {"model_type": "bert", "vocab_size": 1000, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
        "intermediate_size": 64, "max_position_embeddings": 80, "pad_token_id": 1}


def _config(**changes) -> CLSPConfig:
    config = tiny_htsat()
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        setattr(getattr(config, section), key, value)
    return config


def _fused_128_mels() -> CLSPConfig:
    config = tiny_htsat(fusion=True)
    config.audio.n_mels = 128
    config.audio.hf_config = dict(config.audio.hf_config, num_mel_bins=128)
    return config


CASES = {
    "whisper tower": (lambda: CLSPConfig.tiny("whisper"), "whisper audio tower"),
    "bert text tower": (lambda: _config(text__hf_config=BERT), "bert text tower"),
    "bert with cls pooling": (lambda: _config(text__hf_config=BERT, text__pooling="cls"), "bert text tower"),
    "cls pooling": (lambda: _config(text__pooling="cls"), "text pooling 'cls'"),
    "mean pooling": (lambda: _config(text__pooling="mean"), "text pooling 'mean'"),
    "lower-casing": (lambda: _config(text__lowercase=True), "caption preprocessing"),
    "punctuation": (lambda: _config(text__punctuation=".,"), "caption preprocessing"),
    "window of 7.5 s": (lambda: _config(audio__max_seconds=7.5), "audio.max_seconds=7.5"),
    "fusion at 128 mels": (_fused_128_mels, "fusion with audio.n_mels=128"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_unrepresentable_part_is_one_line(case, tmp_path):
    build, names = CASES[case]
    with pytest.raises(UserError) as err:
        export_transformers(CLSPModel(build()), tmp_path / "out")
    message = str(err.value)
    assert names in message and "--format onnx" in message and "\n" not in message
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("side", ["audio", "text"])
def test_head_of_another_shape(side):
    model = CLSPModel(tiny_htsat())
    head = getattr(model, f"{side}_head")
    setattr(model, f"{side}_head", nn.Sequential(head[0], nn.GELU(), head[2]))
    with pytest.raises(UserError, match=f"the {side} head \\(Linear -> GELU -> Linear\\).*--format onnx"):
        check_representable(model)


def test_cli_says_it_in_one_line_and_writes_nothing(tmp_path, capsys):
    _, folder = saved_model(CLSPConfig.tiny("whisper"), tmp_path / "whisper")
    assert main([str(folder), str(tmp_path / "out"), "--format", "transformers"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: the whisper audio tower cannot be a transformers ClapModel (its audio model is HTSAT) — "
                   "export it with --format onnx, or keep the clsp folder (--format clsp)"]
    assert not (tmp_path / "out").exists()


def test_logit_bias_is_dropped_with_a_warning(tmp_path, caplog):
    config = tiny_htsat()
    config.head.logit_bias_init = -10.0
    torch.manual_seed(0)
    export_transformers(CLSPModel(config), tmp_path / "out")
    assert "logit_bias -10 is not part of a ClapModel" in caplog.text


def test_onnx_without_its_packages_says_what_to_install(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnxscript", None)  # as if not installed
    with pytest.raises(UserError, match=r"onnxscript is missing.*pip install 'clsp\[onnx\]'"):
        export(CLSPModel(tiny_htsat()), tmp_path / "out", "onnx")
    assert not (tmp_path / "out").exists()
