"""Captioning metrics (clsp.evaluation.captioning): hand-computed BLEU and CIDEr-D, the tokenizers, and
metrics that cannot run reported as unavailable (never as zero). Nothing here downloads."""

from __future__ import annotations

import math
import sys
import urllib.request

import pytest

from clsp.errors import UserError
from clsp.evaluation import captioning
from clsp.evaluation.captioning import METRICS, caption_metrics, simple_tokenize

pytest.importorskip("pycocoevalcap")
needs_java = pytest.mark.skipif(captioning.java_problem() is not None, reason="needs Java")

BLEU = ["BLEU_1", "BLEU_2", "BLEU_3", "BLEU_4"]


def test_bleu_equals_the_hand_computed_value():
    # Hypothesis (6 tokens) against both references of its clip:
    #   unigrams the the dog barks at cat: "the" clipped to 1 by either reference -> 5/6
    #   bigrams  the-dog dog-barks barks-at | at-the the-cat                     -> 3/5
    #   trigrams the-dog-barks dog-barks-at | barks-at-the at-the-cat            -> 2/4
    #   4-grams  the-dog-barks-at | dog-barks-at-the barks-at-the-cat            -> 1/3
    # Brevity: the closest reference length is 7 (|7-6| < |3-6|), so BP = exp(1 - 7/6).
    result = caption_metrics(["The dog barks at the cat."], [["the dog barks at a cat nearby", "A dog barks"]],
                             metrics=BLEU, tokenizer="simple")
    bp = math.exp(1 - 7 / 6)
    precisions = [5 / 6, 3 / 5, 2 / 4, 1 / 3]
    for n in range(1, 5):
        expected = bp * math.prod(precisions[:n]) ** (1 / n)
        assert result["scores"][f"BLEU_{n}"] == pytest.approx(expected, rel=1e-6)
    assert result["unavailable"] == {} and result["clips"] == 1


def test_cider_d_equals_the_hand_computed_value():
    # Two clips, so idf = log(2) - log(df) = log(2) for every n-gram (each occurs in one clip's references).
    # Clip 1: "dog barks" vs "dog barks": cosine 1 for 1- and 2-grams, no 3/4-grams -> mean [1, 1, 0, 0] = 0.5.
    # Clip 2: "rain" vs "rain falls": unigram cosine 1/sqrt(2), length penalty exp(-1^2 / (2 * 6^2));
    #         vs "rain": unigram cosine 1, no penalty. Mean over n and over the two references.
    # CIDEr-D = 10 * mean over clips.
    result = caption_metrics(["dog barks", "rain"], [["dog barks"], ["rain falls", "rain"]],
                             metrics=["CIDEr-D"], tokenizer="simple")
    clip1 = 0.5
    clip2 = ((1 / math.sqrt(2)) * math.exp(-1 / 72) / 4 + 1 / 4) / 2
    assert result["scores"]["CIDEr-D"] == pytest.approx(10 * (clip1 + clip2) / 2, rel=1e-9)


def test_cider_d_of_one_clip_is_unavailable_not_zero():
    result = caption_metrics(["a dog barks"], [["a dog barks"]], metrics=["CIDEr-D", "ROUGE_L"], tokenizer="simple")
    assert "CIDEr-D" not in result["scores"] and "2 clips" in result["unavailable"]["CIDEr-D"]
    assert result["scores"]["ROUGE_L"] == pytest.approx(1.0)


def test_simple_tokenizer_on_captions():
    assert simple_tokenize("A dog's bark (loud), can't stop... \"rain-soaked\" 1,000 times!") == \
        "a dog 's bark -lrb- loud -rrb- ca n't stop rain-soaked 1,000 times"


@needs_java
def test_simple_tokenizer_matches_the_ptb_tokenizer_on_captions():
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    sentences = ["A man speaks, then a dog barks.", "Rain falls on a tin roof; thunder rumbles!",
                 "Someone's footsteps (on gravel) and a car won't start.", "Birds chirp -- wind blows...",
                 'A woman says "hello" at 3.5 kHz & a high-pitched beep', "It's raining; they're talking, I'm not."]
    ptb = PTBTokenizer().tokenize({i: [{"caption": s}] for i, s in enumerate(sentences)})
    assert [simple_tokenize(s) for s in sentences] == [ptb[i][0] for i in range(len(sentences))]


@needs_java
def test_a_line_break_inside_a_caption_shifts_nothing():
    result = caption_metrics(["a dog\rbarks", "rain\u2028falls"], [["a dog barks"], ["rain falls"]],
                             metrics=["BLEU_1", "ROUGE_L"], tokenizer="ptb")
    assert result["scores"] == pytest.approx({"BLEU_1": 1.0, "ROUGE_L": 1.0})


@needs_java
def test_all_metrics_with_java_and_spice_reported_honestly():
    predictions = ["a dog barks at the cat", "rain falls on a roof", "a man speaks"]
    references = [["the dog barks at a cat nearby", "a dog barks"], ["heavy rain falls on the roof", "rain on a roof"],
                  ["a man is speaking", "someone talks"]]
    result = caption_metrics(predictions, references)
    assert result["tokenization"].startswith("ptb")
    assert set(BLEU + ["METEOR", "ROUGE_L", "CIDEr-D"]) <= set(result["scores"])
    assert 0 < result["scores"]["METEOR"] <= 1
    assert set(result["scores"]) | set(result["unavailable"]) == set(METRICS)
    if "SPICE" in result["unavailable"]:
        assert "SPIDEr" not in result["scores"] and "SPICE" in result["unavailable"]["SPIDEr"]
    else:
        spider = (result["scores"]["CIDEr-D"] + result["scores"]["SPICE"]) / 2
        assert result["scores"]["SPIDEr"] == pytest.approx(spider)


def test_without_java_the_java_metrics_are_unavailable(monkeypatch):
    monkeypatch.setattr(captioning, "java_problem", lambda: "Java is not installed (no `java` on PATH)")
    result = caption_metrics(["a dog barks", "rain"], [["a dog barks"], ["rain falls"]])
    assert set(result["unavailable"]) == {"METEOR", "SPICE", "SPIDEr"}
    assert "Java is not installed" in result["unavailable"]["METEOR"]
    assert result["tokenization"].startswith("simple") and "Java is not installed" in result["tokenization"]
    assert set(result["scores"]) == set(BLEU + ["ROUGE_L", "CIDEr-D"])
    strict = caption_metrics(["a dog barks", "rain"], [["a dog barks"], ["rain falls"]], tokenizer="ptb")
    assert strict["scores"] == {} and "PTB tokenisation cannot run" in strict["unavailable"]["BLEU_1"]


def test_spice_without_corenlp_downloads_nothing(monkeypatch, tmp_path):
    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(urllib.request, "urlretrieve", no_download)
    monkeypatch.setattr(captioning, "spice_jars", lambda: [tmp_path / "stanford-corenlp-3.6.0.jar"])
    monkeypatch.setattr(captioning, "java_problem", lambda: None)
    result = caption_metrics(["a dog barks", "rain"], [["a dog barks"], ["rain falls"]], metrics=["SPIDEr"],
                             tokenizer="simple")
    assert result["scores"] == {}
    assert "Stanford CoreNLP 3.6.0" in result["unavailable"]["SPIDEr"]
    assert captioning.SPICE_FETCH in result["unavailable"]["SPIDEr"]


def test_without_pycocoevalcap_everything_is_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "pycocoevalcap", None)
    result = caption_metrics(["a dog barks"], [["a dog barks"]])
    assert result["scores"] == {} and set(result["unavailable"]) == set(METRICS)
    assert "clsp[caption]" in result["unavailable"]["CIDEr-D"]


@pytest.mark.parametrize("predictions, references, kwargs, match", [
    (["a"], [["a"], ["b"]], {}, "1 predictions for 2"),
    (["a"], [[]], {}, "non-empty list"),
    (["a"], ["a dog"], {}, "non-empty list"),
    (["a"], [["a"]], {"metrics": ["CIDEr"]}, "unknown captioning metric"),
    (["a"], [["a"]], {"tokenizer": "nltk"}, "unknown caption tokenizer"),
])
def test_bad_input_is_a_user_error(predictions, references, kwargs, match):
    with pytest.raises(UserError, match=match):
        caption_metrics(predictions, references, **kwargs)
