"""Hard negatives: each clip's caption against the same caption with one attribute flipped."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from clsp.losses.base import ContrastiveOutputs, Objective, check_embeddings, float32


class HardNegativeLoss(Objective):
    """Per clip, a 2-way softmax [s*cos(a, t_primary), s*cos(a, t_negative)] with target 0.

    Averaged over clips whose negative exists (``has_negative``); exactly 0, with the graph
    intact, when no clip has one. Computed without a host sync.
    """

    requires = ("negative_text",)
    needs_negatives = True

    @float32
    def forward(self, out: ContrastiveOutputs) -> Tensor:
        b, _ = check_embeddings(out, "HardNegativeLoss")
        if out.negative_text is None:
            raise ValueError("HardNegativeLoss needs ContrastiveOutputs.negative_text")
        neg = out.negative_text
        if neg.shape != out.audio.shape:
            raise ValueError(f"HardNegativeLoss: negative_text must be {tuple(out.audio.shape)}, got {tuple(neg.shape)}")
        has = out.has_negative
        if has is None:
            has = torch.ones(b, dtype=torch.bool, device=neg.device)
        elif has.shape != (b,):
            raise ValueError(f"HardNegativeLoss: has_negative must be [B={b}], got {tuple(has.shape)}")
        has = has.bool()
        # Rows without a negative may hold anything (zeros, nan): keep them out of forward and backward.
        neg = torch.where(has[:, None], neg, 0)
        pos = (out.audio * out.text[:b]).sum(-1)
        negs = (out.audio * neg).sum(-1)
        # CE with target 0 over [pos, neg] = softplus(s * (neg - pos)).
        per_clip = F.softplus(out.scale * (negs - pos))
        return torch.where(has, per_clip, 0).sum() / has.sum().clamp_min(1)
