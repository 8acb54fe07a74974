"""Named evaluation suites: the papers' tables, reproduced in one command.

``python -m clsp.eval suite clap --model M --root /data/eval`` finds each of the suite's
data sets under the root (in their official release layouts, see `official`), evaluates
every model on whichever are present, and writes one report with the published numbers
beside the model's own. Data sets not found are listed, not fatal.

- ``clap``: AudioCaps + Clotho retrieval, ESC-50 + UrbanSound8K zero-shot (LAION-CLAP).
- ``clsp``: RAVDESS emotion / gender, CREMA-D emotion / age zero-shot, and style similarity
  when a ratings table is given (CLSP).
- ``fusionaudio``: AudioCaps + Clotho retrieval, ESC-50 + UrbanSound8K zero-shot, the
  FusionAudio paper's retrieval and classification sets that have an adapter here.

Each data set is encoded once per model: the clips' audio embeddings are computed once and
shared by every task on that set (RAVDESS emotion and gender read the same embeddings),
and stored in the embedding cache so a re-run skips the encoders.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from clsp.errors import UserError
from clsp.evaluation.embed import EmbeddingCache, cache_key, embed_pairs, encode_clips, model_fingerprint
from clsp.evaluation.metrics import RetrievalRanks, zeroshot_metrics
from clsp.evaluation.official import OfficialSet, fingerprint, fold_name, load_official, locate, with_labels
from clsp.evaluation.published import published_for

__all__ = ["SUITES", "SuiteTask", "find_sets", "run_suite"]


@dataclass(frozen=True)
class SuiteTask:
    id: str  # report section: "audiocaps", "ravdess/emotion", "style"
    dataset: str  # adapter name, or "ratings" (the style table given by the user)
    kind: str  # "retrieval", "zeroshot" or "similarity"
    label: str | None = None  # zero-shot label attribute


_RETRIEVAL = (SuiteTask("audiocaps", "audiocaps", "retrieval"), SuiteTask("clotho", "clotho", "retrieval"))
_SOUND = (SuiteTask("esc50", "esc50", "zeroshot", "label"), SuiteTask("us8k", "us8k", "zeroshot", "label"))
SUITES: dict[str, tuple[SuiteTask, ...]] = {
    "clap": _RETRIEVAL + _SOUND,
    "clsp": (
        SuiteTask("ravdess/emotion", "ravdess", "zeroshot", "emotion"),
        SuiteTask("ravdess/gender", "ravdess", "zeroshot", "gender"),
        SuiteTask("crema-d/emotion", "crema-d", "zeroshot", "emotion"),
        SuiteTask("crema-d/age", "crema-d", "zeroshot", "age"),
        SuiteTask("style", "ratings", "similarity"),
    ),
    "fusionaudio": _RETRIEVAL + _SOUND,
}


def find_sets(tasks: tuple[SuiteTask, ...], root: Path, ratings: str | None) -> tuple[dict[str, object], list[str]]:
    """({dataset: OfficialSet or similarity clips}, [why each missing data set is missing])."""
    from clsp.evaluation.datasets import load_similarity_table

    found: dict[str, object] = {}
    not_found: list[str] = []
    for name in dict.fromkeys(t.dataset for t in tasks):
        if name == "ratings":
            if ratings is None:
                not_found.append("ratings: no --ratings table given (style similarity skipped)")
            else:
                found[name] = load_similarity_table(ratings)
            continue
        folder = locate(name, root)
        if folder is None:
            not_found.append(f"{name}: no release layout found under {root}")
            continue
        try:
            found[name] = load_official(name, folder)
        except UserError as exc:  # present but unusable: reported, the other sets still run
            not_found.append(f"{name}: {exc}")
    return found, not_found


def _set_info(found: OfficialSet) -> dict:
    return {
        "dir": str(found.root), "split": found.split, "listed": found.listed, "evaluated": len(found.clips),
        "missing_count": len(found.missing), "missing": found.missing, "notes": found.notes,
    }


def _encode_set(model, found: OfficialSet, cache: EmbeddingCache, key: str | None, batch_size: int,
                desc: str) -> torch.Tensor:
    """[N, D] audio embeddings of every clip of the set, from the cache when it has them."""
    def compute() -> tuple[dict[str, torch.Tensor], dict]:
        return {"audio": encode_clips(model, found.clips, batch_size, desc=desc)[0]}, {}

    return cache.get_or_compute(key, compute)[0]["audio"]


def _zeroshot(model, found: OfficialSet, audio: torch.Tensor, task: SuiteTask, fold: str | None) -> tuple[dict, dict]:
    """(metrics, protocol info) of one zero-shot task from the set's audio embeddings."""
    from clsp.evaluation.zeroshot import class_embeddings, fold_accuracies, label_targets

    indices, clips, names = with_labels(found, task.label)
    protocol: dict = {"label": task.label, "without_label": len(found.clips) - len(clips)}
    if fold is not None:
        fold = fold_name(fold)
        keep = [i for i, c in enumerate(clips) if c.attributes.get("fold") == fold]
        if not keep:
            raise UserError(f"{found.name}: no clip in fold {fold}", "use a fold number the release has (1-5 for ESC-50)")
        indices, clips = [indices[i] for i in keep], [clips[i] for i in keep]
        protocol["heldout_fold"] = fold
    templates = found.templates.get(task.label) or found.templates.get(found.default_label)
    protocol["templates"] = list(templates)
    targets = label_targets(clips, names)
    metrics = zeroshot_metrics(audio[torch.tensor(indices)], class_embeddings(model, names, templates), targets, names)
    metrics["class_names"] = names
    metrics["num_clips"] = len(clips)
    folds = [c.attributes.get("fold") for c in clips]
    if fold is None and all(folds) and len(set(folds)) > 1:
        metrics |= fold_accuracies(metrics["predictions"], targets.tolist(), folds)
    return metrics, protocol


def run_suite(
    name: str,
    models: list[str],
    root: str | Path,
    *,
    load_model: Callable[[str], object],
    cache: EmbeddingCache,
    batch_size: int = 16,
    ratings: str | None = None,
    esc50_fold: str | None = None,
) -> dict:
    """Evaluate `models` on the suite's data sets found under `root`; returns the report payload.

    The payload holds ``results[task id][model spec]`` (metrics), ``sets`` (where each data set
    was found, how many clips it listed, which were missing), ``protocols`` (prompts, folds),
    ``published`` rows per task, ``not_found`` and ``ranks`` (for plots; not JSON).
    """
    if name not in SUITES:
        raise UserError(f"unknown suite {name!r}", f"use one of {', '.join(SUITES)}")
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"suite root {root} is not a folder", "pass --root DIR holding the downloaded data sets")
    tasks = SUITES[name]
    sets, not_found = find_sets(tasks, root, ratings)
    tasks = tuple(t for t in tasks if t.dataset in sets)
    results: dict[str, dict[str, dict]] = {t.id: {} for t in tasks}
    protocols: dict[str, dict] = {}
    ranks: dict[str, dict[str, RetrievalRanks]] = {}
    data_fp = {k: fingerprint(v) for k, v in sets.items() if isinstance(v, OfficialSet)}
    if "ratings" in sets:
        from clsp.evaluation.datasets import data_fingerprint

        data_fp["ratings"] = data_fingerprint(ratings, sets["ratings"])
    for spec in models:
        model = load_model(spec)
        model_fp = model_fingerprint(model)
        audio: dict[str, torch.Tensor] = {}  # each data set encoded once per model
        for task in tasks:
            found = sets[task.dataset]
            key = None if model_fp is None else cache_key(model=model_fp, data=data_fp.get(task.dataset), what=task.kind)
            desc = f"{task.dataset} [{spec}]"
            if task.kind == "retrieval":
                from clsp.evaluation.retrieval import _device, retrieval_from_embeddings

                pairs = embed_pairs(model, found.clips, cache=cache, key=key, batch_size=batch_size, desc=desc)
                metrics, ranks.setdefault(task.id, {})[spec] = retrieval_from_embeddings(pairs, None, _device(model))
                metrics |= {"listed_clips": found.listed, "missing_clips": len(found.missing)}
                protocols[task.id] = {"captions_per_clip": _captions_per_clip(found),
                                      "a2t/mAP@10": "standard AP@10 (WavCaps)",
                                      "a2t/mAP@10_laion": "LAION-CLAP evaluate_clotho_audiocaps (unsorted)",
                                      "medR": "floor(median(0-based rank)) + 1 (LAION-CLAP, WavCaps)"}
            elif task.kind == "zeroshot":
                if task.dataset not in audio:
                    audio[task.dataset] = _encode_set(model, found, cache, key, batch_size, desc)
                fold = esc50_fold if task.dataset == "esc50" else None
                metrics, protocols[task.id] = _zeroshot(model, found, audio[task.dataset], task, fold)
                metrics |= {"listed_clips": found.listed, "missing_clips": len(found.missing)}
            else:
                from clsp.evaluation.similarity import evaluate_similarity

                metrics = evaluate_similarity(model, found, batch_size=batch_size, cache=cache, cache_key=key,
                                              desc=desc)
                protocols[task.id] = {"ratings": ratings}
            results[task.id][spec] = metrics
        del model
    return {
        "suite": name,
        "root": str(root),
        "models": models,
        "results": results,
        "sets": {k: _set_info(v) for k, v in sets.items() if isinstance(v, OfficialSet)},
        "protocols": protocols,
        "published": {t.id: [vars(p) for p in published_for(t.id)] for t in SUITES[name]},
        "not_found": not_found,
        "ranks": ranks,
    }


def _captions_per_clip(found: OfficialSet) -> float:
    return float(np.mean([len(c.captions) for c in found.clips]))
