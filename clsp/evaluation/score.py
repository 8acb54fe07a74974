"""Audio-caption cosine scores for every pair, and FusionAudio's threshold filter."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from clsp.atomic import write_text_atomic
from clsp.evaluation.clips import Clip, as_clips
from clsp.evaluation.embed import EmbeddingCache, PairEmbeddings, embed_pairs
from clsp.evaluation.similarity import pair_cosines

__all__ = ["score_pairs", "scores_from_embeddings", "write_scores"]


def scores_from_embeddings(pairs: PairEmbeddings) -> list[dict]:
    """``{key, caption, kind, score}`` for every caption of every clip."""
    cosine = pair_cosines(pairs)
    keys = [pairs.keys[i] for i in pairs.caption_to_clip.tolist()]
    return [
        {"key": k, "caption": c, "kind": kind, "score": float(s)}
        for k, c, kind, s in zip(keys, pairs.captions, pairs.kinds, cosine)
    ]


def score_pairs(
    model,
    clips: Iterable[Clip] | Sequence[object],
    captions: Sequence[str | Sequence[str]] | None = None,
    *,
    sample_rate: int | None = None,
    batch_size: int = 16,
    cache: EmbeddingCache | None = None,
    cache_key: str | None = None,
) -> list[dict]:
    """Cosine of every audio-caption pair, as ``{key, caption, kind, score}`` records."""
    items = as_clips(clips, captions=captions, sample_rate=sample_rate)
    return scores_from_embeddings(embed_pairs(model, items, cache=cache, key=cache_key, batch_size=batch_size))


def _write_jsonl(path: Path, records: list[dict]) -> None:
    write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def write_scores(
    records: list[dict], out_dir: str | Path, threshold: float | None = None, name: str = "scores"
) -> dict[str, int]:
    """Write ``<name>.jsonl``; with `threshold`, also ``kept.jsonl`` (score >= threshold) and
    ``dropped.jsonl`` (score < threshold). Returns the counts."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _write_jsonl(out / f"{name}.jsonl", records)
    counts = {"pairs": len(records)}
    if threshold is not None:
        kept = [r for r in records if r["score"] >= threshold]
        dropped = [r for r in records if r["score"] < threshold]
        _write_jsonl(out / "kept.jsonl", kept)
        _write_jsonl(out / "dropped.jsonl", dropped)
        counts |= {"kept": len(kept), "dropped": len(dropped)}
    return counts
