"""Zero-shot and similarity from Python: calibrated probabilities, integer PCM, long clips in windows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clsp import CLSPConfig, CLSPModel
from clsp.evaluation.zeroshot import class_embeddings
from clsp.processor import split_windows
from clsp.zeroshot import check_templates, fill, label_embeddings

LABELS = ["dog_bark", "rain", "car horn"]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return CLSPModel(CLSPConfig.tiny("whisper")).eval()


@pytest.fixture(scope="module")
def clips():
    rng = np.random.default_rng(0)
    return [rng.normal(0, 0.1, n).astype(np.float32) for n in (16000, 24000, 8000, 20000)]


def test_zero_shot_rows_sum_to_one_and_rank_as_similarity(model, clips):
    probs = model.zero_shot(clips, LABELS)
    assert probs.shape == (4, 3)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(4))
    prompts = model.encode_text([fill("This is a sound of {}.", label) for label in LABELS])
    sims = model.similarity(model.encode_audio(clips), prompts)
    assert torch.equal(probs.argmax(dim=1), sims.argmax(dim=1))
    # Calibrated with the model's own scale, not a softmax over raw cosines.
    torch.testing.assert_close(probs, (model.scale() * sims).softmax(dim=1))
    assert not torch.allclose(probs, sims.softmax(dim=1))


def test_zero_shot_uses_the_evaluations_prompts(model, clips):
    """`clsp.eval zeroshot` and `CLSPModel.zero_shot` embed a label list the same way, templates averaged."""
    templates = ["This is a sound of {label}.", "a {label} sound"]
    torch.testing.assert_close(class_embeddings(model, LABELS, templates), label_embeddings(model, LABELS, templates))
    assert fill("a {label} sound", "dog_bark") == fill("a {} sound", "dog_bark") == "a dog bark sound"
    probs = model.zero_shot(clips, LABELS, template=["This is a sound of {}.", "a {} sound"])
    expected = (model.scale() * model.encode_audio(clips) @ class_embeddings(model, LABELS, templates).T).softmax(1)
    torch.testing.assert_close(probs, expected)


@pytest.mark.parametrize(("templates", "match"), [([], "at least one"), ("no field", "no {label} placeholder"),
                                                   (["{label} {other}"], "format string")])
def test_bad_templates(templates, match):
    with pytest.raises(ValueError, match=match):
        check_templates(templates)


def test_int16_pcm_is_scaled(model):
    rng = np.random.default_rng(1)
    pcm = (rng.normal(0, 0.1, 16000) * 32768).clip(-32768, 32767).astype(np.int16)
    as_float = pcm.astype(np.float32) / 32768
    expected = model.encode_audio([as_float])
    torch.testing.assert_close(model.encode_audio([pcm]), expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(model.encode_audio(torch.from_numpy(pcm)[None]), expected, atol=1e-5, rtol=0)
    pcm32 = pcm.astype(np.int32) * 65536
    torch.testing.assert_close(model.encode_audio([pcm32]), expected, atol=1e-5, rtol=0)
    pcm8 = (pcm // 256).astype(np.int16)
    torch.testing.assert_close(model.encode_audio([(pcm8 + 128).astype(np.uint8)]),
                               model.encode_audio([pcm8.astype(np.float32) / 128]), atol=1e-5, rtol=0)


def test_other_integer_samples_are_an_error(model):
    with pytest.raises(ValueError, match="int64.*integer PCM"):
        model.encode_audio([np.arange(16000)])


def test_split_windows_cover_the_clip():
    clip = np.arange(25, dtype=np.float32)
    windows, owner = split_windows([clip, clip[:7]], 10)
    assert [w[0] for w in windows] == [0, 10, 15, 0] and owner == [0, 0, 0, 1]
    assert all(len(w) == 10 for w in windows[:3]) and len(windows[3]) == 7


def test_long_audio_in_windows_is_the_mean_of_its_windows(model):
    window = round(model.window_seconds * model.sample_rate)
    assert model.window_seconds == 30.0
    rng = np.random.default_rng(2)
    long_clip = rng.normal(0, 0.1, 2 * window + window // 2).astype(np.float32)
    short_clip = long_clip[:16000]
    out = model.encode_audio([long_clip, short_clip], long="window")
    parts = model.encode_audio([long_clip[:window], long_clip[window : 2 * window], long_clip[-window:]])
    torch.testing.assert_close(out[0], torch.nn.functional.normalize(parts.sum(0), dim=0))
    torch.testing.assert_close(out[1], model.encode_audio([short_clip])[0])  # short clips: as with crop
    # The default reads the tower's first window only: a different embedding for this clip.
    assert not torch.allclose(model.encode_audio([long_clip])[0], out[0])
    with pytest.raises(ValueError, match="long must be"):
        model.encode_audio([short_clip], long="all")
