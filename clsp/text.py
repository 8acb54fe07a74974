"""The text tower: any Hugging Face encoder, plus pooling. Tokenization is `clsp.tokenizer`.

`pooler` uses the encoder's pooler output (LAION-CLAP uses RoBERTa's), `cls` the first
token's hidden state (WavCaps: BERT without a pooler), `mean` the masked mean over tokens.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, ClapTextConfig, ClapTextModel

from clsp.config import TextConfig, portable_hf_config
from clsp.errors import load_pretrained


def _build_encoder(cfg: TextConfig) -> nn.Module:

    attn = cfg.attn_implementation
    if cfg.pretrained is not None:
        return load_pretrained("model.text.pretrained", cfg.pretrained,
                               lambda name: AutoModel.from_pretrained(name, attn_implementation=attn, **cfg.hf_config))
    hf = dict(cfg.hf_config)
    model_type = hf.pop("model_type")
    if model_type == "clap_text_model":
        # CLAP's RoBERTa-like text model is not registered with AutoModel. It runs transformers' shared
        # attention functions and masks, exactly as RoBERTa does, but does not declare SDPA support, so
        # transformers refuses "sdpa" at construction: build it eager, then select SDPA.

        model = ClapTextModel(ClapTextConfig(**hf, attn_implementation="eager"))
        model.config._attn_implementation = attn
        return model
    return AutoModel.from_config(AutoConfig.for_model(model_type, **hf), attn_implementation=attn)


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
        out = self.encoder(input_ids=input_ids, attention_mask=prepared_attention_mask(self.encoder, attention_mask))
        tokens = out.last_hidden_state
        if self.cfg.pooling == "pooler":
            pooled = out.pooler_output
        elif self.cfg.pooling == "cls":
            pooled = tokens[:, 0]
        else:
            weights = mask.unsqueeze(-1).to(tokens.dtype)
            pooled = (tokens * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return pooled, tokens, mask


def prepared_attention_mask(encoder: nn.Module, attention_mask: torch.Tensor) -> torch.Tensor:
    """The key-padding mask as the 4-D mask transformers takes as is, for eager and SDPA attention.

    Given a 2-D mask, transformers first asks `mask.all()` (to skip masking when nothing is padded):
    a host read, so a device sync per text batch. A prepared [N, 1, 1, L] mask skips that check;
    other attention kernels (flash, flex) get the 2-D mask unchanged.
    """
    prepared = as_attention_mask(encoder, attention_mask.bool()[:, None, None, :])
    return attention_mask if prepared is None else prepared


def as_attention_mask(model: nn.Module, allowed: torch.Tensor) -> torch.Tensor | None:
    """A 4-D bool mask (True = attend) as `model`'s attention takes it as is: bool for SDPA, additive
    float for eager; None for other kernels (flash, flex), which take no 4-D mask."""
    kind = getattr(model.config, "_attn_implementation", None)
    if kind == "sdpa":
        return allowed
    if kind == "eager":
        dtype = next(model.parameters()).dtype
        return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, torch.finfo(dtype).min)
    return None
