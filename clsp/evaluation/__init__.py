"""Evaluation: retrieval, zero-shot classification, style similarity and pair scoring.

Everything here needs only a model with ``encode_audio`` / ``encode_text``. `official` reads
the evaluation sets' release layouts, `suite` runs a paper's whole table over them.
"""

from clsp.evaluation.catalog import load_official
from clsp.evaluation.clips import Clip, as_clips, shard_clips
from clsp.evaluation.embed import EmbeddingCache, encode_clips, encode_texts, model_fingerprint
from clsp.evaluation.metrics import (
    RetrievalRanks,
    pearson,
    ranks_to_metrics,
    retrieval_metrics,
    retrieval_ranks,
    spearman,
    zeroshot_metrics,
)
from clsp.evaluation.official import OfficialSet
from clsp.evaluation.published import PUBLISHED
from clsp.evaluation.retrieval import evaluate_retrieval
from clsp.evaluation.score import score_pairs, write_scores
from clsp.evaluation.similarity import evaluate_similarity
from clsp.evaluation.suite import SUITES, run_suite
from clsp.evaluation.tables import load_label_table, load_retrieval_table, load_similarity_table
from clsp.evaluation.zeroshot import DEFAULT_TEMPLATES, class_embeddings, evaluate_zeroshot

__all__ = [
    "Clip",
    "DEFAULT_TEMPLATES",
    "EmbeddingCache",
    "OfficialSet",
    "PUBLISHED",
    "SUITES",
    "RetrievalRanks",
    "as_clips",
    "class_embeddings",
    "encode_clips",
    "encode_texts",
    "evaluate_retrieval",
    "evaluate_similarity",
    "evaluate_zeroshot",
    "load_label_table",
    "load_official",
    "load_retrieval_table",
    "load_similarity_table",
    "model_fingerprint",
    "pearson",
    "ranks_to_metrics",
    "retrieval_metrics",
    "retrieval_ranks",
    "run_suite",
    "score_pairs",
    "shard_clips",
    "spearman",
    "write_scores",
    "zeroshot_metrics",
]
