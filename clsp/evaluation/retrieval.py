"""Cross-modal retrieval evaluation (AudioCaps / Clotho protocol; see `metrics`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from clsp.evaluation.datasets import Clip, as_clips
from clsp.evaluation.embed import EmbeddingCache, PairEmbeddings, embed_pairs
from clsp.evaluation.metrics import RetrievalRanks, ranks_to_metrics, retrieval_ranks

__all__ = ["evaluate_retrieval", "retrieval_from_embeddings", "with_mean_map"]


def retrieval_from_embeddings(
    pairs: PairEmbeddings, chunk_size: int | None = None, device: torch.device | str = "cpu"
) -> tuple[dict[str, float], RetrievalRanks]:
    """(metrics incl. num_clips/num_captions, ranks) of embedded clips and captions."""
    ranks = retrieval_ranks(pairs.audio.to(device), pairs.text.to(device), pairs.caption_to_clip, chunk_size)
    metrics = ranks_to_metrics(ranks)
    metrics["num_clips"] = len(pairs.keys)
    metrics["num_captions"] = len(pairs.captions)
    return metrics, ranks


def with_mean_map(metrics: dict[str, float]) -> dict[str, float]:
    """`metrics` plus "mAP@10", the mean of both directions' mAP@10 (LAION-CLAP's checkpoint criterion)."""
    return {**metrics, "mAP@10": (metrics["t2a/mAP@10"] + metrics["a2t/mAP@10"]) / 2}


def evaluate_retrieval(
    model,
    clips: Iterable[Clip] | Sequence[object],
    captions: Sequence[str | Sequence[str]] | None = None,
    *,
    sample_rate: int | None = None,
    batch_size: int = 16,
    chunk_size: int | None = None,
    cache: EmbeddingCache | None = None,
    cache_key: str | None = None,
) -> dict[str, float]:
    """Retrieval metrics of `model` on clips (paths, 1-D waveforms or `Clip`s) and their captions.

    `captions[i]` is the caption (or list of captions) of `clips[i]`; leave it out when the
    clips are `Clip`s that carry captions. Returns ``retrieval_metrics`` keys plus
    ``num_clips`` and ``num_captions``.
    """
    items = as_clips(clips, captions=captions, sample_rate=sample_rate)
    pairs = embed_pairs(model, items, cache=cache, key=cache_key, batch_size=batch_size)
    return retrieval_from_embeddings(pairs, chunk_size, _device(model))[0]


def _device(model) -> torch.device:
    try:
        return torch.device(getattr(model, "device", "cpu"))
    except (TypeError, RuntimeError):
        return torch.device("cpu")
