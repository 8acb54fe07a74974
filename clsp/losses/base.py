"""What every loss reads (`ContrastiveOutputs`), their base class, and the float32 rule they share."""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn


@dataclass
class ContrastiveOutputs:
    """What the model hands to the losses for one (local) batch of B clips and C >= B captions."""

    audio: Tensor  # [B, D] L2-normalised clip embeddings
    text: Tensor | None  # [C, D] L2-normalised captions, rows [:B] the primary caption of each clip (None: no term reads them)
    caption_to_clip: Tensor  # [C] int64 clip index of each caption (caption_to_clip[:B] == arange(B))
    scale: Tensor  # scalar logit scale, already exponentiated and clamped (the model's `scale()`)
    logit_bias: Tensor | None = None  # scalar, SigLIP only
    audio_tokens: Tensor | None = None  # [B, Ta, D] projected, normalised frame features
    audio_mask: Tensor | None = None  # [B, Ta] bool, True = valid frame
    text_tokens: Tensor | None = None  # [B, Tt, D] projected, normalised tokens of the primary captions
    text_mask: Tensor | None = None  # [B, Tt] bool, True = valid token
    negative_text: Tensor | None = None  # [B, D] normalised hard-negative caption per clip
    has_negative: Tensor | None = None  # [B] bool, False where the clip has no negative
    # The caption decoder's teacher-forced pass (CLSPModel.decoder), for CaptioningLoss:
    caption_logits: Tensor | None = None  # [B, L, V] logits; position t scores token t + 1
    caption_ids: Tensor | None = None  # [B, L] int64 the decoder's input ids (<bos> caption <eos>, right padded)
    caption_mask: Tensor | None = None  # [B, L] True/1 = a real token (padding is told apart by this, never by id)

    @property
    def batch_size(self) -> int:
        return int(self.audio.shape[0])


_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _upcast(out: ContrastiveOutputs) -> ContrastiveOutputs:
    """`out` with its bf16/fp16 tensors as float32 (float32 and float64 ones unchanged)."""
    changes = {}
    for f in dataclasses.fields(out):
        value = getattr(out, f.name)
        if isinstance(value, Tensor) and value.dtype in _LOW_PRECISION:
            changes[f.name] = value.float()
    return dataclasses.replace(out, **changes) if changes else out


def float32(forward):
    """Run a loss's forward in at least float32 with autocast off (see the module docstring)."""

    @functools.wraps(forward)
    def wrapper(self, out: ContrastiveOutputs) -> Tensor:
        with torch.autocast(device_type=out.audio.device.type, enabled=False):
            return forward(self, _upcast(out))

    return wrapper


def check_embeddings(out: ContrastiveOutputs, name: str) -> tuple[int, int]:
    """Shape checks shared by the global losses; returns (B, C)."""
    a, t = out.audio, out.text
    if t is None:
        raise ValueError(f"{name}: no text embeddings (ContrastiveOutputs.text is None)")
    if a.ndim != 2 or t.ndim != 2:
        raise ValueError(f"{name}: audio and text must be [B, D] and [C, D], got {tuple(a.shape)} and {tuple(t.shape)}")
    if a.shape[1] != t.shape[1]:
        raise ValueError(f"{name}: audio dim {a.shape[1]} != text dim {t.shape[1]}")
    b, c = a.shape[0], t.shape[0]
    if b == 0:
        raise ValueError(f"{name}: empty batch (B=0)")
    if c < b:
        raise ValueError(f"{name}: need at least one caption per clip (C >= B), got B={b}, C={c}")
    if out.scale.numel() != 1:
        raise ValueError(f"{name}: scale must be a scalar, got shape {tuple(out.scale.shape)}")
    return b, c


class Objective(nn.Module):
    """Base class: declares which optional ContrastiveOutputs fields a loss reads."""

    requires: ClassVar[tuple[str, ...]] = ()
    needs_tokens: ClassVar[bool] = False
    needs_negatives: ClassVar[bool] = False
    needs_all_captions: ClassVar[bool] = False
    needs_captions: ClassVar[bool] = False  # the trainer runs the caption decoder
    needs_embeddings: ClassVar[bool] = True  # reads the clip and caption embeddings (every term but captioning)

    def missing_inputs(self, out: ContrastiveOutputs) -> list[str]:
        return [f for f in self.requires if getattr(out, f) is None]


class LabelCache:
    """arange label tensors reused across steps, keyed by (device, size, offset)."""

    def __init__(self) -> None:
        self._cache: dict[tuple[torch.device, int, int], Tensor] = {}

    def get(self, device: torch.device, size: int, offset: int = 0) -> Tensor:
        key = (device, size, offset)
        labels = self._cache.get(key)
        if labels is None:
            if len(self._cache) > 32:  # sizes vary only at epoch ends; keep the cache tiny anyway
                self._cache.clear()
            labels = torch.arange(offset, offset + size, device=device)
            self._cache[key] = labels
        return labels
