"""Speech-style similarity: correlation of model cosine with human ratings."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from clsp.evaluation.clips import Clip, as_clips
from clsp.evaluation.embed import EmbeddingCache, PairEmbeddings, embed_pairs
from clsp.evaluation.metrics import pearson, spearman

__all__ = ["evaluate_similarity", "pair_cosines"]


def pair_cosines(pairs: PairEmbeddings) -> np.ndarray:
    """[M] cosine of every caption with its own clip."""
    return (pairs.audio[pairs.caption_to_clip] * pairs.text).sum(1).double().numpy()


def evaluate_similarity(
    model,
    clips: Iterable[Clip] | Sequence[object],
    descriptions: Sequence[str] | None = None,
    scores: Sequence[float] | None = None,
    *,
    sample_rate: int | None = None,
    batch_size: int = 16,
    cache: EmbeddingCache | None = None,
    cache_key: str | None = None,
    desc: str | None = None,
) -> dict:
    """``{"pearson", "spearman", "num_pairs", "cosine": [...], "human": [...]}`` for (clip, description, score) triples.

    Clips from `load_similarity_table` carry their description and score already. `desc`
    labels a progress bar.
    """
    items = as_clips(clips, captions=descriptions, scores=scores, sample_rate=sample_rate)
    items = list(items)
    if not items:
        raise ValueError("similarity evaluation needs at least two rated pairs; got an empty set")
    for i, clip in enumerate(items):
        if clip.score is None or len(clip.captions) != 1:
            raise ValueError(f"clip {i} ({clip.key}): needs exactly one description and a human score")
    human = np.array([c.score for c in items], dtype=np.float64)
    pairs = embed_pairs(model, items, cache=cache, key=cache_key, batch_size=batch_size, desc=desc)
    cosine = pair_cosines(pairs)
    return {
        "pearson": pearson(cosine, human),
        "spearman": spearman(cosine, human),
        "num_pairs": len(items),
        "cosine": cosine.tolist(),
        "human": human.tolist(),
    }
