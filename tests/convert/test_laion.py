"""LAION-CLAP original checkpoints: converted embeddings equal transformers' ClapModel on the same weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from convert_sources import laion_checkpoint

from clsp import CLSPModel
from clsp.convert import convert_laion
from clsp.errors import UserError
from clsp.loading import load_model
from clsp.tiny import tiny_tokenizer


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("roberta_tok")
    tiny_tokenizer(folder)
    return folder


@pytest.mark.parametrize("fusion", [False, True])
def test_laion_matches_transformers(tmp_path, tok_dir, fusion):
    from transformers import ClapFeatureExtractor

    clap = laion_checkpoint(tmp_path / "630k.pt", fusion=fusion)
    convert_laion(tmp_path / "630k.pt", tmp_path / "out", tokenizer=str(tok_dir))
    model = CLSPModel.from_pretrained(tmp_path / "out")
    assert model.config.audio.truncation == ("fusion" if fusion else "rand_trunc")

    # LAION's frontend: 48 kHz, hop 480, 64 mels 50-14 000 Hz, repeat-pad to 10 s.
    fe = ClapFeatureExtractor(frequency_min=50, frequency_max=14000, padding="repeatpad",
                              truncation="fusion" if fusion else "rand_trunc")
    rng = np.random.default_rng(0)
    waves = [rng.normal(0, 0.1, 48000 * 3).astype(np.float32), rng.normal(0, 0.1, 480000).astype(np.float32)]
    ours = model.encode_audio(waves, sample_rate=48000)
    with torch.no_grad():
        for i, wave in enumerate(waves):
            inputs = fe(wave, sampling_rate=48000, return_tensors="pt")
            inputs["is_longer"][:] = False  # no clip is longer than the window
            ref = F.normalize(clap.get_audio_features(**inputs).pooler_output, dim=-1)[0]
            torch.testing.assert_close(ours[i], ref, atol=1e-4, rtol=0)

    texts = ["a loud dog barks", "rain on a roof with wind, then a bird sings"]
    enc = tiny_tokenizer()(texts, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
    with torch.no_grad():
        ref = F.normalize(clap.get_text_features(**enc).pooler_output, dim=-1)
    torch.testing.assert_close(model.encode_text(texts), ref, atol=1e-4, rtol=0)
    assert model.scale().item() == pytest.approx(np.exp(3.1), rel=1e-6)


def test_amodel_and_fusion_flags_are_checked(tmp_path, tok_dir):
    laion_checkpoint(tmp_path / "c.pt")
    with pytest.raises(UserError, match="not HTSAT-base"):
        convert_laion(tmp_path / "c.pt", tokenizer=str(tok_dir), amodel="HTSAT-base")
    with pytest.raises(UserError, match="no fusion weights"):
        convert_laion(tmp_path / "c.pt", tokenizer=str(tok_dir), fusion=True)


def test_leftover_or_missing_key_is_an_error_naming_it(tmp_path, tok_dir):
    laion_checkpoint(tmp_path / "c.pt")
    data = torch.load(tmp_path / "c.pt", weights_only=True)
    data["state_dict"]["module.audio_branch.extra_gate.weight"] = torch.zeros(2)
    torch.save(data, tmp_path / "extra.pt")
    with pytest.raises(UserError, match="unexpected weight 'audio_branch.extra_gate.weight'"):
        convert_laion(tmp_path / "extra.pt", tokenizer=str(tok_dir))
    del data["state_dict"]["module.audio_branch.extra_gate.weight"]
    del data["state_dict"]["module.text_projection.2.bias"]
    torch.save(data, tmp_path / "missing.pt")
    with pytest.raises(UserError, match="missing weight 'text_projection.2.bias'"):
        convert_laion(tmp_path / "missing.pt", tokenizer=str(tok_dir))


def test_load_model_takes_the_source_file(tmp_path, tok_dir):
    laion_checkpoint(tmp_path / "c.pt")
    # The default tokenizer is roberta-base, not cached here: a one-line error saying what to do.
    with pytest.raises(UserError, match="roberta tokenizer 'roberta-base'.*--tokenizer"):
        load_model(tmp_path / "c.pt")
    converted = convert_laion(tmp_path / "c.pt", tokenizer=str(tok_dir))
    from clsp.convert import load_source

    again = load_source(tmp_path / "c.pt", tokenizer=str(tok_dir))
    torch.testing.assert_close(again.encode_text(["a beep"]), converted.encode_text(["a beep"]), atol=0, rtol=0)
