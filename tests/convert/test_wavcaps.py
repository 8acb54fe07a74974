"""WavCaps / FusionAudio retrieval checkpoints (ASE): converted embeddings equal the ASE computation
(HTSAT on ClapFeatureExtractor features at 32 kHz / hop 320, zero-padded; BERT [CLS] after WavCaps'
caption preprocessing) on the same weights."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from convert_sources import bert_tokenizer, wavcaps_checkpoint, wavcaps_features

from clsp import CLSPModel
from clsp.convert import convert_wavcaps
from clsp.errors import UserError
from clsp.loading import load_model


def wavcaps_text_preprocess(sentence: str) -> str:
    """WavCaps' data_handling/text_transform.py, the reference for the documented preprocessing."""
    sentence = sentence.lower()
    sentence = re.sub(r'\s([,.!?;:"](?:\s|$))', r"\1", sentence).replace("  ", " ")
    return re.sub('[(,.!?;:|*")]', " ", sentence).replace("  ", " ")


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("wavcaps")
    refs = wavcaps_checkpoint(root / "HTSAT-BERT.pt", temp=0.0085)
    bert_tokenizer(root / "tok")
    convert_wavcaps(root / "HTSAT-BERT.pt", root / "out", tokenizer=str(root / "tok"))
    return root, refs


def test_wavcaps_audio_matches_ase(converted):
    root, (audio, _, audio_proj, _) = converted
    model = CLSPModel.from_pretrained(root / "out")
    assert (model.sample_rate, model.config.audio.hop_length, model.config.audio.padding) == (32000, 320, "pad")
    fe = wavcaps_features()
    rng = np.random.default_rng(1)
    waves = [rng.normal(0, 0.1, 32000 * 4).astype(np.float32), rng.normal(0, 0.1, 320000).astype(np.float32)]
    ours = model.encode_audio(waves, sample_rate=32000)
    with torch.no_grad():
        for i, wave in enumerate(waves):
            features = fe(wave, sampling_rate=32000, return_tensors="pt")["input_features"]
            ref = F.normalize(audio_proj(audio(input_features=features).pooler_output), dim=-1)[0]
            torch.testing.assert_close(ours[i], ref, atol=1e-4, rtol=0)


def test_wavcaps_text_matches_ase(converted):
    root, (_, bert, _, text_proj) = converted
    model = CLSPModel.from_pretrained(root / "out")
    raw = ['A Dog barks, loudly!  Then "rain" (heavy) falls; wind|hum*', "Birds sing: a man speaks?",
           " ".join(["a very loud sound of rain on a roof"] * 6)]  # past 30 tokens: truncated
    tok = bert_tokenizer(root / "tok2")
    enc = tok([wavcaps_text_preprocess(t) for t in raw], padding="longest", truncation=True, max_length=30,
              return_tensors="pt")
    with torch.no_grad():
        cls = bert(input_ids=enc.input_ids, attention_mask=enc.attention_mask)[0][:, 0]
        ref = F.normalize(text_proj(cls), dim=-1)
    torch.testing.assert_close(model.encode_text(raw), ref, atol=1e-4, rtol=0)
    # The scale is 1/temp, kept although it passes LAION's clamp of 100.
    assert model.scale().item() == pytest.approx(1 / 0.0085, rel=1e-5)
    model.clamp_logit_scale_()
    assert model.scale().item() == pytest.approx(1 / 0.0085, rel=1e-5)
    assert model.config.text.pooling == "cls" and model.text.encoder.pooler is None


def test_load_model_takes_the_wavcaps_file(converted, tmp_path):
    root, _ = converted
    # The default tokenizer (bert-base-uncased) is not cached offline: one line saying what to pass.
    with pytest.raises(UserError, match="bert tokenizer 'bert-base-uncased'.*--tokenizer"):
        load_model(root / "HTSAT-BERT.pt")


def test_wavcaps_keys_are_all_accounted_for(tmp_path):
    wavcaps_checkpoint(tmp_path / "w.pt")
    bert_tokenizer(tmp_path / "tok")
    data = torch.load(tmp_path / "w.pt", weights_only=False)
    data["model"]["text_encoder.text_encoder.pooler.dense.weight"] = torch.zeros(128, 128)
    torch.save(data, tmp_path / "pooler.pt")
    with pytest.raises(UserError, match="unexpected weight 'text_encoder.text_encoder.pooler.dense.weight'"):
        convert_wavcaps(tmp_path / "pooler.pt", tokenizer=str(tmp_path / "tok"))
    model = convert_wavcaps(tmp_path / "w.pt", tokenizer=str(tmp_path / "tok"))
    assert model.logit_scale.item() == pytest.approx(math.log(1 / 0.05))
