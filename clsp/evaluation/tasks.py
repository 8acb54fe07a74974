"""The evaluation tasks, run one way for `clsp.eval <task>` and for `clsp.eval suite`.

An `Evaluation` is a task's data, loaded once (a table, shards or an official set) and evaluated for
each model by `evaluate`, which embeds what the task needs through the embedding cache and returns
the metrics (and the ranks, for retrieval plots). Captioning captions the clips with the model's decoder
and scores the captions against each clip's own captions (`clsp.evaluation.caption_task`). The entry point
and the suites only differ in how they find the data and lay out the report.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch

from clsp.evaluation.caption_task import evaluate_captioning
from clsp.evaluation.clips import Clip, Skips
from clsp.evaluation.embed import EmbeddingCache, cache_key, embed_pairs, encode_clips, model_fingerprint
from clsp.evaluation.metrics import RetrievalRanks, zeroshot_metrics
from clsp.evaluation.retrieval import model_device, retrieval_from_embeddings
from clsp.evaluation.score import scores_from_embeddings
from clsp.evaluation.similarity import evaluate_similarity
from clsp.evaluation.zeroshot import class_embeddings, fold_accuracies, label_targets, prompt_cache_key

TASKS = ("retrieval", "zeroshot", "similarity", "score", "captioning")


@dataclass
class Evaluation:
    """One task's data: what `evaluate` embeds and scores for every model."""

    task: str  # one of TASKS
    clips: Callable[[], Iterable[Clip]]  # a fresh iterable each call (a shard stream is read once)
    fingerprint: str | None  # of the data, for the embedding cache (None: no cache)
    names: list[str] | None = None  # zero-shot: class names, in prompt order
    templates: list[str] | None = None  # zero-shot: prompt templates
    indices: list[int] | None = None  # zero-shot: the clips (of clips()) that carry a label; None = all
    labels: list[str] | None = None  # zero-shot: those clips' labels (sets shared by several tasks relabel)
    skips: Skips = field(default_factory=Skips)  # clips left out while reading, by reason
    info: dict = field(default_factory=dict)  # what the report says about the data
    options: dict = field(default_factory=dict)  # captioning: generation options and the metrics' `tokenizer`


@dataclass
class Outcome:
    metrics: dict
    ranks: RetrievalRanks | None = None
    records: list[dict] | None = None  # score: one {key, caption, kind, score} per pair; captioning: one per clip


def evaluate(model, ev: Evaluation, *, cache: EmbeddingCache | None = None, batch_size: int = 16,
             desc: str | None = None, chunk_size: int | None = None, model_fp: str | None = None,
             audio: dict[str, torch.Tensor] | None = None) -> Outcome:
    """Run `ev.task` for one model. `audio` (zero-shot) shares clip embeddings between tasks on the same set."""
    cache = cache or EmbeddingCache(None)
    model_fp = model_fp or model_fingerprint(model)
    what = "zeroshot" if ev.task == "zeroshot" else "pairs"
    key = None if model_fp is None or ev.fingerprint is None else cache_key(model=model_fp, data=ev.fingerprint,
                                                                            task=what)
    if ev.task == "zeroshot":
        return Outcome(_zeroshot(model, ev, cache, key, batch_size, desc, audio))
    if ev.task == "similarity":
        return Outcome(evaluate_similarity(model, list(ev.clips()), batch_size=batch_size, cache=cache, cache_key=key,
                                           desc=desc))
    try:
        if ev.task == "captioning":  # captions are not cached: they depend on the generation options too
            metrics, records = evaluate_captioning(model, ev.clips(), batch_size=batch_size, desc=desc, **ev.options)
            return Outcome(metrics, records=records)
        pairs = embed_pairs(model, ev.clips(), cache=cache, key=key, batch_size=batch_size, desc=desc)
    except ValueError as exc:
        if ev.skips:  # say why a shard set came out empty
            raise ValueError(f"{exc} (skipped: {json.dumps(ev.skips.counts)})") from exc
        raise
    if ev.task == "score":
        records = scores_from_embeddings(pairs)
        scores = [r["score"] for r in records]
        return Outcome({"pairs": len(records), "mean_score": sum(scores) / len(scores), "min_score": min(scores),
                        "max_score": max(scores)}, records=records)
    metrics, ranks = retrieval_from_embeddings(pairs, chunk_size, model_device(model))
    return Outcome(metrics, ranks)


def _zeroshot(model, ev: Evaluation, cache: EmbeddingCache, key: str | None, batch_size: int, desc: str | None,
              shared: dict[str, torch.Tensor] | None) -> dict:
    """WA, UAR, per-class recall, confusion (and per-fold accuracies when the clips carry folds)."""
    clips = list(ev.clips())
    if key is not None and shared is not None and key in shared:
        audio = shared[key]
    else:
        audio = cache.get_or_compute(key, lambda: ({"audio": encode_clips(model, clips, batch_size, desc=desc)[0]},
                                                   {}))[0]["audio"]
        if shared is not None and key is not None:
            shared[key] = audio
    if ev.indices is not None:
        clips, audio = [clips[i] for i in ev.indices], audio[torch.tensor(ev.indices, dtype=torch.long)]
    for clip, label in zip(clips, ev.labels or []):
        clip.label = label
    if not clips:
        raise ValueError("zero-shot evaluation needs at least one labelled clip; got none")
    names, templates = list(ev.names), list(ev.templates)
    targets = label_targets(clips, names)
    text_key = None if key is None else prompt_cache_key(key, names, templates)
    text = cache.get_or_compute(text_key, lambda: ({"text": class_embeddings(model, names, templates)}, {}))[0]["text"]
    metrics = zeroshot_metrics(audio, text, targets, names)
    metrics["class_names"] = names
    metrics["num_clips"] = len(clips)
    folds = [c.attributes.get("fold") for c in clips]
    if all(folds) and len(set(folds)) > 1:  # ESC-50 / US8K: each fold's accuracy and their mean
        metrics |= fold_accuracies(metrics["predictions"], targets.tolist(), folds)
    return metrics
