"""The captioning objective: the caption decoder's next-token cross-entropy (CoCa's captioning term)."""

from __future__ import annotations

import numbers

import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from clsp.losses.base import ContrastiveOutputs, Objective, float32
from clsp.losses.gather import world_and_rank


class CaptioningLoss(Objective):
    """Next-token cross-entropy of the caption decoder, mean over real tokens.

    Position t of ``caption_logits`` predicts token t + 1 of ``caption_ids``; targets are the tokens after
    <bos>, <eos> included, padding (``caption_mask`` 0) left out. ``label_smoothing`` as in
    ``F.cross_entropy``. The log-softmax runs in float32 (see `clsp.losses`).

    gather: divide by the real-token count of all ranks (one all-reduce of a count, no host read), so
    the mean over ranks equals the single-process token mean of the global batch and the gradients
    follow the package's contract; without it each rank divides by its own count.
    """

    requires = ("caption_logits", "caption_ids", "caption_mask")
    needs_captions = True
    needs_embeddings = False  # the decoder reads the audio frames only: captioning alone trains no text tower

    def __init__(self, label_smoothing: float = 0.0, gather: bool = True) -> None:
        super().__init__()
        if not (isinstance(label_smoothing, numbers.Real) and 0.0 <= label_smoothing < 1.0):
            raise ValueError(f"CaptioningLoss: label_smoothing must be in [0, 1), got {label_smoothing!r}")
        self.label_smoothing = float(label_smoothing)
        self.gather = bool(gather)

    @float32
    def forward(self, out: ContrastiveOutputs) -> Tensor:
        missing = self.missing_inputs(out)
        if missing:
            raise ValueError(f"CaptioningLoss needs ContrastiveOutputs fields {missing}")
        logits, ids, mask = out.caption_logits, out.caption_ids, out.caption_mask
        if logits.ndim != 3 or ids.shape != logits.shape[:2] or mask.shape != ids.shape or ids.shape[1] < 2:
            raise ValueError(f"CaptioningLoss: caption_logits [B, L, V] with ids and mask [B, L], L >= 2 expected, got "
                             f"{tuple(logits.shape)}, {tuple(ids.shape)} and {tuple(mask.shape)}")
        vocab = logits.shape[-1]
        nll = F.cross_entropy(logits[:, :-1].reshape(-1, vocab), ids[:, 1:].reshape(-1).long(), reduction="none",
                              label_smoothing=self.label_smoothing)
        weight = mask[:, 1:].reshape(-1).to(nll.dtype)
        total, count = (nll * weight).sum(), weight.sum()
        world, _ = world_and_rank()
        if self.gather and world > 1:
            count = count.detach().clone()
            dist.all_reduce(count)
            return total * world / count.clamp_min(1)
        return total / count.clamp_min(1)
