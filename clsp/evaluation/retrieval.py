"""Cross-modal retrieval evaluation (AudioCaps / Clotho protocol; see `metrics`): the one path.

    clips (`clips.shard_clips`, a table, an official set)  ->  `embed.embed_pairs`  ->  `retrieval_scores`

`clsp.eval retrieval`, validation during training (each rank embeds its share of the same clip
stream; the trainer gathers the parts and calls `retrieval_scores` on the whole) and the end-of-run
test (`evaluate_retrieval`) all take this path, so they agree by construction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from clsp.evaluation.clips import Clip, as_clips
from clsp.evaluation.embed import EmbeddingCache, PairEmbeddings, embed_pairs
from clsp.evaluation.metrics import RetrievalRanks, ranks_to_metrics, retrieval_ranks

__all__ = ["evaluate_retrieval", "join_pairs", "retrieval_from_embeddings", "retrieval_scores", "with_mean_map"]


def with_mean_map(metrics: dict[str, float]) -> dict[str, float]:
    """`metrics` plus "mAP@10", the mean of both directions' mAP@10 (LAION-CLAP's checkpoint criterion)."""
    return {**metrics, "mAP@10": (metrics["t2a/mAP@10"] + metrics["a2t/mAP@10"]) / 2}


def retrieval_scores(audio: torch.Tensor, text: torch.Tensor, caption_to_clip: torch.Tensor,
                     chunk_size: int | None = None, device: torch.device | str = "cpu",
                     ) -> tuple[dict[str, float], RetrievalRanks]:
    """(metrics with the mean mAP@10, num_clips and num_captions; ranks) of embedded clips and captions."""
    ranks = retrieval_ranks(audio.to(device), text.to(device), caption_to_clip, chunk_size)
    metrics = with_mean_map(ranks_to_metrics(ranks))
    metrics["num_clips"] = len(audio)
    metrics["num_captions"] = len(text)
    return metrics, ranks


def retrieval_from_embeddings(pairs: PairEmbeddings, chunk_size: int | None = None,
                              device: torch.device | str = "cpu") -> tuple[dict[str, float], RetrievalRanks]:
    return retrieval_scores(pairs.audio, pairs.text, pairs.caption_to_clip, chunk_size, device)


def join_pairs(parts: Sequence[PairEmbeddings]) -> PairEmbeddings:
    """Several parts' embeddings as one, caption_to_clip indices offset to the joined clip order."""
    offsets = torch.cumsum(torch.tensor([0] + [len(p.keys) for p in parts[:-1]]), 0).tolist()
    return PairEmbeddings(
        keys=[k for p in parts for k in p.keys],
        audio=torch.cat([p.audio for p in parts]),
        captions=[c for p in parts for c in p.captions],
        kinds=[k for p in parts for k in p.kinds],
        caption_to_clip=torch.cat([p.caption_to_clip + o for p, o in zip(parts, offsets)]),
        text=torch.cat([p.text for p in parts]),
    )


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
    clips are `Clip`s that carry captions. Returns ``retrieval_metrics`` keys plus the mean
    ``mAP@10``, ``num_clips`` and ``num_captions``.
    """
    items = as_clips(clips, captions=captions, sample_rate=sample_rate)
    pairs = embed_pairs(model, items, cache=cache, key=cache_key, batch_size=batch_size)
    return retrieval_from_embeddings(pairs, chunk_size, model_device(model))[0]


def model_device(model) -> torch.device:
    """The model's device (CPU for models that do not say)."""
    try:
        return torch.device(getattr(model, "device", "cpu"))
    except (TypeError, RuntimeError):
        return torch.device("cpu")
