"""from_clap: a transformers CLAP checkpoint gives the same embeddings through clsp."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clsp import CLSPModel
from clsp.loading import load_model
from clsp.tiny import tiny_tokenizer


def _tiny_clap(tmp_path, fusion: bool):
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel

    torch.manual_seed(0)
    audio = dict(patch_embeds_hidden_size=16, depths=[1, 1], num_attention_heads=[2, 2], hidden_size=32,
                 window_size=8, spec_size=256, num_mel_bins=64, enable_fusion=fusion,
                 fusion_type="aff_2d" if fusion else None)
    text = dict(vocab_size=1000, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                intermediate_size=64, max_position_embeddings=80, pad_token_id=1)
    config = ClapConfig(text_config=text, audio_config=audio, projection_dim=24)
    clap = ClapModel(config).eval()
    folder = tmp_path / "clap"
    clap.save_pretrained(folder)
    tiny_tokenizer(folder)
    fe = ClapFeatureExtractor(frequency_min=50, frequency_max=14000, truncation="fusion" if fusion else "rand_trunc")
    fe.save_pretrained(folder)
    return clap, fe, folder


@pytest.mark.parametrize("fusion", [False, True])
def test_from_clap_matches_transformers(tmp_path, fusion):
    clap, fe, folder = _tiny_clap(tmp_path, fusion)
    model = CLSPModel.from_clap(folder)
    rng = np.random.default_rng(0)
    # Clips no longer than the 10 s window: no random crop on either side.
    waves = [rng.normal(0, 0.1, 48000 * 3).astype(np.float32), rng.normal(0, 0.1, 48000 * 10).astype(np.float32)]
    ours = model.encode_audio(waves, sample_rate=48000)
    with torch.no_grad():
        for i, wave in enumerate(waves):
            inputs = fe(wave, sampling_rate=48000, return_tensors="pt")
            if fusion:
                inputs["is_longer"][:] = False  # the extractor flags a random clip when none is longer
            ref = clap.get_audio_features(**inputs).pooler_output
            torch.testing.assert_close(ours[i], F.normalize(ref, dim=-1)[0], atol=1e-4, rtol=0)

    texts = ["a loud dog barks", "rain on a roof with wind"]
    tok = tiny_tokenizer()(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        ref = F.normalize(clap.get_text_features(**tok).pooler_output, dim=-1)
    torch.testing.assert_close(model.encode_text(texts), ref, atol=1e-4, rtol=0)
    assert model.logit_scale.item() == pytest.approx(clap.logit_scale_a.item())


def test_from_clap_then_save_round_trip(tmp_path):
    _, _, folder = _tiny_clap(tmp_path, fusion=False)
    model = load_model(f"clap:{folder}")
    model.save_pretrained(tmp_path / "clsp")
    again = CLSPModel.from_pretrained(tmp_path / "clsp")
    wave = [np.sin(np.linspace(0, 3000, 48000)).astype(np.float32)]
    torch.testing.assert_close(again.encode_audio(wave), model.encode_audio(wave), atol=0, rtol=0)
    # from_pretrained on a CLAP folder dispatches to from_clap.
    torch.testing.assert_close(CLSPModel.from_pretrained(folder).encode_text(["a beep"]), model.encode_text(["a beep"]))


def test_from_clap_rejects_other_folders(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ValueError, match="not a transformers CLAP"):
        CLSPModel.from_clap(tmp_path)
