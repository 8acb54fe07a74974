"""`python -m clsp.export MODEL OUT --format transformers`: transformers loads the folder without clsp and
gives clsp's embeddings, scale and zero-shot ranking; CLSPModel.from_clap round-trips it."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from export_models import clips, saved_model, tiny_htsat
from safetensors.torch import load_file

from clsp import CLSPModel
from clsp.evaluation.zeroshot import class_embeddings
from clsp.export import main

VARIANTS = [(False, 48000), (True, 48000), (False, 32000), (True, 32000)]
SECONDS = (4, 7.5, 10)  # clips up to the window: no random crop on either side
LABELS = ["dog barks", "rain", "engine", "bird sings", "whistle"]


@pytest.fixture(scope="module", params=VARIANTS, ids=[f"{'fused' if f else 'unfused'}-{r // 1000}k" for f, r in VARIANTS])
def exported(request, tmp_path_factory):
    fusion, rate = request.param
    tmp = tmp_path_factory.mktemp("clap")
    model, folder = saved_model(tiny_htsat(fusion, rate), tmp / "clsp")
    assert main([str(folder), str(tmp / "clap"), "--format", "transformers"]) == 0
    from transformers import ClapModel, ClapProcessor

    clap = ClapModel.from_pretrained(tmp / "clap").eval()
    processor = ClapProcessor.from_pretrained(tmp / "clap")
    return SimpleNamespace(model=model, folder=tmp / "clap", clap=clap, processor=processor, rate=rate, fusion=fusion)


def _longer_than_window(e) -> float:
    """A clip 1.5 hops past the window: the extractor's fusion chunks are then not random (one choice each)."""
    return e.model.config.audio.max_seconds + 1.5 * e.model.audio.frontend.hop_length / e.rate


def test_audio_through_each_librarys_extractor(exported):
    e = exported
    seconds = (*SECONDS, _longer_than_window(e)) if e.fusion else SECONDS
    # With fusion, a batch holding a longer clip keeps the extractor from flagging a random short one.
    waves = clips(e.rate, seconds)
    inputs = e.processor(audio=waves, sampling_rate=e.rate, return_tensors="pt")
    assert inputs["is_longer"].view(-1).tolist() == [s > 10 for s in seconds]
    with torch.no_grad():
        theirs = e.clap.get_audio_features(**inputs).pooler_output
    torch.testing.assert_close(e.model.encode_audio(waves, sample_rate=e.rate), theirs, atol=1e-4, rtol=0)


def test_audio_on_identical_features(exported):
    e = exported
    wave = torch.from_numpy(clips(e.rate, [7.5])[0])[None]
    with torch.no_grad():
        features, is_longer = e.model.audio.frontend(wave)
        theirs = e.clap.get_audio_features(input_features=features, is_longer=is_longer[:, None]).pooler_output
    torch.testing.assert_close(e.model.encode_audio(wave), F.normalize(theirs, dim=-1), atol=1e-5, rtol=0)


def test_text_and_scale(exported):
    e = exported
    texts = ["a dog barks", "rain on a roof with wind and distant thunder", "beep"]
    inputs = e.processor(text=texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        theirs = e.clap.get_text_features(**inputs).pooler_output
    torch.testing.assert_close(e.model.encode_text(texts), theirs, atol=1e-4, rtol=0)
    # A caption over max_length: the processor's truncation keeps what clsp keeps.
    long = [" ".join(["dog"] * 100)]
    cut = e.processor(text=long, return_tensors="pt", truncation=True)
    assert cut["input_ids"].tolist() == e.model.tokenize(long).input_ids.tolist()
    scale = float(e.model.logit_scale)
    assert float(e.clap.logit_scale_a) == pytest.approx(scale, abs=1e-7)
    assert float(e.clap.logit_scale_t) == pytest.approx(scale, abs=1e-7)


def test_pipeline_ranks_as_clsp_zeroshot(exported):
    from transformers import pipeline

    e = exported
    # Unfused: a 4 s clip. Fused: the pipeline flags a lone short clip is_longer (clsp never does), so the
    # clip is one the extractor treats as longer, with deterministic chunks.
    wave = clips(e.rate, [_longer_than_window(e) if e.fusion else 4.0], seed=3)[0]
    result = pipeline("zero-shot-audio-classification", model=str(e.folder))(wave, candidate_labels=LABELS)
    audio = e.model.encode_audio([wave], sample_rate=e.rate)
    logits = e.model.scale() * audio @ class_embeddings(e.model, LABELS).T
    ours = dict(zip(LABELS, logits.softmax(-1)[0].tolist()))
    assert result[0]["label"] == max(ours, key=ours.get)
    assert [r["label"] for r in result] == sorted(LABELS, key=ours.get, reverse=True)
    for r in result:
        assert r["score"] == pytest.approx(ours[r["label"]], abs=1e-5)


def test_from_clap_round_trips_exactly(exported, tmp_path):
    e = exported
    back = CLSPModel.from_clap(e.folder)
    ours, theirs = e.model.state_dict(), back.state_dict()
    index_buffers = {k for k in theirs if k.endswith(("position_ids", "token_type_ids"))}
    assert set(theirs) - index_buffers == set(ours)
    for key, value in ours.items():
        assert torch.equal(theirs[key], value), key
    a, b = e.model.config.to_dict(), back.config.to_dict()
    explicit = {"hf_config", "n_fft", "hop_length"}  # None (the tower's default) comes back as the value
    for section in ("audio", "text"):
        assert {k: v for k, v in a[section].items() if k not in explicit} == {
            k: v for k, v in b[section].items() if k not in explicit}
    assert back.audio.frontend.extra_repr() == e.model.audio.frontend.extra_repr()
    assert a["head"]["dim"] == b["head"]["dim"] and a["head"]["logit_scale_max"] == b["head"]["logit_scale_max"]
    waves, texts = clips(e.rate, SECONDS), ["a dog barks", "rain"]
    assert torch.equal(back.encode_audio(waves, sample_rate=e.rate), e.model.encode_audio(waves, sample_rate=e.rate))
    assert torch.equal(back.encode_text(texts), e.model.encode_text(texts))
    # Exporting the imported model again writes the same ClapModel.
    assert main([f"clap:{e.folder}", str(tmp_path / "again"), "--format", "transformers"]) == 0
    first, second = load_file(e.folder / "model.safetensors"), load_file(tmp_path / "again" / "model.safetensors")
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    strip = ("transformers_version",)
    c1, c2 = (json.loads((f / "config.json").read_text()) for f in (e.folder, tmp_path / "again"))
    assert {k: v for k, v in c1.items() if k not in strip} == {k: v for k, v in c2.items() if k not in strip}


def test_xlm_roberta_text_tower(tmp_path):
    from transformers import ClapModel

    config = tiny_htsat()
    config.text.hf_config = dict(config.text.hf_config, model_type="xlm-roberta")
    model, folder = saved_model(config, tmp_path / "clsp")
    assert main([str(folder), str(tmp_path / "clap"), "--format", "transformers"]) == 0
    tokens = model.tokenize(["a dog barks", "rain"])
    with torch.no_grad():
        theirs = ClapModel.from_pretrained(tmp_path / "clap").get_text_features(
            input_ids=tokens.input_ids, attention_mask=tokens.attention_mask).pooler_output
    torch.testing.assert_close(model.encode_text(["a dog barks", "rain"]), theirs, atol=1e-5, rtol=0)
