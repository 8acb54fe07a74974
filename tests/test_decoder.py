"""The caption decoder (clsp.decoder) inside CLSPModel: inputs, teacher-forced logits, gradients,
generation, saving and loading. Tiny random models only; nothing is downloaded."""

from __future__ import annotations

import json
import pickle
import traceback

import pytest
import torch
from safetensors.torch import load_file
from torch.utils._python_dispatch import TorchDispatchMode

from clsp import CLSPConfig, CLSPModel
from clsp.config import DecoderConfig
from clsp.decoder import CaptionDecoder, time_positions, tokenize_captions
from clsp.errors import UserError
from clsp.losses import CaptioningLoss, ContrastiveOutputs, GlobalInfoNCE, LossSuite
from clsp.tiny import tiny_tokenizer

CAPTIONS = ["a dog barks", "rain falls on a tin roof while the wind blows"]

# One small config per decoder family that takes cross-attention (BERT/RoBERTa as decoders too).
FAMILIES = {
    "gpt2": {"model_type": "gpt2", "vocab_size": 1000, "n_embd": 32, "n_layer": 2, "n_head": 2, "n_positions": 64},
    "bart": {"model_type": "bart", "vocab_size": 1000, "d_model": 32, "decoder_layers": 2,
             "decoder_attention_heads": 2, "decoder_ffn_dim": 64, "max_position_embeddings": 64},
    "bert": {"model_type": "bert", "vocab_size": 1000, "hidden_size": 32, "num_hidden_layers": 2,
             "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 64},
}


def config_with_decoder(tower: str = "whisper", **decoder) -> CLSPConfig:
    config = CLSPConfig.tiny(tower)
    config.decoder = DecoderConfig(**{**vars(DecoderConfig.tiny()), **decoder})
    return config


@pytest.fixture(scope="module")
def model() -> CLSPModel:
    torch.manual_seed(0)
    return CLSPModel(config_with_decoder()).eval()


def frames(b: int = 2, t: int = 12, d: int = 64, valid=(12, 7)) -> tuple[torch.Tensor, torch.Tensor]:
    mask = torch.arange(t)[None] < torch.tensor(valid)[:, None]
    return torch.nn.functional.normalize(torch.randn(b, t, d), dim=-1), mask


def waves() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randn(3, 16000, generator=g) * 0.1


# ------------------------------------------------------------------ inputs


def test_tokenize_is_bos_caption_eos_right_padded(model):
    tok = model.decoder.tokenize(CAPTIONS)
    ids = model.decoder.special_ids
    lengths = tok.attention_mask.sum(1)
    assert (tok.input_ids[:, 0] == ids["bos_token_id"]).all()
    for row, n in zip(tok.input_ids, lengths.tolist()):
        assert row[n - 1] == ids["eos_token_id"] and (row[n:] == ids["pad_token_id"]).all()
    body = model.decoder.tokenizer(CAPTIONS[0], add_special_tokens=False)["input_ids"]
    assert tok.input_ids[0, 1 : len(body) + 1].tolist() == body
    assert not tok.cut.any()
    # What collate would do in a data worker: the tokenizer travels alone (pickled), not the decoder.
    worker_copy = pickle.loads(pickle.dumps(model.decoder.tokenizer))
    again = tokenize_captions(worker_copy, CAPTIONS, model.config.decoder.max_length)
    assert torch.equal(again.input_ids, tok.input_ids) and torch.equal(again.attention_mask, tok.attention_mask)


def test_long_captions_are_cut_without_eos():
    torch.manual_seed(0)
    decoder = CaptionDecoder(DecoderConfig(**{**vars(DecoderConfig.tiny()), "max_length": 6}), 64)
    tok = decoder.tokenize(CAPTIONS)
    assert tok.input_ids.shape == (2, 6) and tok.cut.tolist() == [False, True]
    assert decoder.special_ids["eos_token_id"] not in tok.input_ids[1].tolist()
    assert tok.attention_mask[1].all()
    with pytest.raises(ValueError, match="empty"):
        decoder.tokenize(["fine", " "])


def test_tokenizer_without_pad_token_pads_with_eos_and_masks_by_attention():
    # A GPT-2-style tokenizer: one <|endoftext|> for bos and eos, no pad token.
    from transformers import PreTrainedTokenizerFast

    base = tiny_tokenizer()
    gpt2_like = PreTrainedTokenizerFast(tokenizer_object=base.backend_tokenizer, bos_token="</s>", eos_token="</s>")
    assert gpt2_like.pad_token is None
    decoder = CaptionDecoder(DecoderConfig.tiny(), 64, tokenizer=gpt2_like)
    eos = gpt2_like.convert_tokens_to_ids("</s>")
    assert decoder.special_ids == {"bos_token_id": eos, "eos_token_id": eos, "pad_token_id": eos}
    tok = decoder.tokenize(CAPTIONS)
    n = int(tok.attention_mask[0].sum())
    # The eos that ends the caption is a real token; the identical ids after it are padding.
    assert tok.input_ids[0, n - 1] == eos and tok.attention_mask[0, n - 1] == 1 and tok.attention_mask[0, n:].sum() == 0


# ------------------------------------------------------------------ teacher forcing


@pytest.mark.parametrize("family", FAMILIES)
def test_logits_ignore_padded_frames_and_padding_after_the_caption(family):
    torch.manual_seed(0)
    decoder = CaptionDecoder(DecoderConfig(tokenizer="clsp:tiny-bpe", max_length=32, hf_config=FAMILIES[family]), 64)
    decoder.eval()
    tok = decoder.tokenize(CAPTIONS)
    x, mask = frames()
    logits = decoder(x, mask, tok.input_ids)
    assert logits.shape == (*tok.input_ids.shape, decoder.lm.config.vocab_size)
    y = x.clone()
    y[1, 7:] = float("nan")  # padded frames of clip 1: never seen
    torch.testing.assert_close(decoder(y, mask, tok.input_ids), logits)
    n = int(tok.attention_mask[0].sum())  # caption 0 alone, unpadded: the same logits at its real positions
    alone = decoder(x[:1], mask[:1], tok.input_ids[:1, :n])
    torch.testing.assert_close(alone[0], logits[0, :n], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("source", ["tower", "projected"])
def test_gradients_reach_the_audio_tower_beside_a_contrastive_term(source):
    torch.manual_seed(0)
    model = CLSPModel(config_with_decoder(frames=source))
    model.train()
    try:
        wave = waves()
        audio = model.embed_audio(wave, torch.full((3,), wave.shape[1]), return_tokens=True)
        tok = model.decoder.tokenize(CAPTIONS + ["a beep"])
        text_tok = model.tokenize(CAPTIONS + ["a beep"])
        text = model.embed_text(text_tok.input_ids, text_tok.attention_mask).embeds
        logits = model.decoder(model.decoder_frames(audio), audio.mask, tok.input_ids)
        suite = LossSuite({"global": (GlobalInfoNCE(), 1.0), "caption": (CaptioningLoss(), 2.0)})
        assert suite.needs_captions
        out = ContrastiveOutputs(audio.embeds, text, torch.arange(3), model.scale(), caption_logits=logits,
                                 caption_ids=tok.input_ids, caption_mask=tok.attention_mask)
        total, parts = suite(out)
        total.backward()
        assert set(parts) == {"global", "caption"}
        grads = [p.grad for p in model.audio.parameters() if p.requires_grad]
        assert grads and all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
        assert all(p.grad is not None for p in model.decoder.parameters())
    finally:
        model.zero_grad(set_to_none=True)
        model.eval()


@pytest.mark.parametrize(("source", "expect"), [("tower", "hidden"), ("projected", "tokens")])
def test_the_decoder_reads_the_frames_its_config_names(source, expect):
    config = config_with_decoder(frames=source)
    config.head.dim = 32  # unlike the tower's 64: the bridge's width tells which frames it was built for
    model = CLSPModel(config).eval()
    wave = waves()
    audio = model.embed_audio(wave, torch.full((3,), wave.shape[1]), return_tokens=True)
    assert audio.hidden.shape[-1] == model.audio.hidden_size == 64 and audio.tokens.shape[-1] == 32
    assert model.decoder_frames(audio) is getattr(audio, expect)
    assert model.decoder.bridge[0].in_features == getattr(audio, expect).shape[-1]
    assert len(model.caption(wave.numpy(), sample_rate=16000, max_new_tokens=3)) == 3
    with pytest.raises(ValueError, match="model.decoder.*frames"):
        CLSPConfig.from_dict({**CLSPConfig.tiny().to_dict(), "decoder": {**vars(DecoderConfig.tiny()), "frames": "pooled"}})


def test_the_memory_tells_frames_apart_by_time():
    from transformers.models.whisper.modeling_whisper import sinusoids

    # Whisper's own position table: the same layout, so a Whisper tower's frames and the memory agree.
    torch.testing.assert_close(time_positions(50, 64, torch.device("cpu"), torch.float32), sinusoids(50, 64))
    assert time_positions(5, 7, torch.device("cpu"), torch.bfloat16).shape == (5, 7)
    decoder = CaptionDecoder(DecoderConfig.tiny(), 16).eval()
    same = torch.ones(1, 6, 16)  # one frame repeated: only its place in time tells the copies apart
    memory, _ = decoder.memory(same, torch.ones(1, 6, dtype=torch.bool))
    assert memory.shape == (1, 6, 64) and torch.cdist(memory[0], memory[0]).triu(1)[0, 1:].min() > 0.1


class ScalarReads(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.reads: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.reads.append(" <- ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno}"
                                          for f in traceback.extract_stack()[-6:-1][::-1]))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("family", FAMILIES)
def test_decoder_step_reads_nothing_on_the_host(family):
    torch.manual_seed(0)
    decoder = CaptionDecoder(DecoderConfig(tokenizer="clsp:tiny-bpe", max_length=32, hf_config=FAMILIES[family]), 64)
    tok = decoder.tokenize(CAPTIONS)
    x, mask = frames()
    x.requires_grad_()
    loss = CaptioningLoss(label_smoothing=0.1)
    with ScalarReads() as counter:
        logits = decoder(x, mask, tok.input_ids)
        value = loss(ContrastiveOutputs(x[:, 0], x[:, 0], torch.arange(2), torch.tensor(1.0), caption_logits=logits,
                                        caption_ids=tok.input_ids, caption_mask=tok.attention_mask))
        value.backward()
    assert counter.reads == [], "host reads in the decoder step:\n" + "\n".join(counter.reads)
    assert x.grad is not None and x.grad[0].abs().sum() > 0


def test_freeze_keeps_cross_attention_and_bridge_trainable():
    decoder = CaptionDecoder(DecoderConfig(**{**vars(DecoderConfig.tiny()), "freeze": True}), 32)
    trainable = {n for n, p in decoder.named_parameters() if p.requires_grad}
    assert trainable and all("crossattention" in n or "ln_cross_attn" in n or n.startswith("bridge") for n in trainable)
    assert any(n.startswith("bridge") for n in trainable)


def test_a_decoder_without_cross_attention_is_refused():
    llama = {"model_type": "llama", "vocab_size": 1000, "hidden_size": 32, "intermediate_size": 64,
             "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2}
    with pytest.raises(UserError, match="cannot cross-attend"):
        CaptionDecoder(DecoderConfig(tokenizer="clsp:tiny-bpe", hf_config=llama), 32)


def test_bad_decoder_settings():
    with pytest.raises(ValueError, match="model_type"):
        CLSPConfig.from_dict({**CLSPConfig.tiny().to_dict(), "decoder": {"tokenizer": "clsp:tiny-bpe"}})
    with pytest.raises(UserError, match="max_length"):
        CaptionDecoder(DecoderConfig(**{**vars(DecoderConfig.tiny()), "max_length": 65}), 32)
    small = {**DecoderConfig.tiny().hf_config, "vocab_size": 100}
    with pytest.raises(UserError, match="tokens but its LM only 100"):
        CaptionDecoder(DecoderConfig(tokenizer="clsp:tiny-bpe", hf_config=small), 32)


# ------------------------------------------------------------------ generation


def test_captions_are_deterministic_with_beams_and_the_cache_changes_nothing(model):
    wave = waves()
    beams = model.caption(wave, num_beams=3, max_new_tokens=8)
    assert len(beams) == 3 and all(isinstance(c, str) for c in beams)
    assert model.caption(wave, num_beams=3, max_new_tokens=8) == beams
    audio = model.encode_audio(wave, return_tokens=True)
    for num_beams in (1, 3):
        cached = model.decoder.generate(audio.tokens, audio.mask, num_beams=num_beams, max_new_tokens=8)
        plain = model.decoder.generate(audio.tokens, audio.mask, num_beams=num_beams, max_new_tokens=8, use_cache=False)
        assert torch.equal(cached, plain) and cached.shape[1] <= 8
    # A clip's caption does not depend on the rest of its batch.
    assert model.caption([wave[1]], num_beams=3, max_new_tokens=8) == beams[1:2]


def test_a_decoder_trained_with_the_loss_generates_each_clips_own_caption():
    # Overfit two clips (fixed frames) to two captions: teacher forcing (CaptioningLoss's shift) and
    # generation must agree on which position predicts which token, and captions must follow the frames.
    torch.manual_seed(0)
    decoder = CaptionDecoder(DecoderConfig.tiny(), 64)
    tok = decoder.tokenize(CAPTIONS)
    x, mask = frames()
    loss = CaptioningLoss()
    optimizer = torch.optim.Adam(decoder.parameters(), lr=3e-3)
    for _ in range(60):
        logits = decoder(x, mask, tok.input_ids)
        value = loss(ContrastiveOutputs(x[:, 0], x[:, 0], torch.arange(2), torch.tensor(1.0), caption_logits=logits,
                                        caption_ids=tok.input_ids, caption_mask=tok.attention_mask))
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
    decoder.eval()
    assert decoder.caption(x, mask) == CAPTIONS
    assert decoder.caption(x, mask, num_beams=3) == CAPTIONS
    assert decoder.caption(x.flip(0), mask.flip(0)) == CAPTIONS[::-1]


@pytest.mark.parametrize("family", ["bart", "bert"])
def test_other_decoder_families_generate_with_the_cache(family):
    # transformers' BartForCausalLM breaks at the second cached token unless given an encoder-decoder cache.
    torch.manual_seed(0)
    decoder = CaptionDecoder(DecoderConfig(tokenizer="clsp:tiny-bpe", hf_config=FAMILIES[family]), 64).eval()
    x, mask = frames()
    cached = decoder.generate(x, mask, num_beams=2, max_new_tokens=6)
    assert torch.equal(cached, decoder.generate(x, mask, num_beams=2, max_new_tokens=6, use_cache=False))


def test_caption_needs_a_decoder_and_room_for_the_tokens(model):
    plain = CLSPModel(CLSPConfig.tiny()).eval()
    assert plain.decoder is None
    with pytest.raises(UserError, match="no caption decoder"):
        plain.caption(waves())
    with pytest.raises(UserError, match="max_new_tokens 200"):
        model.caption(waves(), max_new_tokens=200)


# ------------------------------------------------------------------ saving and loading


def test_save_load_round_trip_with_a_decoder(model, tmp_path):
    model.save_pretrained(tmp_path / "m")
    folder = tmp_path / "m"
    assert (folder / "decoder_tokenizer" / "tokenizer.json").exists()
    data = json.loads((folder / "config.json").read_text())["clsp_config"]
    assert data["decoder"]["pretrained"] is None and data["decoder"]["hf_config"]["add_cross_attention"] is True
    keys = set(load_file(str(folder / "model.safetensors")))
    assert "decoder.lm.transformer.wte.weight" in keys and "decoder.lm.lm_head.weight" not in keys  # tied: once
    loaded = CLSPModel.from_pretrained(folder)
    assert not loaded.training and loaded.config.to_dict() == data
    wave = waves()
    assert loaded.caption(wave, num_beams=3, max_new_tokens=8) == model.caption(wave, num_beams=3, max_new_tokens=8)
    assert loaded.decoder.lm.lm_head.weight is loaded.decoder.lm.transformer.wte.weight
    tok = model.decoder.tokenize(CAPTIONS)
    audio = model.encode_audio(wave[:2], return_tokens=True)
    with torch.no_grad():
        torch.testing.assert_close(loaded.decoder(audio.tokens, audio.mask, tok.input_ids),
                                   model.decoder(audio.tokens, audio.mask, tok.input_ids), atol=0, rtol=0)


def test_hub_id_round_trip_with_a_decoder(model, tmp_path, monkeypatch):
    model.save_pretrained(tmp_path / "snapshot")
    monkeypatch.setattr("clsp.folders.snapshot_download", lambda repo_id, **kw: str(tmp_path / "snapshot"))
    loaded = CLSPModel.from_pretrained("someone/clsp-captioner")
    wave = waves()
    assert loaded.caption(wave, max_new_tokens=8) == model.caption(wave, max_new_tokens=8)


def test_configs_without_a_decoder_are_unchanged(tmp_path):
    plain = CLSPModel(CLSPConfig.tiny())
    data = plain.portable_config().to_dict()
    assert "decoder" not in data and CLSPConfig.from_dict(data).decoder is None
    plain.save_pretrained(tmp_path)
    assert "decoder" not in json.loads((tmp_path / "config.json").read_text())["clsp_config"]
    assert not (tmp_path / "decoder_tokenizer").exists()
    assert CLSPModel.from_pretrained(tmp_path).decoder is None
    assert CLSPConfig.from_dict({**data, "decoder": None}).decoder is None
