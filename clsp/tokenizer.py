"""Tokenization: a Hugging Face tokenizer (or the offline tiny one) and the caption preprocessing
every path shares.

Captions can be lower-cased and have chosen punctuation replaced by spaces before tokenizing
(`preprocess`), as WavCaps' dataset does; `tokenize` applies it, so training, `encode_text` and
evaluation see the same tokens. The text tower (`clsp.text`) only sees the resulting ids.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import AutoTokenizer

from clsp.errors import load_pretrained
from clsp.tiny import TINY_TOKENIZER, tiny_tokenizer


@dataclass
class Tokens:
    input_ids: torch.Tensor  # [N, L]
    attention_mask: torch.Tensor  # [N, L]
    cut: torch.Tensor  # [N] bool: this text was cut at max_length

    @property
    def truncated(self) -> int:
        """How many texts were cut at max_length."""
        return int(self.cut.sum())


def load_tokenizer(name: str, key: str = "model.text.tokenizer"):
    """A Hugging Face tokenizer by hub id or folder, or the offline tiny one."""
    if name == TINY_TOKENIZER:
        return tiny_tokenizer()

    return load_pretrained(key, name, AutoTokenizer.from_pretrained)


def preprocess(texts: list[str], lowercase: bool = False, punctuation: str = "") -> list[str]:
    """Captions lower-cased (if asked) with each character of `punctuation` replaced by a space."""
    if punctuation:
        table = str.maketrans(punctuation, " " * len(punctuation))
        texts = [t.translate(table) for t in texts]
    return [t.lower() for t in texts] if lowercase else list(texts)


def tokenize(tokenizer, texts: list[str], max_length: int, *, lowercase: bool = False,
             punctuation: str = "") -> Tokens:
    """Tokenize a batch (after `preprocess`), truncating to `max_length` and counting what was cut.

    The batch is tokenized and padded once without truncation (fast tokenizers do this in
    Rust), so truncation is counted rather than silent; over-long rows keep their first
    max_length-1 tokens and their final (end-of-text) token.
    """
    if isinstance(texts, str):
        texts = [texts]
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()]
    if bad:
        raise ValueError(f"empty or non-string caption(s) at index {bad[:10]}")
    if lowercase or punctuation:
        texts = preprocess(texts, lowercase, punctuation)
    enc = tokenizer(list(texts), padding="longest", truncation=False, return_tensors="pt", verbose=False)
    input_ids, attention_mask = enc["input_ids"], enc["attention_mask"]
    if getattr(tokenizer, "padding_side", "right") == "left":
        raise ValueError("clsp expects right padding; set tokenizer.padding_side = 'right'")
    lengths = attention_mask.sum(1)
    over = lengths > max_length
    if bool(over.any()):
        last = input_ids.gather(1, (lengths - 1).unsqueeze(1)).squeeze(1)  # each row's end-of-text token
        input_ids = input_ids[:, :max_length].clone()
        attention_mask = attention_mask[:, :max_length].clone()
        input_ids[over, max_length - 1] = last[over]
    return Tokens(input_ids.long(), attention_mask.long(), over)
