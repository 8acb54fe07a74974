"""The global objectives: symmetric InfoNCE, the sigmoid loss and multi-positive InfoNCE."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from clsp import checks
from clsp.losses.base import ContrastiveOutputs, LabelCache, Objective, check_embeddings, float32
from clsp.losses.gather import all_gather_padded, gather_sizes, gather_with_grad, world_and_rank


class GlobalInfoNCE(Objective):
    """Symmetric InfoNCE (CLIP loss) over ``scale * audio @ text[:B].T``.

    gather: all-gather embeddings across ranks (with gradients) so every rank sees the global batch.
    local_loss: with gather, score only this rank's rows against all gathered columns (open_clip's
    local loss: O(n*N) logits instead of O(N^2)); the returned value is this rank's share scaled so
    that its mean over ranks is the global loss. See the module docstring for the gradient scale.
    """

    def __init__(self, gather: bool = True, local_loss: bool = False) -> None:
        super().__init__()
        self.gather = bool(gather)
        self.local_loss = bool(local_loss)
        self._labels = LabelCache()

    @float32
    def forward(self, out: ContrastiveOutputs) -> Tensor:
        b, _ = check_embeddings(out, "GlobalInfoNCE")
        audio, text, scale = out.audio, out.text[:b], out.scale
        world, rank = world_and_rank()
        if not self.gather or world == 1:
            logits = scale * audio @ text.T
            labels = self._labels.get(audio.device, b)
            return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2

        sizes = gather_sizes([b], audio.device)[0]
        total = sum(sizes)
        all_audio = gather_with_grad(audio, sizes)
        all_text = gather_with_grad(text, sizes)
        if not self.local_loss:
            logits = scale * all_audio @ all_text.T
            labels = self._labels.get(audio.device, total)
            return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2

        labels = self._labels.get(audio.device, b, sum(sizes[:rank]))
        ce_a = F.cross_entropy(scale * audio @ all_text.T, labels, reduction="sum")
        ce_t = F.cross_entropy(scale * text @ all_audio.T, labels, reduction="sum")
        # Sum over this rank's rows, scaled by W/N: the mean over ranks is the global mean.
        return (ce_a + ce_t) * (world / (2 * total))


class SigLIPLoss(Objective):
    """Pairwise sigmoid loss (Zhai et al. 2023): -sum_ij log sigmoid(z_ij * (s * a_i.t_j + b)) / B.

    z_ij = +1 on matching pairs, -1 elsewhere. With gather, the text of every rank is all-gathered
    (with gradients) so each audio sees every caption as a negative; each rank scores its own clips
    and returns its share scaled so that the mean over ranks equals the single-process loss.
    """

    requires = ("logit_bias",)

    def __init__(self, gather: bool = True) -> None:
        super().__init__()
        self.gather = bool(gather)

    @float32
    def forward(self, out: ContrastiveOutputs) -> Tensor:
        b, _ = check_embeddings(out, "SigLIPLoss")
        if out.logit_bias is None:
            raise ValueError("SigLIPLoss needs ContrastiveOutputs.logit_bias (the model's sigmoid bias)")
        audio, text, scale, bias = out.audio, out.text[:b], out.scale, out.logit_bias
        world, _ = world_and_rank()
        if self.gather and world > 1:
            sizes = gather_sizes([b], audio.device)[0]
            all_text, total = gather_with_grad(text, sizes), sum(sizes)
        else:
            all_text, total, world = text, b, 1
        logits = scale * audio @ all_text.T + bias
        positives = scale * (audio * text).sum(-1) + bias
        # -log sig(z*l) = softplus(-z*l); over all pairs = sum softplus(l) - sum over positives of l,
        # since softplus(-l) = softplus(l) - l: no [B, N] label matrix needed.
        loss_sum = F.softplus(logits).sum() - positives.sum()
        return loss_sum * (world / total)


class MultiPositiveInfoNCE(Objective):
    """InfoNCE with several captions per clip, over all C captions.

    audio->text: each clip's logits over all captions, target spread evenly over its k captions (1/k);
    text->audio: each caption plain cross-entropy against its clip. The two directions are averaged.
    With gather, clips and captions of all ranks are gathered and every rank computes the global loss.
    """

    needs_all_captions = True

    def __init__(self, gather: bool = True) -> None:
        super().__init__()
        self.gather = bool(gather)

    @float32
    def forward(self, out: ContrastiveOutputs) -> Tensor:
        b, c = check_embeddings(out, "MultiPositiveInfoNCE")
        audio, text, owner = out.audio, out.text, out.caption_to_clip
        if owner.shape != (c,) or owner.dtype not in (torch.int32, torch.int64):
            raise ValueError(
                f"MultiPositiveInfoNCE: caption_to_clip must be int [C={c}], got {owner.dtype} {tuple(owner.shape)}"
            )
        owner = owner.long()
        if checks.enabled() and c and bool(((owner < 0) | (owner >= b)).any()):
            raise ValueError(f"MultiPositiveInfoNCE: caption_to_clip values must lie in [0, {b})")
        world, rank = world_and_rank()
        if self.gather and world > 1:
            b_sizes, c_sizes = gather_sizes([b, c], audio.device)
            offsets = torch.tensor([sum(b_sizes[:r]) for r in range(world)], device=owner.device)
            rank_of_caption = torch.repeat_interleave(
                torch.arange(world, device=owner.device), torch.tensor(c_sizes, device=owner.device)
            )
            owner = all_gather_padded(owner, c_sizes) + offsets[rank_of_caption]
            audio, text = gather_with_grad(audio, b_sizes), gather_with_grad(text, c_sizes)
            b = sum(b_sizes)
        logits = out.scale * audio @ text.T  # [B, C]
        positive = owner.unsqueeze(0) == torch.arange(b, device=owner.device).unsqueeze(1)  # [B, C]
        targets = positive.to(logits.dtype)
        targets = targets / targets.sum(1, keepdim=True)
        a2t = F.cross_entropy(logits, targets)
        t2a = F.cross_entropy(logits.T, owner)
        return (a2t + t2a) / 2
