"""The typed training batch: what the data pipeline yields and the trainer consumes.

Captions are laid out so the first B rows are the *primary* caption of each clip
(`caption_to_clip[:B] == arange(B)`); any extra captions of the same clips (a
second long caption, a short one) follow, with `caption_to_clip` naming their
clip. Single-caption losses read the first B rows, multi-positive ones all rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch


@dataclass
class Batch:
    audio: torch.Tensor  # [B, T] float32 waveforms at the tower's rate, zero padded
    audio_lengths: torch.Tensor  # [B] int64 true lengths in samples
    input_ids: torch.Tensor  # [C, L] token ids, C >= B, primary captions first
    attention_mask: torch.Tensor  # [C, L]
    caption_to_clip: torch.Tensor  # [C] int64 clip index of each caption
    caption_kinds: list[str] = field(default_factory=list)  # "short"/"long" per caption
    negative_input_ids: torch.Tensor | None = None  # [B, L] hard negative of the primary caption
    negative_attention_mask: torch.Tensor | None = None  # [B, L]
    has_negative: torch.Tensor | None = None  # [B] bool; False where no attribute could be flipped
    # The caption decoder's input, one caption per clip (runs with a CaptioningLoss only): <bos> caption <eos>
    # in the decoder's own tokenizer, right padded (clsp.decoder.tokenize_captions).
    decoder_input_ids: torch.Tensor | None = None  # [B, L]
    decoder_attention_mask: torch.Tensor | None = None  # [B, L]
    keys: list[str] = field(default_factory=list)
    attributes: list[dict] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)  # the caption strings, aligned with input_ids
    truncated: int = 0  # captions cut at the tokenizer's max length in this batch (decoder captions included)
    skipped: dict[str, int] = field(default_factory=dict)  # samples skipped by reason since the last batch
    # Host-side facts computed in collate, so the training step never reads them back from the device.
    caption_lengths: list[int] = field(default_factory=list)  # [C] tokens per caption row
    negative_lengths: list[int] = field(default_factory=list)  # [B] tokens per hard-negative row
    decoder_lengths: list[int] = field(default_factory=list)  # [B] tokens per decoder caption
    padding_efficiency: float = 1.0  # real audio samples / padded samples (sum(audio_lengths) / (B * T))

    @property
    def size(self) -> int:
        return int(self.audio.shape[0])

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """Move every tensor to `device`; everything else is shared."""
        moved = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                value = value.to(device, non_blocking=non_blocking)
            moved[f.name] = value
        return Batch(**moved)

    def pin_memory(self) -> Batch:
        # Called by DataLoader(pin_memory=True) on custom batch types.
        pinned = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                value = value.pin_memory()
            pinned[f.name] = value
        return Batch(**pinned)
