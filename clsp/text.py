"""The text tower: any Hugging Face encoder and its tokenizer, plus pooling.

`pooler` uses the encoder's pooler output (LAION-CLAP uses RoBERTa's), `cls` the first
token's hidden state (WavCaps: BERT without a pooler), `mean` the masked mean over tokens.
Captions can be lower-cased and have chosen punctuation replaced by spaces before tokenizing
(`preprocess`), as WavCaps' dataset does; `tokenize` applies it, so training, `encode_text` and
evaluation see the same tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from clsp.config import TextConfig, portable_hf_config
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


def load_tokenizer(name: str):
    """A Hugging Face tokenizer by hub id or folder, or the offline tiny one."""
    if name == TINY_TOKENIZER:
        return tiny_tokenizer()
    from transformers import AutoTokenizer

    return load_pretrained("model.text.tokenizer", name, AutoTokenizer.from_pretrained)


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


def _build_encoder(cfg: TextConfig) -> nn.Module:
    from transformers import AutoConfig, AutoModel

    if cfg.pretrained is not None:
        return load_pretrained("model.text.pretrained", cfg.pretrained,
                               lambda name: AutoModel.from_pretrained(name, **cfg.hf_config))
    hf = dict(cfg.hf_config)
    model_type = hf.pop("model_type")
    if model_type == "clap_text_model":
        # CLAP's RoBERTa-like text model is not registered with AutoModel.
        from transformers import ClapTextConfig, ClapTextModel

        return ClapTextModel(ClapTextConfig(**hf))
    return AutoModel.from_config(AutoConfig.for_model(model_type, **hf))


class TextTower(nn.Module):
    """Encoder + pooling. `forward` returns (pooled [N, H], tokens [N, L, H], mask [N, L])."""

    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = _build_encoder(cfg)
        self.hidden_size = int(self.encoder.config.hidden_size)
        if cfg.pooling == "pooler" and getattr(self.encoder, "pooler", None) is None:
            raise ValueError(f"text pooling 'pooler' needs an encoder with a pooler; {type(self.encoder).__name__} has none")
        if cfg.pooling != "pooler" and getattr(self.encoder, "pooler", None) is not None:
            # Unused weights would make DDP fail (or need the slow unused-parameter search).
            self.encoder.pooler = None
        if cfg.gradient_checkpointing:
            # transformers 5 renamed gradient_checkpointing_enable; accept either.
            enable = getattr(self.encoder, "activation_checkpointing_enable", None)
            (enable or self.encoder.gradient_checkpointing_enable)()
        if cfg.freeze:
            self.encoder.requires_grad_(False)

    def hf_config_dict(self) -> dict:
        return portable_hf_config(self.encoder.config)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        mask = attention_mask.bool()
        out = self.encoder(input_ids=input_ids, attention_mask=_prepared_mask(self.encoder, attention_mask))
        tokens = out.last_hidden_state
        if self.cfg.pooling == "pooler":
            pooled = out.pooler_output
        elif self.cfg.pooling == "cls":
            pooled = tokens[:, 0]
        else:
            weights = mask.unsqueeze(-1).to(tokens.dtype)
            pooled = (tokens * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return pooled, tokens, mask


def _prepared_mask(encoder: nn.Module, attention_mask: torch.Tensor) -> torch.Tensor:
    """The key-padding mask as the 4-D mask transformers takes as is, for eager and SDPA attention.

    Given a 2-D mask, transformers first asks `mask.all()` (to skip masking when nothing is padded):
    a host read, so a device sync per text batch. A prepared [N, 1, 1, L] mask skips that check;
    other attention kernels (flash, flex) get the 2-D mask unchanged.
    """
    kind = getattr(encoder.config, "_attn_implementation", None)
    mask = attention_mask.bool()
    if kind == "sdpa":
        return mask[:, None, None, :]  # bool, True = attend
    if kind == "eager":
        dtype = next(encoder.parameters()).dtype
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(
            ~mask, torch.finfo(dtype).min)[:, None, None, :]
    return attention_mask
