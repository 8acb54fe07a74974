"""HTSAT window attention through SDPA equals transformers' eager path, and loads every existing folder."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import ClapAudioConfig, ClapAudioModel
from transformers.models.clap.modeling_clap import ClapAudioLayer, ClapAudioSelfAttention

from clsp import CLSPModel
from clsp.audio.swin_attention import CachedMaskLayer, SdpaWindowAttention, set_window_attention
from clsp.config import CLSPConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "convert"))
from convert_sources import laion_checkpoint, spread  # noqa: E402

# Two stages of two blocks each: every stage has an unshifted and a shifted-window block.
TWO_STAGES = dict(patch_embeds_hidden_size=16, depths=[2, 2], num_attention_heads=[2, 4], hidden_size=32,
                  window_size=8, spec_size=256, num_mel_bins=64, drop_path_rate=0.0,
                  hidden_dropout_prob=0.0)  # no randomness in training mode


def _pair() -> tuple[ClapAudioModel, ClapAudioModel]:
    torch.manual_seed(0)
    eager = ClapAudioModel(ClapAudioConfig(**TWO_STAGES)).train()
    spread(eager)  # sharp attention and non-zero relative-position biases, so errors show
    with torch.no_grad():
        for block in eager.modules():
            if isinstance(block, ClapAudioSelfAttention):
                block.relative_position_bias_table.normal_(0, 1.0)
    sdpa = ClapAudioModel(ClapAudioConfig(**TWO_STAGES)).train()
    sdpa.load_state_dict(eager.state_dict())
    return eager, set_window_attention(sdpa, "sdpa")


def _run(model: ClapAudioModel, features: torch.Tensor):
    x = features.clone().requires_grad_(True)
    out = model(input_features=x)
    loss = out.last_hidden_state.square().mean() + out.pooler_output.sum()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if "relative_position_bias_table" in n}
    return out.last_hidden_state, out.pooler_output, x.grad, grads


def test_sdpa_equals_eager_forward_and_gradients():
    eager, sdpa = _pair()
    shifts = [(i, blk.shift_size) for i, stage in enumerate(sdpa.audio_encoder.layers) for blk in stage.blocks]
    assert {s for _, s in shifts} == {0, 4} and {i for i, _ in shifts} == {0, 1}, shifts
    assert sum(isinstance(m, SdpaWindowAttention) for m in sdpa.modules()) == 4
    features = torch.randn(3, 1, 1001, 64)
    hidden_e, pooled_e, grad_e, bias_e = _run(eager, features)
    hidden_s, pooled_s, grad_s, bias_s = _run(sdpa, features)
    torch.testing.assert_close(hidden_s, hidden_e, atol=1e-5, rtol=0)
    torch.testing.assert_close(pooled_s, pooled_e, atol=1e-5, rtol=0)
    assert grad_e.abs().max() > 1e-3  # a gradient that could show a difference
    torch.testing.assert_close(grad_s, grad_e, atol=1e-5, rtol=0)
    for name, grad in bias_e.items():  # the bias reaches SDPA inside the mask: its gradient must too
        torch.testing.assert_close(bias_s[name], grad, atol=1e-5, rtol=0)


def test_eager_restores_transformers_classes_and_names_are_unchanged():
    eager, sdpa = _pair()
    assert list(sdpa.state_dict()) == list(eager.state_dict())
    set_window_attention(sdpa, "eager")
    assert {type(m) for m in sdpa.modules() if isinstance(m, ClapAudioSelfAttention)} == {ClapAudioSelfAttention}
    assert {type(m) for m in sdpa.modules() if isinstance(m, ClapAudioLayer)} == {ClapAudioLayer}
    with pytest.raises(ValueError, match="attn_implementation"):
        set_window_attention(sdpa, "flash")


def test_shift_mask_is_built_once_per_size_dtype_and_device(monkeypatch):
    _, sdpa = _pair()
    built = []
    original = ClapAudioLayer.get_attn_mask
    monkeypatch.setattr(ClapAudioLayer, "get_attn_mask", lambda self, *a: built.append(a) or original(self, *a))
    features = torch.randn(2, 1, 1001, 64)
    with torch.no_grad():
        sdpa(input_features=features)
        sdpa(input_features=features)
    shifted = sum(isinstance(m, CachedMaskLayer) and m.shift_size > 0 for m in sdpa.modules())
    assert len(built) == 4 and shifted == 2  # every block asks once (unshifted ones get None), then never again
    sdpa.double()
    with torch.no_grad():
        sdpa(input_features=features.double())
    assert len(built) == 8  # a new dtype: a new mask


def test_config_records_the_setting_and_old_configs_default_to_sdpa(tmp_path):
    cfg = CLSPConfig.tiny("htsat").to_dict()
    for side in ("audio", "text"):
        cfg[side].pop("attn_implementation", None)  # a config.json written before the setting existed
    config = CLSPConfig.from_dict(cfg)
    assert config.audio.attn_implementation == config.text.attn_implementation == "sdpa"
    model = CLSPModel(config)
    assert model.text.encoder.config._attn_implementation == "sdpa"
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())["clsp_config"]
    assert saved["audio"]["attn_implementation"] == saved["text"]["attn_implementation"] == "sdpa"
    with pytest.raises(ValueError, match="attn_implementation"):
        CLSPConfig.from_dict({**cfg, "audio": {**cfg["audio"], "attn_implementation": "flash"}})


def test_whisper_and_text_towers_use_transformers_sdpa():
    eager_cfg = CLSPConfig.tiny("whisper").to_dict()
    for side in ("audio", "text"):
        eager_cfg[side]["attn_implementation"] = "eager"
    torch.manual_seed(0)
    eager = CLSPModel(CLSPConfig.from_dict(eager_cfg)).eval()
    sdpa = CLSPModel(CLSPConfig.tiny("whisper")).eval()
    sdpa.load_state_dict(eager.state_dict())
    assert sdpa.audio.encoder.config._attn_implementation == "sdpa"
    assert eager.audio.encoder.config._attn_implementation == "eager"
    wave, lengths = 0.1 * torch.randn(2, 16000 * 3), torch.tensor([16000 * 3, 16000])
    ids = torch.randint(3, 900, (2, 9))
    mask = torch.tensor([[1] * 9, [1] * 5 + [0] * 4])
    with torch.no_grad():
        torch.testing.assert_close(sdpa.embed_audio(wave, lengths).embeds, eager.embed_audio(wave, lengths).embeds,
                                   atol=1e-5, rtol=0)
        torch.testing.assert_close(sdpa.embed_text(ids, mask).embeds, eager.embed_text(ids, mask).embeds,
                                   atol=1e-5, rtol=0)


def test_laion_folder_loads_unchanged_with_either_attention(tmp_path):
    from clsp.convert import convert_laion
    from clsp.tiny import tiny_tokenizer

    tiny_tokenizer(tmp_path / "tok")
    laion_checkpoint(tmp_path / "630k.pt")
    convert_laion(tmp_path / "630k.pt", tmp_path / "out", tokenizer=str(tmp_path / "tok"))
    sdpa = CLSPModel.from_pretrained(tmp_path / "out")
    eager = CLSPModel.from_pretrained(tmp_path / "out", audio={"attn_implementation": "eager"},
                                      text={"attn_implementation": "eager"})
    assert sdpa.config.audio.attn_implementation == "sdpa" and eager.config.audio.attn_implementation == "eager"
    assert any(isinstance(m, SdpaWindowAttention) for m in sdpa.modules())
    assert not any(isinstance(m, SdpaWindowAttention) for m in eager.modules())
    for (name, a), (name_e, b) in zip(sdpa.state_dict().items(), eager.state_dict().items(), strict=True):
        assert name == name_e and torch.equal(a, b)
    rng = np.random.default_rng(0)
    waves = [rng.normal(0, 0.1, 48000 * 3).astype(np.float32), rng.normal(0, 0.1, 48000 * 10).astype(np.float32)]
    torch.testing.assert_close(sdpa.encode_audio(waves, sample_rate=48000),
                               eager.encode_audio(waves, sample_rate=48000), atol=1e-5, rtol=0)
    texts = ["a loud dog barks", "rain on a roof"]
    torch.testing.assert_close(sdpa.encode_text(texts), eager.encode_text(texts), atol=1e-5, rtol=0)
