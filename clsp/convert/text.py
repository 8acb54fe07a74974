"""The text encoders inside released checkpoints (RoBERTa for LAION-CLAP, BERT for WavCaps) as a
transformers config + clsp weights, and the tokenizer that goes with them.

Sizes (vocabulary, width, layers, MLP width, positions, token types) are read off the weights;
what weights cannot tell comes from the published base configs: the heads are width / 64 (true of
every BERT and RoBERTa size) and the LayerNorm epsilon and special token ids are roberta-base's /
bert-base-uncased's, which the released checkpoints were fine-tuned from.
"""

from __future__ import annotations

import re

import torch
from transformers import AutoTokenizer

from clsp.convert.checkpoint import KeyLedger
from clsp.errors import UserError

FAMILIES = {
    "roberta": {"model_type": "roberta", "layer_norm_eps": 1e-5, "pad_token_id": 1, "bos_token_id": 0,
                "eos_token_id": 2, "hidden_act": "gelu"},
    "bert": {"model_type": "bert", "layer_norm_eps": 1e-12, "pad_token_id": 0, "hidden_act": "gelu"},
}
TEXT_DROP = ("embeddings.position_ids", "embeddings.token_type_ids")  # index buffers, rebuilt by transformers


def text_encoder(ledger: KeyLedger, prefix: str, family: str, pooler: bool) -> tuple[dict, dict[str, torch.Tensor]]:
    """(transformers config fields, weights renamed to `text.encoder.*`) of the encoder under `prefix`."""
    def shape(name: str) -> tuple[int, ...]:
        return ledger.shape(prefix + name, f"expected a {family} text encoder")

    vocab, width = shape("embeddings.word_embeddings.weight")
    layers = {int(m.group(1)) for k in ledger.keys(prefix + "encoder.layer.")
              if (m := re.match(re.escape(prefix) + r"encoder\.layer\.(\d+)\.", k))}
    if width % 64:
        raise UserError(f"{ledger.source}: text width {width} is not a multiple of 64",
                        "expected a BERT/RoBERTa encoder with 64-wide attention heads")
    hf = dict(FAMILIES[family], vocab_size=vocab, hidden_size=width, num_hidden_layers=len(layers),
              num_attention_heads=width // 64, intermediate_size=shape("encoder.layer.0.intermediate.dense.weight")[0],
              max_position_embeddings=shape("embeddings.position_embeddings.weight")[0],
              type_vocab_size=shape("embeddings.token_type_embeddings.weight")[0])
    state = {}
    for key in ledger.keys(prefix):
        name = key[len(prefix):]
        if name in TEXT_DROP or (name.startswith("pooler.") and not pooler):
            continue
        if name.startswith(("embeddings.", "encoder.layer.", "pooler.")):
            state["text.encoder." + name] = ledger.take(key)
    if pooler and "text.encoder.pooler.dense.weight" not in state:
        raise UserError(f"{ledger.source}: missing weight {prefix + 'pooler.dense.weight'!r}",
                        "LAION-CLAP's text embedding is RoBERTa's pooler output")
    return hf, state


def load_source_tokenizer(name: str, vocab_size: int, family: str, source: str):
    """The tokenizer `name` (hub id or folder); a one-line error when it cannot be loaded or does not fit."""

    try:
        tok = AutoTokenizer.from_pretrained(name)
    except Exception as exc:  # transformers raises OSError, ValueError, HF hub errors...
        raise UserError(f"{source}: cannot load the {family} tokenizer {name!r} ({type(exc).__name__})",
                        "pass --tokenizer with a folder holding its files (or a cached hub id)") from None
    if len(tok) > vocab_size:
        raise UserError(f"{source}: tokenizer {name!r} has {len(tok)} tokens but the checkpoint's text embeddings have "
                        f"{vocab_size} rows", f"pass the {family} tokenizer the checkpoint was trained with")
    return tok
