"""flip_attribute: one whole attribute word swapped, case kept, quotes and look-alike words untouched."""

from __future__ import annotations

import random
import re

import pytest

from clsp.data.perturb import ACCENTS, flip_attribute, flip_candidates


def all_flips(caption: str, attributes=None, tries: int = 200) -> set[str | None]:
    return {flip_attribute(caption, random.Random(seed), attributes) for seed in range(tries)}


def word_diff(a: str, b: str) -> list[tuple[str, str]]:
    wa, wb = a.split(), b.split()
    assert len(wa) == len(wb), (a, b)
    return [(x, y) for x, y in zip(wa, wb) if x != y]


# caption -> every result flip_attribute may return
TABLE = {
    "A female speaker talks.": {"A male speaker talks."},
    "A male voice.": {"A female voice."},
    "The man speaks fast.": {"The woman speaks fast.", "The man speaks slow."},
    "She sounds HAPPY": {"He sounds HAPPY", "She sounds SAD"},
    "A high-pitched whistle": {"A low-pitched whistle"},
    "Loudly, he shouts": {"Softly, he shouts", "Loudly, she shouts"},
    "A deep voice": {"A high voice"},
    "The speaker is not angry.": {"The speaker is not calm."},  # negations are not special
    "He's quick.": {"She's quick.", "He's slow."},
    'She said "the man is happy" quietly.': {'He said "the man is happy" quietly.',
                                             'She said "the man is happy" loudly.'},
    "He read 'don't be sad' slowly": {"She read 'don't be sad' slowly", "He read 'don't be sad' quickly"},
    "The speaker's tone is calm": {"The speaker's tone is angry"},
}

UNCHANGED = [
    "A dog barks near a road.",
    "Rain falls on a tin roof while wind blows.",
    '"A man says he is happy and loud"',
    "“She is fast and high”",
    "‘he is sad’",
    "A shell cracks on the highway; the shelf is highlighted.",  # he/high inside other words
    "A human manager hears themes in the hemisphere.",  # man, he inside words
    "A high-quality man-made recording.",  # hyphenated compounds that are not attributes
    "",
]


@pytest.mark.parametrize(("caption", "expected"), list(TABLE.items()))
def test_flip_table(caption, expected):
    results = all_flips(caption)
    assert results == expected
    for r in results:
        assert len(word_diff(caption, r)) == 1  # exactly one word swapped


@pytest.mark.parametrize("caption", UNCHANGED)
def test_nothing_to_flip(caption):
    assert flip_attribute(caption, random.Random(0)) is None
    assert flip_candidates(caption) == {}


def test_female_is_not_mangled():
    results = all_flips("A female voice with a male choir")
    assert results == {"A male voice with a male choir", "A female voice with a female choir"}
    assert not any("femfemale" in r or "fefemale" in r for r in results)


def test_case_preserved():
    assert flip_attribute("MALE", random.Random(0)) == "FEMALE"
    assert flip_attribute("Male", random.Random(0)) == "Female"
    assert flip_attribute("male", random.Random(0)) == "female"


def test_deterministic_and_covers_groups():
    caption = "A woman speaks quickly in a high, loud and angry voice."
    seq1 = [flip_attribute(caption, random.Random(s)) for s in range(50)]
    seq2 = [flip_attribute(caption, random.Random(s)) for s in range(50)]
    assert seq1 == seq2
    swapped = {word_diff(caption, r)[0][1].strip(",.") for r in seq1}
    assert swapped == {"man", "slowly", "low", "quiet", "calm"}


def test_accent_only_when_given():
    caption = "A Scottish man with a Scottish accent."
    assert "accent" not in flip_candidates(caption)
    results = all_flips(caption, {"accent": "scottish", "intrinsic_tags": ["husky"]}, tries=400)
    allowed = {"A Scottish woman with a Scottish accent."}
    for other in ACCENTS:
        if other != "Scottish":  # exactly one of the two occurrences changes
            allowed |= {f"A {other} man with a Scottish accent.", f"A Scottish man with a {other} accent."}
    assert results <= allowed
    assert len(results) > 10
    # multi-word accents are matched as a phrase
    out = flip_attribute("An accent from South Africa, South African.", random.Random(1), {"accent": "South African"})
    assert out is not None and out.endswith(".") and "South African" not in out


def test_bad_input():
    with pytest.raises(ValueError, match="caption"):
        flip_attribute(None, random.Random(0))  # type: ignore[arg-type]


def test_replacement_is_whole_word():
    rng = random.Random(3)
    for _ in range(100):
        out = flip_attribute("he and his boy heard her", rng)
        assert out is not None
        assert re.fullmatch(r"[a-z ]+", out)
