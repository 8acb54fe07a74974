"""Zero-shot classification: nearest label prompt (template ensemble) for each clip."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from clsp.evaluation.clips import Clip, as_clips
from clsp.evaluation.embed import EmbeddingCache, encode_clips, encode_texts
from clsp.evaluation.metrics import zeroshot_metrics
from clsp.zeroshot import check_templates, label_embeddings

__all__ = [
    "DEFAULT_TEMPLATES", "check_templates", "class_embeddings", "evaluate_zeroshot", "fold_accuracies", "label_targets",
    "prompt_cache_key", "read_labels",
]

DEFAULT_TEMPLATES = ("This is a sound of {label}.",)


def class_embeddings(
    model, class_names: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES, batch_size: int = 256
) -> torch.Tensor:
    """[C, D]: each class's prompts (one per template) encoded, averaged, renormalised: the prompts and
    ranking of `CLSPModel.zero_shot` (`clsp.zeroshot.label_embeddings`), through the evaluation's encoder."""
    return label_embeddings(model, class_names, templates,
                            encode=lambda prompts: encode_texts(model, prompts, batch_size))


def read_labels(path: str) -> list[str]:
    """A label list: a JSON list, or one label per line (blank lines ignored)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"label list not found: {p}")
    text = p.read_text(encoding="utf-8")
    labels = json.loads(text) if text.lstrip().startswith("[") else [s.strip() for s in text.splitlines()]
    labels = [str(s).strip() for s in labels if str(s).strip()]
    if not labels:
        raise ValueError(f"label list {p} is empty")
    if len(set(labels)) != len(labels):
        dup = sorted({s for s in labels if labels.count(s) > 1})
        raise ValueError(f"label list {p} repeats {dup}")
    return labels


def label_targets(clips: Sequence[Clip], class_names: Sequence[str]) -> torch.Tensor:
    """[N] class index of each clip; a label not in `class_names` is an error naming its row."""
    index = {c: i for i, c in enumerate(class_names)}
    targets = []
    for i, clip in enumerate(clips):
        if clip.label not in index:
            where = f"line {clip.line}" if clip.path is not None else f"clip {i}"
            raise ValueError(
                f"{where} ({clip.key}): label {clip.label!r} is not in the label list "
                f"({len(class_names)} labels: {list(class_names)[:10]}{' ...' if len(class_names) > 10 else ''})"
            )
        targets.append(index[clip.label])
    return torch.tensor(targets, dtype=torch.long)


def evaluate_zeroshot(
    model,
    clips: Iterable[Clip] | Sequence[object],
    labels: Sequence[str] | None = None,
    *,
    class_names: Sequence[str] | None = None,
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    sample_rate: int | None = None,
    batch_size: int = 16,
    cache: EmbeddingCache | None = None,
    cache_key: str | None = None,
    desc: str | None = None,
) -> dict:
    """WA, UAR, per-class recall and confusion matrix (see `zeroshot_metrics`); `desc` labels a progress bar.

    `labels[i]` is the true label of `clips[i]` (or carried by `Clip.label`);
    `class_names` defaults to the sorted distinct labels. `cache_key` names the audio
    embeddings; the prompt embeddings are cached under a key derived from it and the prompts.
    """
    items = list(as_clips(clips, labels=labels, sample_rate=sample_rate))
    if not items:
        raise ValueError("zero-shot evaluation needs at least one clip; got an empty set")
    names = list(class_names) if class_names is not None else sorted({c.label for c in items})
    targets = label_targets(items, names)
    check_templates(templates)  # before any encoding
    cache = cache or EmbeddingCache(None)
    audio = cache.get_or_compute(
        cache_key, lambda: ({"audio": encode_clips(model, items, batch_size, desc=desc)[0]}, {})
    )[0]["audio"]
    text_key = None if cache_key is None else prompt_cache_key(cache_key, names, templates)
    text = cache.get_or_compute(text_key, lambda: ({"text": class_embeddings(model, names, templates)}, {}))[0]["text"]
    out = zeroshot_metrics(audio, text, targets, names)
    out["class_names"] = names
    out["num_clips"] = len(items)
    return out


def prompt_cache_key(audio_key: str, names: Sequence[str], templates: Sequence[str]) -> str:
    """The cache key of a label list's prompt embeddings, derived from its audio embeddings' key."""
    return f"{audio_key}-prompts-" + hashlib.sha256(json.dumps([list(names), list(templates)]).encode()).hexdigest()[:16]


def fold_accuracies(predictions: Sequence[int], targets: Sequence[int], folds: Sequence[str]) -> dict[str, float]:
    """``WA_fold<k>`` for each fold and ``WA_fold_mean``, their unweighted mean (ESC-50's 5-fold protocol)."""
    correct = np.asarray(predictions) == np.asarray(targets)
    fold_of = np.asarray(folds)
    out: dict[str, float] = {}
    for fold in sorted(set(folds), key=lambda f: (len(f), f)):
        out[f"WA_fold{fold}"] = float(correct[fold_of == fold].mean() * 100)
    out["WA_fold_mean"] = sum(out.values()) / len(out)
    return out
