"""CLSPModel: encode API, save/load, config presets, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from clsp import CLSPConfig, CLSPModel
from clsp.loading import load_model


@pytest.fixture(scope="module")
def whisper_model():
    torch.manual_seed(0)
    return CLSPModel(CLSPConfig.tiny("whisper")).eval()


def test_encode_shapes_and_norm(whisper_model):
    rng = np.random.default_rng(0)
    a = whisper_model.encode_audio([rng.normal(0, 0.1, 16000).astype(np.float32), rng.normal(0, 0.1, 24000)])
    t = whisper_model.encode_text(["a loud high beep", "quiet low hum"])
    assert a.shape == (2, 64) and t.shape == (2, 64)
    torch.testing.assert_close(a.norm(dim=-1), torch.ones(2))
    sim = whisper_model.similarity(a, t)
    torch.testing.assert_close(sim, a @ t.T)


def test_encode_audio_accepts_tensor_files_and_rates(whisper_model, tmp_path):
    rng = np.random.default_rng(1)
    wave = rng.normal(0, 0.1, 32000).astype(np.float32)  # 2 s at 16 kHz
    sf.write(tmp_path / "a.wav", wave, 16000)
    wave48 = rng.normal(0, 0.1, 96000).astype(np.float32)
    sf.write(tmp_path / "b.flac", wave48, 48000)
    from_file = whisper_model.encode_audio([str(tmp_path / "a.wav")])
    from_array = whisper_model.encode_audio([wave], sample_rate=16000)
    from_tensor = whisper_model.encode_audio(torch.from_numpy(wave)[None])
    torch.testing.assert_close(from_file, from_array, atol=1e-4, rtol=0)  # 16-bit PCM in the file
    torch.testing.assert_close(from_array, from_tensor)
    # A 48 kHz file and the same array at 48 kHz resample to the same thing.
    b_file = whisper_model.encode_audio([tmp_path / "b.flac"])
    b_array = whisper_model.encode_audio([wave48], sample_rate=48000)
    torch.testing.assert_close(b_file, b_array, atol=1e-3, rtol=0)


def test_return_tokens(whisper_model):
    out = whisper_model.encode_audio([np.zeros(16000, np.float32) + 0.01, np.ones(8000, np.float32) * 0.1],
                                     return_tokens=True)
    assert out.tokens.shape[:2] == out.mask.shape
    # 1 s = 100 mel frames = 50 encoder positions; 0.5 s = 25.
    assert out.mask.sum(1).tolist() == [50, 25]
    torch.testing.assert_close(out.tokens[out.mask].norm(dim=-1), torch.ones(75))
    assert out.hidden.shape == (*out.mask.shape, whisper_model.audio.hidden_size)  # the tower's, before the head
    one_by_one = whisper_model.encode_audio([np.zeros(16000, np.float32) + 0.01, np.ones(8000, np.float32) * 0.1],
                                            return_tokens=True, batch_size=1)  # batches padded to the longest
    assert torch.equal(one_by_one.mask, out.mask)
    for name in ("tokens", "hidden"):
        torch.testing.assert_close(getattr(one_by_one, name)[out.mask], getattr(out, name)[out.mask], atol=1e-5, rtol=0)
    t = whisper_model.encode_text(["a beep", "a long low hum with a rising sweep"], return_tokens=True)
    assert t.tokens.shape[0] == 2 and t.mask.dtype == torch.bool and t.mask[0].sum() < t.mask[1].sum()


def test_embedding_independent_of_batch(whisper_model):
    rng = np.random.default_rng(2)
    short = rng.normal(0, 0.1, 16000 * 2).astype(np.float32)
    long = rng.normal(0, 0.1, 16000 * 7).astype(np.float32)
    alone = whisper_model.encode_audio([short])
    batched = whisper_model.encode_audio([short, long])
    torch.testing.assert_close(alone[0], batched[0], atol=1e-5, rtol=0)
    t_alone = whisper_model.encode_text(["high beep"])
    t_batched = whisper_model.encode_text(["high beep", "a much longer caption about low noise and a slow sweep"])
    torch.testing.assert_close(t_alone[0], t_batched[0], atol=1e-5, rtol=0)


def test_save_load_round_trip(whisper_model, tmp_path):
    whisper_model.save_pretrained(tmp_path / "m")
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in (tmp_path / "m").iterdir()}
    loaded = CLSPModel.from_pretrained(tmp_path / "m")
    assert not loaded.training
    wave = [np.sin(np.linspace(0, 800, 20000)).astype(np.float32)]
    torch.testing.assert_close(loaded.encode_audio(wave), whisper_model.encode_audio(wave), atol=0, rtol=0)
    texts = ["a loud beep", "soft rain"]
    torch.testing.assert_close(loaded.encode_text(texts), whisper_model.encode_text(texts), atol=0, rtol=0)
    assert load_model(str(tmp_path / "m")).config == loaded.config


def test_saved_config_is_offline_and_json(whisper_model, tmp_path):
    whisper_model.save_pretrained(tmp_path)
    data = json.loads((tmp_path / "config.json").read_text())["clsp_config"]
    assert data["text"]["pretrained"] is None and data["text"]["hf_config"]["model_type"] == "roberta"
    assert CLSPConfig.from_dict(data).to_dict() == data


def test_stale_position_ids_are_ignored(whisper_model, tmp_path):
    from safetensors.torch import load_file, save_file

    whisper_model.save_pretrained(tmp_path)
    state = load_file(str(tmp_path / "model.safetensors"))
    state["text.encoder.embeddings.position_ids"] = torch.arange(10)[None]
    save_file(state, str(tmp_path / "model.safetensors"))
    CLSPModel.from_pretrained(tmp_path)  # no error
    del state["text_head.0.weight"]
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match="missing.*text_head.0.weight"):
        CLSPModel.from_pretrained(tmp_path)


@pytest.mark.parametrize(
    "audio, match",
    [
        ([np.zeros(0, np.float32)], "clip 0 is empty"),
        ([np.array([0.0, np.nan, 0.1], np.float32)], "NaN"),
        (torch.zeros(2, 3, 100), r"\[N, T\]"),
        ([np.zeros((100, 2), np.float32)], "1-D"),
        ([], "non-empty"),
    ],
)
def test_bad_audio(whisper_model, audio, match):
    with pytest.raises(ValueError, match=match):
        whisper_model.encode_audio(audio)


def test_bad_text_and_files(whisper_model, tmp_path):
    with pytest.raises(ValueError, match="empty"):
        whisper_model.encode_text(["fine", "  "])
    with pytest.raises(FileNotFoundError):
        whisper_model.encode_audio([str(tmp_path / "missing.wav")])
    (tmp_path / "junk.wav").write_bytes(b"not audio at all")
    with pytest.raises(ValueError, match="cannot decode"):
        whisper_model.encode_audio([str(tmp_path / "junk.wav")])


def test_not_a_model_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        CLSPModel.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text('{"hello": 1}')
    with pytest.raises(ValueError, match="not a clsp model"):
        CLSPModel.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError):
        CLSPModel.from_pretrained(tmp_path / "nope" / "deeper")


def test_corrupt_weights_file(whisper_model, tmp_path):
    whisper_model.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="cannot read weights"):
        CLSPModel.from_pretrained(tmp_path)


def test_config_errors():
    cfg = CLSPConfig.tiny("whisper").to_dict()
    cfg["audio"]["tower"] = "wav2vec9"
    with pytest.raises(ValueError, match="unknown audio tower 'wav2vec9'"):
        CLSPConfig.from_dict(cfg)
    with pytest.raises(ValueError, match="unknown key"):
        CLSPConfig.from_dict({"audio": {"towr": "htsat"}})
    with pytest.raises(ValueError, match="unknown model preset"):
        CLSPConfig.preset("nope")


def test_presets_parse():
    for name in ["htsat_tiny_roberta", "htsat_base_roberta", "whisper_base_roberta", "whisper_small_roberta",
                 "tiny_htsat", "tiny_whisper"]:
        cfg = CLSPConfig.preset(name)
        assert cfg.head.dim > 0


def test_text_truncation_is_counted(whisper_model):
    long = " ".join(["loud"] * 200)
    tok = whisper_model.tokenize(["short one", long])
    assert tok.truncated == 1
    assert tok.input_ids.shape[1] == whisper_model.config.text.max_length
    assert tok.input_ids[1, -1].item() == whisper_model.tokenizer.eos_token_id  # end token kept
    assert tok.attention_mask[0].sum() < tok.attention_mask[1].sum()


def test_freeze_and_checkpointing():
    cfg = CLSPConfig.tiny("whisper").to_dict()
    cfg["audio"]["freeze"] = True
    cfg["text"]["gradient_checkpointing"] = True
    cfg["audio"]["gradient_checkpointing"] = False
    model = CLSPModel(CLSPConfig.from_dict(cfg)).train()
    assert not any(p.requires_grad for p in model.audio.encoder.parameters())
    assert all(p.requires_grad for p in model.audio_head.parameters())
    tok = model.tokenize(["a beep", "a hum"])
    out = model.embed_text(tok.input_ids, tok.attention_mask)
    out.embeds.sum().backward()
    grad = model.text.encoder.embeddings.word_embeddings.weight.grad
    assert grad is not None and float(grad.abs().sum()) > 0  # checkpointed text tower still gets gradients


def test_whisper_checkpointing_same_gradients():
    torch.manual_seed(0)
    base = CLSPModel(CLSPConfig.tiny("whisper")).train()
    cfg = CLSPConfig.tiny("whisper").to_dict()
    cfg["audio"]["gradient_checkpointing"] = True
    ckpt = CLSPModel(CLSPConfig.from_dict(cfg)).train()
    ckpt.load_state_dict(base.state_dict())
    for m in (base, ckpt):
        m.audio.encoder.dropout = 0.0
    wave = torch.randn(2, 16000) * 0.1
    lengths = torch.tensor([16000, 9000])
    grads = []
    for m in (base, ckpt):
        m.zero_grad()
        m.embed_audio(wave, lengths).embeds.pow(2).sum().backward()
        grads.append(m.audio.encoder.layers[0].fc1.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])


def test_logit_scale_clamp():
    model = CLSPModel(CLSPConfig.tiny("whisper"))
    with torch.no_grad():
        model.logit_scale.fill_(10.0)
    assert model.scale().item() == pytest.approx(100.0)
    model.clamp_logit_scale_()
    assert model.logit_scale.item() == pytest.approx(np.log(100.0))
