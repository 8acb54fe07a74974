"""Fine-grained token-level InfoNCE by late interaction, chunked in forward and backward."""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F
from torch import Tensor

from clsp import checks
from clsp.losses.base import ContrastiveOutputs, LabelCache, Objective, float32


def _chunk_maxima(a: Tensor, a_mask: Tensor, t: Tensor, t_mask: Tensor) -> tuple[Tensor, ...]:
    """Best frame per (clip, caption, token) and best token per (clip, caption, frame), with indices.

    a [c, Ta, D] is a chunk of clips, t [B, Tt, D] every caption; padded features must be zero.
    Only one [c, B, Ta, Tt] block is alive at a time: the masks are filled in place.
    """
    sim = torch.einsum("ifd,jtd->ijft", a, t)  # [c, B, Ta, Tt]
    sim.masked_fill_(~a_mask[:, None, :, None], -math.inf)  # padding frames never win a max
    best_frame, frame_idx = sim.max(dim=2)  # [c, B, Tt]
    sim.masked_fill_(~t_mask[None, :, None, :], -math.inf)  # nor do padding tokens
    best_token, token_idx = sim.max(dim=3)  # [c, B, Ta]; -inf on padded frames, masked out below
    return best_frame, frame_idx, best_token, token_idx


class _LateInteraction(torch.autograd.Function):
    """Chunked late-interaction scores with a hand-written, chunked backward.

    forward keeps no [B, B, Ta, Tt] state; backward recomputes each chunk's argmax indices (like
    activation checkpointing) and scatters the score gradients onto them, so it needs one
    einsum fewer than checkpointing through autograd's amax and half the temporaries.
    """

    @staticmethod
    def forward(ctx, a: Tensor, a_mask: Tensor, t: Tensor, t_mask: Tensor, chunk: int):  # type: ignore[override]
        dtype = torch.result_type(a, t)
        t_weight = t_mask.to(dtype) / t_mask.sum(-1, keepdim=True)  # [B, Tt] masked-mean weights
        a_weight = a_mask.to(dtype) / a_mask.sum(-1, keepdim=True)  # [B, Ta]
        t2a, a2t = [], []
        for start in range(0, a.shape[0], chunk):
            rows = slice(start, start + chunk)
            best_frame, _, best_token, _ = _chunk_maxima(a[rows], a_mask[rows], t, t_mask)
            # Masked means via where(), so -inf at padded positions never meets a zero weight.
            t2a.append((torch.where(t_mask[None], best_frame, 0) * t_weight[None]).sum(-1))
            a2t.append((torch.where(a_mask[rows, None], best_token, 0) * a_weight[rows, None]).sum(-1))
        ctx.save_for_backward(a, a_mask, t, t_mask, a_weight, t_weight)
        ctx.chunk = chunk
        return torch.cat(t2a), torch.cat(a2t)

    @staticmethod
    def backward(ctx, g_t2a: Tensor, g_a2t: Tensor):  # type: ignore[override]
        a, a_mask, t, t_mask, a_weight, t_weight = ctx.saved_tensors
        dtype = torch.result_type(a, t)
        grad_a = torch.zeros_like(a) if ctx.needs_input_grad[0] else None
        grad_t = torch.zeros_like(t) if ctx.needs_input_grad[2] else None
        for start in range(0, a.shape[0], ctx.chunk):
            rows = slice(start, start + ctx.chunk)
            a_c = a[rows]
            with torch.no_grad():
                _, frame_idx, _, token_idx = _chunk_maxima(a_c, a_mask[rows], t, t_mask)
            # d score / d sim: each (clip, caption, token) passes its weight to its best frame and
            # each (clip, caption, frame) to its best token; padded rows carry weight 0.
            w_frame = (g_t2a[rows, :, None] * t_weight[None]).to(dtype)  # [c, B, Tt]
            w_token = (g_a2t[rows, :, None] * a_weight[rows, None]).to(dtype)  # [c, B, Ta]
            # d loss / d sim laid out [c, Ta, B, Tt]: both products below are then plain matrix products
            # on views (no permuted copies of this, the largest tensor), and grad_t accumulates in place.
            c, ta = a_c.shape[:2]
            b, tt, d = t.shape
            grad_sim = torch.zeros((c, ta, b, tt), dtype=dtype, device=a.device)
            grad_sim.scatter_add_(1, frame_idx.unsqueeze(1), w_frame.unsqueeze(1))
            grad_sim.scatter_add_(3, token_idx.transpose(1, 2).unsqueeze(3), w_token.transpose(1, 2).unsqueeze(3))
            g = grad_sim.view(c * ta, b * tt)
            if grad_a is not None:
                grad_a[rows] = (g @ t.reshape(b * tt, d)).view(c, ta, d)
            if grad_t is not None:
                grad_t.view(b * tt, d).addmm_(g.T, a_c.reshape(c * ta, d))
        return grad_a, None, grad_t, None, None


class TokenInfoNCE(Objective):
    """Token-level InfoNCE by late interaction (FILIP / ColBERT style), temperature from the scale.

    s_t2a(a_i, t_j) = mean_{valid tokens of t_j} max_{valid frames of a_i} cos; s_a2t mirrors it.
    text->audio CE uses s_t2a, audio->text CE uses s_a2t; the two are averaged. Audio clips are
    processed `chunk_size` at a time in forward and again in backward (which recomputes the chunk's
    argmaxes, as activation checkpointing would), so peak memory is O(B^2 + chunk*B*Ta*Tt) rather
    than O(B^2*Ta*Tt). On exact ties the gradient goes to one maximiser (amax would split it).
    Local to each rank (no gather).
    """

    requires = ("audio_tokens", "audio_mask", "text_tokens", "text_mask")
    needs_tokens = True

    def __init__(self, chunk_size: int = 16) -> None:
        super().__init__()
        if not (isinstance(chunk_size, numbers.Integral) and not isinstance(chunk_size, bool) and chunk_size > 0):
            raise ValueError(f"TokenInfoNCE: chunk_size must be a positive int, got {chunk_size!r}")
        self.chunk_size = int(chunk_size)
        self._labels = LabelCache()

    def _inputs(self, out: ContrastiveOutputs) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        missing = self.missing_inputs(out)
        if missing:
            raise ValueError(f"TokenInfoNCE needs ContrastiveOutputs fields {missing}")
        a, am, t, tm = out.audio_tokens, out.audio_mask, out.text_tokens, out.text_mask
        b = out.batch_size
        if a.ndim != 3 or t.ndim != 3 or a.shape[0] != b or t.shape[0] != b or a.shape[2] != t.shape[2]:
            raise ValueError(
                f"TokenInfoNCE: audio_tokens [B, Ta, D] and text_tokens [B, Tt, D] with B={b} expected, "
                f"got {tuple(a.shape)} and {tuple(t.shape)}"
            )
        if am.shape != a.shape[:2] or tm.shape != t.shape[:2]:
            raise ValueError(
                f"TokenInfoNCE: masks must be {tuple(a.shape[:2])} and {tuple(t.shape[:2])}, "
                f"got {tuple(am.shape)} and {tuple(tm.shape)}"
            )
        am, tm = am.bool(), tm.bool()
        if checks.enabled() and (not bool(am.any(1).all()) or not bool(tm.any(1).all())):
            raise ValueError("TokenInfoNCE: every clip needs >= 1 valid frame and every caption >= 1 valid token")
        # Zero the padding so its values (even inf/nan) reach neither the scores nor the gradients.
        return torch.where(am[..., None], a, 0), am, torch.where(tm[..., None], t, 0), tm

    def similarities(self, out: ContrastiveOutputs) -> tuple[Tensor, Tensor]:
        """(s_t2a, s_a2t), both [B_audio, B_text], computed `chunk_size` clips at a time."""
        a, am, t, tm = self._inputs(out)
        return _LateInteraction.apply(a, am, t, tm, self.chunk_size)

    @float32
    def forward(self, out: ContrastiveOutputs) -> Tensor:
        s_t2a, s_a2t = self.similarities(out)
        labels = self._labels.get(s_t2a.device, s_t2a.shape[0])
        scale = out.scale
        text_to_audio = F.cross_entropy(scale * s_t2a.T, labels)  # rows: captions, columns: clips
        audio_to_text = F.cross_entropy(scale * s_a2t, labels)  # rows: clips, columns: captions
        return (text_to_audio + audio_to_text) / 2
