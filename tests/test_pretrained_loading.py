"""The real loading paths (hub id or folder for Whisper, RoBERTa, CLAP), exercised offline on tiny
random checkpoints saved to temp folders."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clsp import CLSPConfig, CLSPModel
from clsp.tiny import tiny_tokenizer


@pytest.fixture(scope="module")
def pretrained_dirs(tmp_path_factory):
    from transformers import RobertaConfig, RobertaModel, WhisperConfig, WhisperModel

    root = tmp_path_factory.mktemp("hub")
    torch.manual_seed(0)
    whisper = WhisperModel(WhisperConfig(d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                                         decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                                         num_mel_bins=80, max_source_positions=1500, vocab_size=100,
                                         pad_token_id=0, bos_token_id=0, eos_token_id=0,
                                         decoder_start_token_id=0))
    whisper.save_pretrained(root / "whisper")
    roberta = RobertaModel(RobertaConfig(vocab_size=1000, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                         intermediate_size=64, max_position_embeddings=80, pad_token_id=1))
    roberta.save_pretrained(root / "roberta")
    tiny_tokenizer(root / "roberta")
    return root, whisper, roberta


def test_towers_load_pretrained_weights(pretrained_dirs):
    root, whisper, roberta = pretrained_dirs
    cfg = CLSPConfig.tiny("whisper").to_dict()
    cfg["audio"].update(pretrained=str(root / "whisper"), hf_config={})
    cfg["text"].update(pretrained=str(root / "roberta"), tokenizer=None, hf_config={}, pooling="pooler")
    model = CLSPModel(CLSPConfig.from_dict(cfg))
    torch.testing.assert_close(model.audio.encoder.conv1.weight, whisper.encoder.conv1.weight)
    torch.testing.assert_close(model.text.encoder.embeddings.word_embeddings.weight,
                               roberta.embeddings.word_embeddings.weight)
    # A saved model carries the full configs and rebuilds without the source folders.
    out = root / "saved"
    model.save_pretrained(out)
    again = CLSPModel.from_pretrained(out)
    clip = [np.sin(np.linspace(0, 500, 16000)).astype(np.float32)]
    torch.testing.assert_close(again.eval().encode_audio(clip), model.eval().encode_audio(clip))


def test_unreachable_hub_id_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match="neither a local model folder nor a reachable hub id"):
        CLSPModel.from_pretrained("clsp-test/not-a-cached-model")


def test_folders_of_older_versions_load_unchanged(tmp_path):
    """A folder written before towers were named by `_target_`, HTSAT's weights were `audio.model.*` and
    config.json had no model_type or attn_implementation: same embeddings."""
    import json

    from safetensors.torch import load_file, save_file

    from clsp import CLSPConfig, CLSPModel

    model = CLSPModel(CLSPConfig.tiny("htsat")).eval()
    model.save_pretrained(tmp_path)
    state = load_file(str(tmp_path / "model.safetensors"))
    assert any(k.startswith("audio.encoder.") for k in state)
    save_file({k.replace("audio.encoder.", "audio.model."): v for k, v in state.items()},
              str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    raw = json.loads((tmp_path / "config.json").read_text())
    raw.pop("model_type")
    for side in ("audio", "text"):
        del raw["clsp_config"][side]["_target_"], raw["clsp_config"][side]["attn_implementation"]
    raw["clsp_config"]["audio"]["tower"] = "htsat"
    (tmp_path / "config.json").write_text(json.dumps(raw))
    old = CLSPModel.from_pretrained(tmp_path)
    clips = torch.randn(2, 48000)
    torch.testing.assert_close(old.encode_audio(clips, 48000), model.encode_audio(clips, 48000), atol=0, rtol=0)
