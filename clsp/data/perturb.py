"""Caption perturbation for hard negatives: flip one attribute word (CLSP stage 3).

``flip_attribute("A female speaker talks quickly", rng)`` returns e.g. ``"A male speaker talks
quickly"``: exactly one whole word (or listed hyphenated compound) is swapped by word-pair rules,
case preserved. Text inside quotes ("...", '...', “...”, ‘...’) is a transcript or a name, never a
description, so it is left alone. Negations get no special treatment ("not happy" -> "not sad").
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from functools import lru_cache

__all__ = ["ATTRIBUTE_PAIRS", "ACCENTS", "flip_attribute", "flip_candidates"]

# Each group lists (word, replacement) pairs. Pairs are two-way unless marked one-way; when a word
# appears twice, its first rule wins (so "slow" -> "fast", while "rapid" -> "slow" is one-way).
_TWO_WAY: dict[str, list[tuple[str, str]]] = {
    "gender": [
        ("male", "female"), ("males", "females"), ("man", "woman"), ("men", "women"),
        ("he", "she"), ("his", "her"), ("himself", "herself"), ("boy", "girl"), ("boys", "girls"),
        ("masculine", "feminine"), ("gentleman", "lady"), ("gentlemen", "ladies"), ("guy", "gal"),
        ("father", "mother"), ("son", "daughter"), ("brother", "sister"), ("husband", "wife"),
        ("mr", "ms"), ("actor", "actress"),
    ],
    "pitch": [
        ("high-pitched", "low-pitched"), ("higher-pitched", "lower-pitched"), ("high", "low"),
        ("higher", "lower"), ("highest", "lowest"),
    ],
    "speaking_rate": [
        ("fast", "slow"), ("faster", "slower"), ("fastest", "slowest"), ("quickly", "slowly"),
        ("fast-paced", "slow-paced"), ("hurried", "unhurried"), ("rushed", "leisurely"),
    ],
    "emotion": [
        ("happy", "sad"), ("happily", "sadly"), ("happiness", "sadness"), ("angry", "calm"),
        ("angrily", "calmly"), ("cheerful", "gloomy"), ("cheerfully", "gloomily"), ("joyful", "sorrowful"),
        ("anxious", "relaxed"), ("nervous", "confident"), ("nervously", "confidently"),
        ("enthusiastic", "bored"), ("excitedly", "flatly"),
    ],
    "loudness": [
        ("loud", "quiet"), ("louder", "quieter"), ("loudest", "quietest"), ("loudly", "softly"),
    ],
}
_ONE_WAY: dict[str, list[tuple[str, str]]] = {
    "gender": [("him", "her"), ("hers", "his")],
    "pitch": [("deep", "high"), ("deeper", "higher"), ("deep-pitched", "high-pitched"), ("shrill", "deep")],
    "speaking_rate": [("quick", "slow"), ("rapid", "slow"), ("rapidly", "slowly"), ("brisk", "slow")],
    "emotion": [("excited", "calm"), ("sorrowful", "joyful"), ("furious", "calm"), ("upset", "happy")],
    "loudness": [("quietly", "loudly"), ("soft", "loud"), ("booming", "quiet"), ("whispered", "shouted")],
}

# Accents are flipped only when the sample's attributes name one (e.g. {"accent": "Scottish"}):
# nationality words are too often content ("an American football game") to flip blindly.
ACCENTS = (
    "American", "British", "English", "Australian", "Canadian", "Indian", "Irish", "Scottish", "Welsh",
    "South African", "New Zealand", "Nigerian", "Jamaican", "French", "German", "Spanish", "Italian",
    "Russian", "Chinese", "Japanese", "Korean", "Mexican", "Brazilian", "Filipino",
)


def _build_pairs() -> dict[str, tuple[str, str]]:
    table: dict[str, tuple[str, str]] = {}
    for group, pairs in _TWO_WAY.items():
        for a, b in pairs:
            table.setdefault(a, (group, b))
            table.setdefault(b, (group, a))
    for group, pairs in _ONE_WAY.items():
        for a, b in pairs:
            table.setdefault(a, (group, b))
    return table


ATTRIBUTE_PAIRS: dict[str, tuple[str, str]] = _build_pairs()  # lower-case word -> (group, replacement)

# Whole words only: a maximal run of letters, digits, underscores and hyphens must equal a listed
# word, so "female" is not "male", "highway" is not "high", "high-quality" is not "high", while
# "high-pitched" is its own entry. One scan plus dict look-ups is ~3x faster than an alternation.
_TOKEN = re.compile(r"[\w-]+")
_EDGE_BEFORE, _EDGE_AFTER = r"(?<![\w-])", r"(?![\w-])"
# Quoted spans; an unclosed quote protects to the end. A straight single quote opens only after a
# non-word character, so apostrophes ("speaker's", "don't") do not open one.
# Inside single quotes, a quote followed by a letter is an apostrophe ('don't go'), not the end.
_QUOTED = re.compile(r"\"[^\"]*(?:\"|$)|“[^”]*(?:”|$)|‘(?:[^’]|’\w)*(?:’|$)|(?<!\w)'(?:[^']|'\w)*(?:'|$)")


def _match_case(template: str, word: str) -> str:
    if len(template) > 1 and template.isupper():
        return word.upper()
    if template[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


@lru_cache(maxsize=256)
def _accent_pattern(accent: str) -> re.Pattern[str]:
    return re.compile(_EDGE_BEFORE + re.escape(accent) + _EDGE_AFTER, re.IGNORECASE)


def flip_candidates(
    caption: str, attributes: Mapping[str, object] | None = None
) -> dict[str, list[tuple[int, int, list[str]]]]:
    """Every possible flip, by attribute group: group -> [(start, end, replacements)] outside quotes."""
    quoted = [m.span() for m in _QUOTED.finditer(caption)] if any(q in caption for q in "\"'“‘") else []

    def free(start: int, end: int) -> bool:
        return not any(qs < end and start < qe for qs, qe in quoted)

    found: dict[str, list[tuple[int, int, list[str]]]] = {}
    for m in _TOKEN.finditer(caption):
        rule = ATTRIBUTE_PAIRS.get(m.group(0).lower())
        if rule is not None and free(*m.span()):
            found.setdefault(rule[0], []).append((m.start(), m.end(), [rule[1]]))
    accent = attributes.get("accent") if attributes else None
    if isinstance(accent, str) and accent.strip():
        others = [a for a in ACCENTS if a.lower() != accent.strip().lower()]
        for m in _accent_pattern(accent.strip()).finditer(caption):
            if free(*m.span()):
                found.setdefault("accent", []).append((m.start(), m.end(), others))
    return found


def flip_attribute(
    caption: str, rng: random.Random, attributes: Mapping[str, object] | None = None
) -> str | None:
    """`caption` with exactly one attribute word swapped, or None when nothing can be flipped.

    The attribute group is drawn uniformly among those present (so a caption full of "he/his"
    still flips its pitch or rate words as often), then one occurrence, then (for accents) the
    replacement, all from `rng`. `attributes` is the sample's metadata; its "accent" value, when
    it occurs in the caption, can be swapped for another accent.
    """
    if not isinstance(caption, str):
        raise ValueError(f"flip_attribute: caption must be a str, got {type(caption).__name__}")
    found = flip_candidates(caption, attributes)
    if not found:
        return None
    group = rng.choice(sorted(found))
    start, end, replacements = rng.choice(found[group])
    new = _match_case(caption[start:end], rng.choice(replacements))
    return caption[:start] + new + caption[end:]
