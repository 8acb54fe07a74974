"""Tiny, offline building blocks: a byte-level BPE tokenizer trained in-process.

Real runs load `roberta-base` (or any hub tokenizer). The demo, the tests and CI
have no network, so the tiny text tower gets a RoBERTa-style tokenizer trained
here, deterministically, on a small English word list. Byte-level BPE never
produces unknown tokens, so any caption can be encoded.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from tokenizers import ByteLevelBPETokenizer, Tokenizer, processors
from transformers import PreTrainedTokenizerFast

TINY_TOKENIZER = "clsp:tiny-bpe"

# Words that describe sounds and speech; enough for the demo captions and tests.
_WORDS = """
a an the of and with in on at to from by for is are was were it its this that
sound sounds audio clip recording noise tone tones note notes beep beeps pulse pulses
click clicks chirp chirps sweep sweeps hum buzz whistle rain wind engine dog barks bird sings
low high mid pitch pitched deep bright dark soft loud quiet very fairly slightly moderately
fast slow steady rapid regular irregular rhythm rhythmic repeating repeated repeats continuous
rising falling rises falls upward downward constant flat gliding glide
white pink brown noise hiss rumble static crackle
sine square sawtooth triangle pure harsh buzzy hollow mellow smooth rough warm
short long brief sustained lasting seconds second one two three four five six seven eight
speaker speaks speaking voice female male woman man child adult
happy sad angry calm neutral excited fearful tone emotion
accent american british rate speed tempo volume loudness
background foreground followed by then while over under through beginning end middle
first second third throughout whole entire clip starts ends together layered mixed
plays playing played heard hear can be there
""".split()


def _corpus() -> list[str]:
    # Repeat the words in small sentences so BPE learns whole-word merges.
    lines = [" ".join(_WORDS[i : i + 8]) for i in range(0, len(_WORDS), 4)]
    return lines * 4 + [w.capitalize() for w in _WORDS]


@lru_cache(maxsize=1)
def _tokenizer_files() -> dict[str, str]:

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        _corpus(),
        vocab_size=1000,
        min_frequency=1,
        show_progress=False,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
    )
    return {"json": bpe._tokenizer.to_str()}


def tiny_tokenizer(save_to: str | Path | None = None):
    """A RoBERTa-style fast tokenizer (<s> ... </s>, pad id 1), built offline."""

    tok = Tokenizer.from_str(_tokenizer_files()["json"])
    tok.post_processor = processors.RobertaProcessing(
        ("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>"))
    )
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        model_max_length=512,
    )
    if save_to is not None:
        hf.save_pretrained(str(save_to))
    return hf

