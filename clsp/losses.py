"""Contrastive objectives for audio-text dual encoders.

Every loss is an ``nn.Module`` whose ``forward`` takes one :class:`ContrastiveOutputs`
and returns a scalar. A :class:`LossSuite` weights the terms and reports each one for logging;
the trainer builds it from ``configs/loss/*.yaml`` (``_target_`` entries, ``clsp.training.components``).

Multi-process scaling (torch.distributed initialised, world size W > 1). Losses that
gather (GlobalInfoNCE, SigLIPLoss, MultiPositiveInfoNCE) use an all-gather whose backward
*sums* the gradient over ranks. The contract, for every mode (full or ``local_loss``):

* the mean over ranks of the returned loss equals the single-process loss on the
  concatenated (gathered) batch; without ``local_loss`` every rank returns exactly that value;
* on each rank, the gradient w.r.t. that rank's inputs is ``W x`` the gradient of the
  single-process loss w.r.t. those rows. DDP (and DeepSpeed) *average* gradients over the
  W ranks, so the parameter update is exactly the single-process update on the global batch.

Batch sizes may differ across ranks (a short last batch): tensors are padded to the
largest size for the collective and trimmed after it.

Precision. Every loss computes its logits, log-softmax and log-sigmoid in float32 whatever the
autocast state: bf16/fp16 inputs are upcast and autocast is off inside ``forward`` (the B x B
work is small beside the towers, and bf16 logits put the loss ~1 % off). float64 inputs stay float64.

Host syncs. Nothing in a loss reads a device tensor on the host, except value checks that run only
when ``clsp.checks.enabled()`` (off in the training step) and the per-rank size exchange when
several processes gather.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from clsp import checks

__all__ = [
    "ContrastiveOutputs",
    "GlobalInfoNCE",
    "SigLIPLoss",
    "MultiPositiveInfoNCE",
    "TokenInfoNCE",
    "HardNegativeLoss",
    "CaptioningLoss",
    "LossSuite",
    "gather_with_grad",
]


@dataclass
class ContrastiveOutputs:
    """What the model hands to the losses for one (local) batch of B clips and C >= B captions."""

    audio: Tensor  # [B, D] L2-normalised clip embeddings
    text: Tensor  # [C, D] L2-normalised captions; rows [:B] are the primary caption of each clip
    caption_to_clip: Tensor  # [C] int64 clip index of each caption (caption_to_clip[:B] == arange(B))
    logit_scale: Tensor  # scalar, already exponentiated and clamped by the model
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


# ----------------------------------------------------------------------------- precision

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _upcast(out: ContrastiveOutputs) -> ContrastiveOutputs:
    """`out` with its bf16/fp16 tensors as float32 (float32 and float64 ones unchanged)."""
    changes = {}
    for f in dataclasses.fields(out):
        value = getattr(out, f.name)
        if isinstance(value, Tensor) and value.dtype in _LOW_PRECISION:
            changes[f.name] = value.float()
    return dataclasses.replace(out, **changes) if changes else out


def _float32(forward):
    """Run a loss's forward in at least float32 with autocast off (see the module docstring)."""

    @functools.wraps(forward)
    def wrapper(self, out: ContrastiveOutputs) -> Tensor:
        with torch.autocast(device_type=out.audio.device.type, enabled=False):
            return forward(self, _upcast(out))

    return wrapper


# ----------------------------------------------------------------------------- distributed helpers


def _world() -> tuple[int, int]:
    """(world size, rank); (1, 0) when torch.distributed is not in use."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def _gather_sizes(counts: list[int], device: torch.device) -> list[list[int]]:
    """All-gather a few per-rank counts; returns sizes[k][rank] for each count k."""
    world, _ = _world()
    mine = torch.tensor(counts, dtype=torch.long, device=device)
    bufs = [torch.empty_like(mine) for _ in range(world)]
    dist.all_gather(bufs, mine)
    table = torch.stack(bufs).tolist()  # [world, len(counts)]
    return [[row[k] for row in table] for k in range(len(counts))]


def _all_gather_padded(x: Tensor, sizes: list[int]) -> Tensor:
    """Concatenate `x` from every rank along dim 0; ranks may hold different row counts."""
    longest = max(sizes)
    if x.shape[0] < longest:  # collectives need equal shapes: pad, then trim below
        x = torch.cat([x, x.new_zeros((longest - x.shape[0], *x.shape[1:]))])
    bufs = [torch.empty_like(x) for _ in sizes]
    dist.all_gather(bufs, x.contiguous())
    return torch.cat([buf[:n] for buf, n in zip(bufs, sizes)])


class _GatherWithGrad(torch.autograd.Function):
    """All-gather whose backward sums the incoming gradients over ranks and keeps this rank's rows.

    Each rank's loss depends on every rank's rows, so the gradient of sum-over-ranks of the
    losses w.r.t. my rows needs the other ranks' contributions (an all-reduce).
    """

    @staticmethod
    def forward(ctx, x: Tensor, sizes: list[int], rank: int) -> Tensor:  # type: ignore[override]
        ctx.start = sum(sizes[:rank])
        ctx.count = sizes[rank]
        return _all_gather_padded(x, sizes)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        grad = grad.contiguous().clone()  # all_reduce is in place; never touch autograd's buffer
        dist.all_reduce(grad)
        return grad[ctx.start : ctx.start + ctx.count], None, None


def gather_with_grad(x: Tensor, sizes: list[int] | None = None) -> Tensor:
    """All-gather `x` [n, ...] over ranks along dim 0, differentiably; identity without distributed.

    `sizes` (rows per rank) is exchanged when not given, so unequal batch sizes work.
    """
    world, rank = _world()
    if world == 1:
        return x
    if sizes is None:
        sizes = _gather_sizes([x.shape[0]], x.device)[0]
    return _GatherWithGrad.apply(x, sizes, rank)


# ----------------------------------------------------------------------------- validation helpers


def _check_embeddings(out: ContrastiveOutputs, name: str) -> tuple[int, int]:
    """Shape checks shared by the global losses; returns (B, C)."""
    a, t = out.audio, out.text
    if a.ndim != 2 or t.ndim != 2:
        raise ValueError(f"{name}: audio and text must be [B, D] and [C, D], got {tuple(a.shape)} and {tuple(t.shape)}")
    if a.shape[1] != t.shape[1]:
        raise ValueError(f"{name}: audio dim {a.shape[1]} != text dim {t.shape[1]}")
    b, c = a.shape[0], t.shape[0]
    if b == 0:
        raise ValueError(f"{name}: empty batch (B=0)")
    if c < b:
        raise ValueError(f"{name}: need at least one caption per clip (C >= B), got B={b}, C={c}")
    if out.logit_scale.numel() != 1:
        raise ValueError(f"{name}: logit_scale must be a scalar, got shape {tuple(out.logit_scale.shape)}")
    return b, c


class _Objective(nn.Module):
    """Base class: declares which optional ContrastiveOutputs fields a loss reads."""

    requires: ClassVar[tuple[str, ...]] = ()
    needs_tokens: ClassVar[bool] = False
    needs_negatives: ClassVar[bool] = False
    needs_all_captions: ClassVar[bool] = False
    needs_captions: ClassVar[bool] = False  # the trainer runs the caption decoder

    def missing_inputs(self, out: ContrastiveOutputs) -> list[str]:
        return [f for f in self.requires if getattr(out, f) is None]


class _LabelCache:
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


# ----------------------------------------------------------------------------- global losses


class GlobalInfoNCE(_Objective):
    """Symmetric InfoNCE (CLIP loss) over ``logit_scale * audio @ text[:B].T``.

    gather: all-gather embeddings across ranks (with gradients) so every rank sees the global batch.
    local_loss: with gather, score only this rank's rows against all gathered columns (open_clip's
    local loss: O(n*N) logits instead of O(N^2)); the returned value is this rank's share scaled so
    that its mean over ranks is the global loss. See the module docstring for the gradient scale.
    """

    def __init__(self, gather: bool = True, local_loss: bool = False) -> None:
        super().__init__()
        self.gather = bool(gather)
        self.local_loss = bool(local_loss)
        self._labels = _LabelCache()

    @_float32
    def forward(self, out: ContrastiveOutputs) -> Tensor:
        b, _ = _check_embeddings(out, "GlobalInfoNCE")
        audio, text, scale = out.audio, out.text[:b], out.logit_scale
        world, rank = _world()
        if not self.gather or world == 1:
            logits = scale * audio @ text.T
            labels = self._labels.get(audio.device, b)
            return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2

        sizes = _gather_sizes([b], audio.device)[0]
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


class SigLIPLoss(_Objective):
    """Pairwise sigmoid loss (Zhai et al. 2023): -sum_ij log sigmoid(z_ij * (s * a_i.t_j + b)) / B.

    z_ij = +1 on matching pairs, -1 elsewhere. With gather, the text of every rank is all-gathered
    (with gradients) so each audio sees every caption as a negative; each rank scores its own clips
    and returns its share scaled so that the mean over ranks equals the single-process loss.
    """

    requires = ("logit_bias",)

    def __init__(self, gather: bool = True) -> None:
        super().__init__()
        self.gather = bool(gather)

    @_float32
    def forward(self, out: ContrastiveOutputs) -> Tensor:
        b, _ = _check_embeddings(out, "SigLIPLoss")
        if out.logit_bias is None:
            raise ValueError("SigLIPLoss needs ContrastiveOutputs.logit_bias (the model's sigmoid bias)")
        audio, text, scale, bias = out.audio, out.text[:b], out.logit_scale, out.logit_bias
        world, _ = _world()
        if self.gather and world > 1:
            sizes = _gather_sizes([b], audio.device)[0]
            all_text, total = gather_with_grad(text, sizes), sum(sizes)
        else:
            all_text, total, world = text, b, 1
        logits = scale * audio @ all_text.T + bias
        positives = scale * (audio * text).sum(-1) + bias
        # -log sig(z*l) = softplus(-z*l); over all pairs = sum softplus(l) - sum over positives of l,
        # since softplus(-l) = softplus(l) - l: no [B, N] label matrix needed.
        loss_sum = F.softplus(logits).sum() - positives.sum()
        return loss_sum * (world / total)


class MultiPositiveInfoNCE(_Objective):
    """InfoNCE with several captions per clip, over all C captions.

    audio->text: each clip's logits over all captions, target spread evenly over its k captions (1/k);
    text->audio: each caption plain cross-entropy against its clip. The two directions are averaged.
    With gather, clips and captions of all ranks are gathered and every rank computes the global loss.
    """

    needs_all_captions = True

    def __init__(self, gather: bool = True) -> None:
        super().__init__()
        self.gather = bool(gather)

    @_float32
    def forward(self, out: ContrastiveOutputs) -> Tensor:
        b, c = _check_embeddings(out, "MultiPositiveInfoNCE")
        audio, text, owner = out.audio, out.text, out.caption_to_clip
        if owner.shape != (c,) or owner.dtype not in (torch.int32, torch.int64):
            raise ValueError(
                f"MultiPositiveInfoNCE: caption_to_clip must be int [C={c}], got {owner.dtype} {tuple(owner.shape)}"
            )
        owner = owner.long()
        if checks.enabled() and c and bool(((owner < 0) | (owner >= b)).any()):
            raise ValueError(f"MultiPositiveInfoNCE: caption_to_clip values must lie in [0, {b})")
        world, rank = _world()
        if self.gather and world > 1:
            b_sizes, c_sizes = _gather_sizes([b, c], audio.device)
            offsets = torch.tensor([sum(b_sizes[:r]) for r in range(world)], device=owner.device)
            rank_of_caption = torch.repeat_interleave(
                torch.arange(world, device=owner.device), torch.tensor(c_sizes, device=owner.device)
            )
            owner = _all_gather_padded(owner, c_sizes) + offsets[rank_of_caption]
            audio, text = gather_with_grad(audio, b_sizes), gather_with_grad(text, c_sizes)
            b = sum(b_sizes)
        logits = out.logit_scale * audio @ text.T  # [B, C]
        positive = owner.unsqueeze(0) == torch.arange(b, device=owner.device).unsqueeze(1)  # [B, C]
        targets = positive.to(logits.dtype)
        targets = targets / targets.sum(1, keepdim=True)
        a2t = F.cross_entropy(logits, targets)
        t2a = F.cross_entropy(logits.T, owner)
        return (a2t + t2a) / 2


# ----------------------------------------------------------------------------- fine-grained losses


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


class TokenInfoNCE(_Objective):
    """Token-level InfoNCE by late interaction (FILIP / ColBERT style), temperature from logit_scale.

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
        self._labels = _LabelCache()

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

    @_float32
    def forward(self, out: ContrastiveOutputs) -> Tensor:
        s_t2a, s_a2t = self.similarities(out)
        labels = self._labels.get(s_t2a.device, s_t2a.shape[0])
        scale = out.logit_scale
        text_to_audio = F.cross_entropy(scale * s_t2a.T, labels)  # rows: captions, columns: clips
        audio_to_text = F.cross_entropy(scale * s_a2t, labels)  # rows: clips, columns: captions
        return (text_to_audio + audio_to_text) / 2


class HardNegativeLoss(_Objective):
    """Per clip, a 2-way softmax [s*cos(a, t_primary), s*cos(a, t_negative)] with target 0.

    Averaged over clips whose negative exists (``has_negative``); exactly 0, with the graph
    intact, when no clip has one. Computed without a host sync.
    """

    requires = ("negative_text",)
    needs_negatives = True

    @_float32
    def forward(self, out: ContrastiveOutputs) -> Tensor:
        b, _ = _check_embeddings(out, "HardNegativeLoss")
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
        per_clip = F.softplus(out.logit_scale * (negs - pos))
        return torch.where(has, per_clip, 0).sum() / has.sum().clamp_min(1)


# ----------------------------------------------------------------------------- captioning


class CaptioningLoss(_Objective):
    """Next-token cross-entropy of the caption decoder (CoCa's captioning term), mean over real tokens.

    Position t of ``caption_logits`` predicts token t + 1 of ``caption_ids``; targets are the tokens after
    <bos>, <eos> included, padding (``caption_mask`` 0) left out. ``label_smoothing`` as in
    ``F.cross_entropy``. The log-softmax runs in float32 (see the module docstring).

    gather: divide by the real-token count of all ranks (one all-reduce of a count, no host read), so
    the mean over ranks equals the single-process token mean of the global batch and the gradients
    follow the module's contract; without it each rank divides by its own count.
    """

    requires = ("caption_logits", "caption_ids", "caption_mask")
    needs_captions = True

    def __init__(self, label_smoothing: float = 0.0, gather: bool = True) -> None:
        super().__init__()
        if not (isinstance(label_smoothing, numbers.Real) and 0.0 <= label_smoothing < 1.0):
            raise ValueError(f"CaptioningLoss: label_smoothing must be in [0, 1), got {label_smoothing!r}")
        self.label_smoothing = float(label_smoothing)
        self.gather = bool(gather)

    @_float32
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
        world, _ = _world()
        if self.gather and world > 1:
            count = count.detach().clone()
            dist.all_reduce(count)
            return total * world / count.clamp_min(1)
        return total / count.clamp_min(1)


# ----------------------------------------------------------------------------- suite and config

class LossSuite(nn.Module):
    """Weighted sum of named loss terms; forward returns (total, unweighted detached parts)."""

    def __init__(self, terms: Mapping[str, tuple[nn.Module, float]]) -> None:
        super().__init__()
        if not terms:
            raise ValueError("LossSuite needs at least one loss term")
        for name, value in terms.items():
            if not isinstance(name, str) or not name or "." in name:
                raise ValueError(f"loss term name must be a non-empty string without '.', got {name!r}")
            if not (isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], nn.Module)):
                raise ValueError(f"loss term {name!r}: expected (nn.Module, weight), got {value!r}")
        self.terms = nn.ModuleDict({name: module for name, (module, _) in terms.items()})
        self.weights: dict[str, float] = {}
        for name, (_, weight) in terms.items():
            self.weights[name] = _check_weight(name, weight)

    def _flag(self, attr: str) -> bool:
        return any(getattr(m, attr, False) for m in self.terms.values())

    @property
    def needs_tokens(self) -> bool:
        return self._flag("needs_tokens")

    @property
    def needs_negatives(self) -> bool:
        return self._flag("needs_negatives")

    @property
    def needs_all_captions(self) -> bool:
        return self._flag("needs_all_captions")

    @property
    def needs_captions(self) -> bool:
        return self._flag("needs_captions")

    def forward(self, out: ContrastiveOutputs) -> tuple[Tensor, dict[str, Tensor]]:
        for name, module in self.terms.items():
            missing = [f for f in getattr(module, "requires", ()) if getattr(out, f) is None]
            if missing:
                raise ValueError(
                    f"loss term {name!r} ({type(module).__name__}) needs ContrastiveOutputs fields {missing}"
                )
        total: Tensor | None = None
        parts: dict[str, Tensor] = {}
        for name, module in self.terms.items():
            value = module(out)
            parts[name] = value.detach()
            weighted = value * self.weights[name]
            total = weighted if total is None else total + weighted
        assert total is not None  # non-empty, checked in __init__
        return total, parts


def _check_weight(term: str, weight: object) -> float:
    if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not math.isfinite(float(weight)):
        raise ValueError(f"loss term {term!r}: weight must be a finite number, got {weight!r}")
    if weight < 0:
        raise ValueError(f"loss term {term!r}: weight must be >= 0, got {weight!r}")
    return float(weight)
