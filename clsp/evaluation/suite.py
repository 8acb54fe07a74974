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
- ``captioning``: Clotho (evaluation split) and AudioCaps (test) captioning, the DCASE way: each
  clip's caption against its 5 references (models with a caption decoder); captions written beside.

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
from clsp.evaluation.catalog import fingerprint, fold_name, load_official, locate, with_labels
from clsp.evaluation.embed import EmbeddingCache, model_fingerprint
from clsp.evaluation.metrics import RetrievalRanks
from clsp.evaluation.official import OfficialSet
from clsp.evaluation.published import published_for
from clsp.evaluation.tables import data_fingerprint, load_similarity_table
from clsp.evaluation.tasks import Evaluation, evaluate

__all__ = ["SUITES", "SuiteTask", "find_sets", "run_suite"]


@dataclass(frozen=True)
class SuiteTask:
    id: str  # report section: "audiocaps", "ravdess/emotion", "style"
    dataset: str  # adapter name, or "ratings" (the style table given by the user)
    kind: str  # "retrieval", "zeroshot", "similarity" or "captioning"
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
    "captioning": (SuiteTask("clotho/captioning", "clotho", "captioning"),
                   SuiteTask("audiocaps/captioning", "audiocaps", "captioning")),
}


def find_sets(tasks: tuple[SuiteTask, ...], root: Path, ratings: str | None) -> tuple[dict[str, object], list[str]]:
    """({dataset: OfficialSet or similarity clips}, [why each missing data set is missing])."""
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


def _evaluation(task: SuiteTask, found: object, ratings: str | None, esc50_fold: str | None) -> tuple[Evaluation, dict]:
    """(the task's Evaluation, its protocol notes for the report)."""
    if task.kind == "similarity":
        return Evaluation("similarity", lambda: found, data_fingerprint(ratings, found)), {"ratings": ratings}
    if task.kind == "captioning":
        return Evaluation("captioning", lambda: found.clips, fingerprint(found)), {
            "references": "every caption of a clip", "decoding": "the model's decoder defaults (num_beams)",
            "tokenization": "PTB (Java) when it runs, else clsp's Python approximation (see each model's row)"}
    if task.kind == "retrieval":
        return Evaluation("retrieval", lambda: found.clips, fingerprint(found)), {
            "captions_per_clip": float(np.mean([len(c.captions) for c in found.clips])),
            "a2t/mAP@10": "standard AP@10 (WavCaps)",
            "a2t/mAP@10_laion": "LAION-CLAP evaluate_clotho_audiocaps (unsorted)",
            "medR": "floor(median(0-based rank)) + 1 (LAION-CLAP, WavCaps)"}
    indices, clips, names = with_labels(found, task.label)
    protocol: dict = {"label": task.label, "without_label": len(found.clips) - len(clips)}
    fold = esc50_fold if task.dataset == "esc50" else None
    if fold is not None:
        fold = fold_name(fold)
        indices = [i for i, c in zip(indices, clips) if c.attributes.get("fold") == fold]
        if not indices:
            raise UserError(f"{found.name}: no clip in fold {fold}", "use a fold number the release has (1-5 for ESC-50)")
        protocol["heldout_fold"] = fold
    templates = list(found.templates.get(task.label) or found.templates.get(found.default_label))
    protocol["templates"] = templates
    labels = [found.clips[i].attributes[task.label] for i in indices]
    return Evaluation("zeroshot", lambda: found.clips, fingerprint(found), names, templates, indices, labels), protocol


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
    ``published`` rows per task, ``not_found``, ``ranks`` (for plots; not JSON) and ``captions`` (each
    captioning task's records per model, written as JSONL beside the report).
    """
    if name not in SUITES:
        raise UserError(f"unknown suite {name!r}", f"use one of {', '.join(SUITES)}")
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"suite root {root} is not a folder", "pass --root DIR holding the downloaded data sets")
    sets, not_found = find_sets(SUITES[name], root, ratings)
    tasks = tuple(t for t in SUITES[name] if t.dataset in sets)
    prepared = {t.id: _evaluation(t, sets[t.dataset], ratings, esc50_fold) for t in tasks}
    results: dict[str, dict[str, dict]] = {t.id: {} for t in tasks}
    ranks: dict[str, dict[str, RetrievalRanks]] = {}
    captions: dict[str, dict[str, list[dict]]] = {}
    for spec in models:
        model = load_model(spec)
        model_fp = model_fingerprint(model)
        audio: dict[str, torch.Tensor] = {}  # each zero-shot set's clips encoded once per model
        for task in tasks:
            outcome = evaluate(model, prepared[task.id][0], cache=cache, batch_size=batch_size, model_fp=model_fp,
                               desc=f"{task.dataset} [{spec}]", audio=audio)
            found = sets[task.dataset]
            if isinstance(found, OfficialSet):
                outcome.metrics |= {"listed_clips": found.listed, "missing_clips": len(found.missing)}
            if outcome.ranks is not None:
                ranks.setdefault(task.id, {})[spec] = outcome.ranks
            if task.kind == "captioning":
                captions.setdefault(task.id, {})[spec] = outcome.records
            results[task.id][spec] = outcome.metrics
        del model
    return {
        "suite": name,
        "root": str(root),
        "models": models,
        "results": results,
        "sets": {k: _set_info(v) for k, v in sets.items() if isinstance(v, OfficialSet)},
        "protocols": {task_id: protocol for task_id, (_, protocol) in prepared.items()},
        "published": {t.id: [vars(p) for p in published_for(t.id)] for t in SUITES[name]},
        "not_found": not_found,
        "ranks": ranks,
        "captions": captions,
    }
