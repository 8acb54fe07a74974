"""Evaluation metrics: cross-modal retrieval, zero-shot classification, correlations.

Retrieval follows the AudioCaps / Clotho protocol:

- **text->audio**: every caption ranks all clips; its rank is that of its own clip.
  R@k and mAP@10 are averaged over *every caption*. With one relevant clip, AP@10 is
  ``1/rank`` when ``rank <= 10`` else 0.
- **audio->text**: every clip ranks all captions. R@k, median and mean rank use the
  *best* rank among the clip's captions.

Protocol variants, each under its own key so a number says which table it compares with:

- ``a2t/mAP@10`` (the main one; WavCaps' ``a2t``): the standard AP@10 over the clip's
  relevant captions, ``sum_{j: p_j <= 10} (j / p_j) / min(n_relevant, 10)``, where ``p_j``
  is the position of the j-th best-ranked relevant caption (sorted ascending). For
  5-caption sets the divisor is 5, as in WavCaps.
- ``a2t/mAP@10_laion``: LAION-CLAP's ``evaluate_clotho_audiocaps``. It takes the clip's
  captions ranked within the top 10 *in stored caption order, unsorted*, sums
  ``j / p`` over them (j counting 1, 2, ... in that order) and divides by the number of
  captions (5 in its sets). It is never below ``a2t/mAP@10`` and equals it when the
  captions happen to be stored in rank order.
- ``a2t/mAP@10_best``: the t2a formula applied to the clip's best rank,
  ``1/best_rank if best_rank <= 10``. Neither LAION-CLAP function computes this on
  5-caption sets; with one caption per clip (LAION's ``get_metrics``) it equals the
  standard AP@10. Kept as a best-caption summary, not as any paper's number.
- ``*/medR``: the median rank as LAION-CLAP and WavCaps compute it,
  ``floor(median(rank - 1)) + 1`` on their 0-based ranks (numpy's median, so an even
  count averages the two middle values *before* the floor). ``*/median_rank`` is the
  plain median of the 1-based ranks (may be fractional). ``*/mean_rank`` equals their
  ``meanR`` (``mean(rank - 1) + 1``).

Ranks are 1-based. Ties count against nobody: a candidate ranks ahead of the target only
if its similarity is *strictly* greater (the optimistic rank). Relevant captions tied with
each other take consecutive positions (in stored order). Clips without any caption stay
candidates for text->audio but are not audio->text queries.

R@k and mAP values are percentages (0-100); ranks are plain numbers.

Similarities are computed in row chunks (one chunk of queries against all candidates),
keeping only the target ranks, so memory is ``O(chunk * candidates)`` rather than
``O(queries * candidates)``; results equal the dense computation exactly, because each
target similarity is read from the same chunk row it is compared against.

Zero-shot accuracy, per-class recall and confusion matrices, Pearson r and Spearman rho come
from torchmetrics (its Spearman adds an epsilon to the denominator: within 1e-6 of scipy).
The retrieval ranks stay hand-written: no library ranks 100 k clips against 500 k captions in
chunks while keeping only the target ranks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torchmetrics.functional import pearson_corrcoef, spearman_corrcoef
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_confusion_matrix,
    multiclass_recall,
)

__all__ = [
    "RetrievalRanks",
    "retrieval_ranks",
    "ranks_to_metrics",
    "retrieval_metrics",
    "zeroshot_metrics",
    "pearson",
    "spearman",
]

# mAP@10 needs positions up to 10 only; anything beyond is "not retrieved".
MAP_K = 10
# Default chunk: about 2**25 similarities (128 MiB in fp32) per block.
_CHUNK_ELEMENTS = 1 << 25


@dataclass
class RetrievalRanks:
    """1-based ranks of the targets (see the module docstring for the protocol)."""

    t2a: torch.Tensor  # [M] rank of each caption's clip among all clips
    a2t_best: torch.Tensor  # [Q] best rank among the captions of each clip that has captions
    a2t_top: torch.Tensor  # [Q, K] positions <= 10 of each such clip's captions, ascending; 0 = beyond 10 / none
    a2t_count: torch.Tensor  # [Q] number of captions of each such clip
    # [Q, K] the same positions in stored caption order (LAION's unsorted mAP@10); None if not computed
    a2t_stored: torch.Tensor | None = None


def _check_inputs(audio_emb: torch.Tensor, text_emb: torch.Tensor, caption_to_clip: torch.Tensor) -> None:
    if audio_emb.ndim != 2 or text_emb.ndim != 2:
        raise ValueError(
            f"audio_emb and text_emb must be 2-D [N, D] / [M, D]; got {tuple(audio_emb.shape)} "
            f"and {tuple(text_emb.shape)}"
        )
    if audio_emb.shape[1] != text_emb.shape[1]:
        raise ValueError(f"embedding dims differ: audio {audio_emb.shape[1]} vs text {text_emb.shape[1]}")
    if audio_emb.shape[0] == 0 or text_emb.shape[0] == 0:
        raise ValueError("retrieval needs at least one clip and one caption; got an empty set")
    if caption_to_clip.shape != (text_emb.shape[0],):
        raise ValueError(
            f"caption_to_clip must have shape [{text_emb.shape[0]}] (one clip index per caption); "
            f"got {tuple(caption_to_clip.shape)}"
        )
    if caption_to_clip.min() < 0 or caption_to_clip.max() >= audio_emb.shape[0]:
        bad = int(((caption_to_clip < 0) | (caption_to_clip >= audio_emb.shape[0])).nonzero()[0, 0])
        raise ValueError(
            f"caption_to_clip[{bad}] = {int(caption_to_clip[bad])} is not a clip index in [0, {audio_emb.shape[0]})"
        )


class _Blocks:
    """Reusable similarity and mask buffers: allocating a fresh 128 MiB block per chunk costs
    more in page faults than the comparisons themselves."""

    def __init__(self, rows: int, cols: int, like: torch.Tensor):
        self.sims = torch.empty(rows, cols, dtype=like.dtype, device=like.device)
        self.mask = torch.empty(rows, cols, dtype=torch.bool, device=like.device)

    def similarities(self, queries: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        return torch.matmul(queries, candidates.T, out=self.sims[: queries.shape[0]])

    def count_greater(self, sims: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
        """[c] number of entries of each row strictly greater than its threshold [c, 1]."""
        mask = torch.gt(sims, threshold, out=self.mask[: sims.shape[0]])
        return mask.sum(1, dtype=torch.int32).long()  # int32 sums are ~2x faster than int64


@torch.no_grad()
def retrieval_ranks(
    audio_emb: torch.Tensor,
    text_emb: torch.Tensor,
    caption_to_clip: torch.Tensor | list[int],
    chunk_size: int | None = None,
) -> RetrievalRanks:
    """Ranks of the targets in both directions, computed in chunks of `chunk_size` query rows.

    `audio_emb` [N, D] and `text_emb` [M, D] should be L2-normalised (cosine = dot product);
    `caption_to_clip` [M] gives each caption's clip. `chunk_size` defaults to about 32 Mi
    similarities per block. Work happens on `audio_emb`'s device. Cost: two passes over the
    similarities per direction (matmul + count) and a top-10 per audio row.
    """
    device = audio_emb.device
    text_emb = text_emb.to(device=device, dtype=audio_emb.dtype)
    c2c = torch.as_tensor(caption_to_clip, dtype=torch.long, device=device)
    _check_inputs(audio_emb, text_emb, c2c)
    t2a = _text_to_audio(audio_emb, text_emb, c2c, chunk_size)
    counts = torch.bincount(c2c, minlength=audio_emb.shape[0])
    clips = (counts > 0).nonzero().flatten()  # audio -> text: the clips that have captions
    rel = _relevant_table(c2c, counts, clips)
    best, above = _audio_to_text(audio_emb, text_emb, clips, rel, chunk_size)
    valid, k = rel >= 0, rel.shape[1]
    # Ranks beyond 10 (or padding) become MAP_K + 1 and are dropped after the tie adjustment.
    ranks, slots = torch.where(valid & (above < MAP_K), above + 1, MAP_K + 1).sort(dim=1, stable=True)
    # Relevant captions tied with each other take consecutive positions: p_j = j + max_{i<=j}(r_i - i).
    j = torch.arange(1, k + 1, device=device)
    positions = j + torch.cummax(ranks - j, dim=1).values
    top_positions = torch.where(positions <= MAP_K, positions, 0)
    stored = torch.empty_like(top_positions).scatter_(1, slots, top_positions)  # back to caption order
    return RetrievalRanks(
        t2a=t2a.cpu(), a2t_best=best.cpu(), a2t_top=top_positions.cpu(), a2t_count=counts[clips].cpu(),
        a2t_stored=stored.cpu(),
    )


def _text_to_audio(audio_emb: torch.Tensor, text_emb: torch.Tensor, c2c: torch.Tensor,
                   chunk_size: int | None) -> torch.Tensor:
    """[M] rank of each caption's clip among all clips (1-based), caption rows in chunks."""
    n, m = audio_emb.shape[0], text_emb.shape[0]
    step = min(chunk_size or max(1, _CHUNK_ELEMENTS // n), m)
    blocks = _Blocks(step, n, audio_emb)
    t2a = torch.empty(m, dtype=torch.long, device=audio_emb.device)
    for start in range(0, m, step):
        sims = blocks.similarities(text_emb[start : start + step], audio_emb)
        target = sims.gather(1, c2c[start : start + step, None])
        t2a[start : start + step] = blocks.count_greater(sims, target) + 1
    return t2a


def _relevant_table(c2c: torch.Tensor, counts: torch.Tensor, clips: torch.Tensor) -> torch.Tensor:
    """[Q, K] caption indices of each captioned clip in stored order, -1 padding (K = most captions)."""
    device, m = c2c.device, c2c.shape[0]
    row_of = torch.full((counts.shape[0],), -1, dtype=torch.long, device=device)
    row_of[clips] = torch.arange(len(clips), device=device)
    order = torch.argsort(c2c, stable=True)
    first = torch.cumsum(counts, 0) - counts  # first slot of each clip in `order`
    slot = torch.arange(m, device=device) - first[c2c[order]]
    rel = torch.full((len(clips), int(counts.max())), -1, dtype=torch.long, device=device)
    rel[row_of[c2c[order]], slot] = order
    return rel


def _audio_to_text(audio_emb: torch.Tensor, text_emb: torch.Tensor, clips: torch.Tensor, rel: torch.Tensor,
                   chunk_size: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(best rank of each clip's captions [Q], captions ranked above each relevant caption [Q, K])."""
    m, device = text_emb.shape[0], audio_emb.device
    valid, rel_idx = rel >= 0, rel.clamp(min=0)
    step = min(chunk_size or max(1, _CHUNK_ELEMENTS // m), len(clips))
    blocks = _Blocks(step, m, audio_emb)
    top_k = min(MAP_K, m)
    best = torch.empty(len(clips), dtype=torch.long, device=device)
    above = torch.empty(len(clips), rel.shape[1], dtype=torch.long, device=device)
    for start in range(0, len(clips), step):
        sims = blocks.similarities(audio_emb[clips[start : start + step]], text_emb)
        targets = sims.gather(1, rel_idx[start : start + step])  # [c, K]
        targets = torch.where(valid[start : start + step], targets, float("-inf"))
        best[start : start + step] = blocks.count_greater(sims, targets.max(1, keepdim=True).values) + 1
        # A caption ranks within the top 10 iff fewer than 10 captions beat it, and then all of
        # those are in the row's top 10: counting there is exact.
        top = sims.topk(top_k, dim=1).values  # [c, 10]
        above[start : start + step] = (top[:, None, :] > targets[:, :, None]).sum(2)
    return best, above


def _median(x: torch.Tensor) -> float:
    s = x.double().sort().values
    mid = s.numel() // 2
    return float(s[mid]) if s.numel() % 2 else float((s[mid - 1] + s[mid]) / 2)


def _med_r(ranks: torch.Tensor) -> float:
    """LAION-CLAP / WavCaps medR: floor of numpy's median of the 0-based ranks, plus 1."""
    return float(np.floor(_median(ranks - 1)) + 1)


def _ap_terms(positions: torch.Tensor) -> torch.Tensor:
    """[Q] sum of j / p_j over the non-zero positions of each row, j counting them 1, 2, ... in row order."""
    hit = positions > 0
    j = torch.cumsum(hit, dim=1).double()
    return torch.where(hit, j / positions.double().clamp(min=1), 0).sum(1)


def ranks_to_metrics(ranks: RetrievalRanks, ks: tuple[int, ...] = (1, 5, 10)) -> dict[str, float]:
    """R@k, mAP@10, median and mean rank in both directions from `RetrievalRanks`."""
    out: dict[str, float] = {}
    t2a = ranks.t2a.double()
    for k in ks:
        out[f"t2a/R@{k}"] = float((t2a <= k).double().mean() * 100)
    out["t2a/mAP@10"] = float(torch.where(t2a <= 10, 1 / t2a, 0).mean() * 100)
    out["t2a/median_rank"] = _median(t2a)
    out["t2a/medR"] = _med_r(t2a)
    out["t2a/mean_rank"] = float(t2a.mean())

    if ranks.a2t_best.numel() == 0:
        raise ValueError("audio->text needs at least one clip with a caption")
    best = ranks.a2t_best.double()
    for k in ks:
        out[f"a2t/R@{k}"] = float((best <= k).double().mean() * 100)
    # a2t_top is sorted ascending with zeros (not retrieved) last, so j counts hits in rank order.
    ap = _ap_terms(ranks.a2t_top) / ranks.a2t_count.clamp(max=MAP_K).double()
    out["a2t/mAP@10"] = float(ap.mean() * 100)
    if ranks.a2t_stored is not None:
        laion = _ap_terms(ranks.a2t_stored) / ranks.a2t_count.double()
        out["a2t/mAP@10_laion"] = float(laion.mean() * 100)
    out["a2t/mAP@10_best"] = float(torch.where(best <= 10, 1 / best, 0).mean() * 100)
    out["a2t/median_rank"] = _median(best)
    out["a2t/medR"] = _med_r(best)
    out["a2t/mean_rank"] = float(best.mean())
    return out


def retrieval_metrics(
    audio_emb: torch.Tensor,
    text_emb: torch.Tensor,
    caption_to_clip: torch.Tensor | list[int],
    chunk_size: int | None = None,
) -> dict[str, float]:
    """AudioCaps/Clotho retrieval metrics: ``{"t2a/R@1", ..., "t2a/mAP@10", "t2a/median_rank", "a2t/..."}``.

    R@k and mAP@10 are in percent. See the module docstring for the exact protocol.
    """
    return ranks_to_metrics(retrieval_ranks(audio_emb, text_emb, caption_to_clip, chunk_size))


@torch.no_grad()
def zeroshot_metrics(
    audio_emb: torch.Tensor,
    class_emb: torch.Tensor,
    targets: torch.Tensor | list[int],
    class_names: list[str] | None = None,
) -> dict:
    """Zero-shot classification by nearest class embedding.

    Returns ``{"WA", "UAR", "per_class_recall": {name: %}, "confusion": [[...]], "predictions": [...]}``.
    WA is plain accuracy, UAR the mean recall over the classes present in `targets`
    (classes with no sample have no recall and are left out of the mean). Percentages.
    `confusion[i][j]` counts samples of true class i predicted as j. Argmax ties go to the
    first class.
    """
    targets = torch.as_tensor(targets, dtype=torch.long).cpu()
    n_classes = class_emb.shape[0]
    names = class_names or [str(i) for i in range(n_classes)]
    if len(names) != n_classes:
        raise ValueError(f"{len(names)} class names for {n_classes} class embeddings")
    if audio_emb.shape[0] == 0:
        raise ValueError("zero-shot evaluation needs at least one clip; got an empty set")
    if targets.shape != (audio_emb.shape[0],):
        raise ValueError(f"targets must have shape [{audio_emb.shape[0]}]; got {tuple(targets.shape)}")
    if targets.min() < 0 or targets.max() >= n_classes:
        raise ValueError(f"targets must be class indices in [0, {n_classes})")
    preds = (audio_emb @ class_emb.to(audio_emb).T).argmax(1).cpu()
    confusion = multiclass_confusion_matrix(preds, targets, n_classes, validate_args=False)
    present = confusion.sum(1) > 0
    # Per class, then averaged here: torchmetrics' "macro" would also count a class that is only
    # ever predicted (recall 0), which UAR leaves out.
    recall = multiclass_recall(preds, targets, n_classes, average="none", validate_args=False).double()
    accuracy = multiclass_accuracy(preds, targets, n_classes, average="micro", validate_args=False)
    return {
        "WA": float(accuracy * 100),
        "UAR": float(recall[present].mean() * 100),
        "per_class_recall": {names[i]: float(recall[i] * 100) for i in range(n_classes) if present[i]},
        "confusion": confusion.tolist(),
        "predictions": preds.tolist(),
    }


def _pair(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"correlation needs two 1-D arrays of equal length; got {x.shape} and {y.shape}")
    if x.size < 2:
        raise ValueError(f"correlation needs at least 2 pairs; got {x.size}")
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        raise ValueError("correlation is undefined: one of the inputs is constant")
    return torch.from_numpy(x), torch.from_numpy(y)


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation coefficient of two 1-D arrays."""
    return float(pearson_corrcoef(*_pair(x, y)))


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation (ties get their average rank, as scipy.stats.spearmanr)."""
    return float(spearman_corrcoef(*_pair(x, y)))
