"""Evaluate CLSP/CLAP models: ``python -m clsp.eval <task> --model M [--model M2 ...] --data D [--out DIR]``.

Tasks:
  retrieval   text<->audio retrieval, AudioCaps/Clotho protocol (R@1/5/10, mAP@10, ranks)
  zeroshot    zero-shot classification with prompt templates (WA, UAR, confusion matrix)
  similarity  Pearson / Spearman of model cosine vs human style ratings
  score       cosine of every audio-caption pair (JSONL); --threshold splits kept/dropped

--data is a CSV/TSV/JSONL table (relative audio paths resolve against its folder, or
--audio-root) or, for retrieval/score, WebDataset shards ('/d/test-{0000..0009}.tar' or a
folder). Several --model values are evaluated side by side in one report. Embeddings are
cached as .safetensors under --cache-dir (default <out>/.cache), keyed by model weights
and data, so a re-run skips the encoders.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from clsp.errors import ArgumentParser, UserError, entry_point

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="python -m clsp.eval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    tasks = parser.add_subparsers(dest="task", required=True, metavar="TASK")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model", action="append", required=True,
                        help="model folder, hub id, clap:<path-or-id> or a training .ckpt (repeat to compare)")
    common.add_argument("--data", required=True, help="table (.csv/.tsv/.jsonl/.json) or shards")
    common.add_argument("--out", default=None, help="output folder (default eval/<task>)")
    common.add_argument("--cache-dir", default=None, help="embedding cache (default <out>/.cache)")
    common.add_argument("--no-cache", action="store_true", help="neither read nor write the embedding cache")
    common.add_argument("--batch-size", type=int, default=16, help="clips per encode_audio call")
    common.add_argument("--device", default=None, help="move the model here (e.g. cuda, cpu)")
    common.add_argument("--audio-root", default=None, help="resolve relative audio paths here, not the table's folder")
    common.add_argument("--audio-column", default=None)

    pairs = argparse.ArgumentParser(add_help=False)
    pairs.add_argument("--caption-column", action="append", default=None, help="caption column(s) of a table")
    pairs.add_argument("--captions", choices=("short", "long", "all"), default="all",
                       help="which caption kinds of a shard (or short_/long_ table columns) to use")

    r = tasks.add_parser("retrieval", parents=[common, pairs], help="text<->audio retrieval")
    r.add_argument("--chunk-size", type=int, default=None, help="query rows per similarity block")
    z = tasks.add_parser("zeroshot", parents=[common], help="zero-shot classification")
    z.add_argument("--label-column", default=None)
    z.add_argument("--labels", default=None, help="label list file (one per line or a JSON list); default: the table's")
    z.add_argument("--template", action="append", default=None,
                   help='prompt with {label}, repeat for an ensemble (default "This is a sound of {label}.")')
    s = tasks.add_parser("similarity", parents=[common], help="style similarity vs human scores")
    s.add_argument("--text-column", default=None)
    s.add_argument("--score-column", default=None)
    c = tasks.add_parser("score", parents=[common, pairs], help="cosine of every audio-caption pair")
    c.add_argument("--threshold", type=float, default=None, help="also write kept.jsonl / dropped.jsonl (e.g. 0.08)")
    return parser


def _load_model(spec: str, device: str | None):
    from clsp.model import load_model

    model = load_model(spec)
    if device is not None:
        model = model.to(device)
    model.eval()
    return model


def _pair_source(args, skipped: dict[str, int]):
    """(fingerprint, factory of a fresh clip iterable) for retrieval/score data."""
    from clsp.evaluation.datasets import (
        data_fingerprint,
        expand_shards,
        is_shard_spec,
        iter_shard_clips,
        load_retrieval_table,
    )

    options = {"captions": args.captions, "caption_columns": args.caption_column, "audio_column": args.audio_column}
    if is_shard_spec(args.data):
        urls = expand_shards(args.data)
        return data_fingerprint(args.data, **options), lambda: iter_shard_clips(urls, args.captions, skipped)
    clips = load_retrieval_table(
        args.data, audio_column=args.audio_column, caption_columns=args.caption_column,
        captions=args.captions, audio_root=args.audio_root,
    )
    return data_fingerprint(args.data, clips, **options), lambda: clips


def _need_table(args) -> None:
    from clsp.evaluation.datasets import is_shard_spec

    if is_shard_spec(args.data):
        raise ValueError(f"{args.task} needs a table (.csv/.tsv/.jsonl/.json), not shards: {args.data}")


def _embed(embed_pairs, model, clips, cache, key, batch_size: int, skipped: dict[str, int]):
    try:
        return embed_pairs(model, clips, cache=cache, key=key, batch_size=batch_size)
    except ValueError as exc:
        if skipped:  # say why a shard set came out empty
            raise ValueError(f"{exc} (skipped samples: {json.dumps(skipped)})") from exc
        raise


def run(args) -> dict:
    """Run one task for every model; write the report; return report.json's content."""
    from clsp.evaluation import report as rep
    from clsp.evaluation.datasets import data_fingerprint, load_label_table, load_similarity_table
    from clsp.evaluation.embed import EmbeddingCache, cache_key, model_fingerprint

    out = Path(args.out or Path("eval") / args.task)
    cache = EmbeddingCache(None if args.no_cache else (args.cache_dir or out / ".cache"))
    skipped: dict[str, int] = {}
    results: dict[str, dict] = {}
    plots: list[str] = []
    extra: dict = {}

    # Read and check the data before loading any model, so bad input fails fast.
    if args.task in ("retrieval", "score"):
        data_fp, clips = _pair_source(args, skipped)
    elif args.task == "zeroshot":
        from clsp.evaluation.zeroshot import DEFAULT_TEMPLATES, check_templates, label_targets, read_labels

        _need_table(args)
        table = load_label_table(args.data, audio_column=args.audio_column, label_column=args.label_column,
                                 audio_root=args.audio_root)
        names = read_labels(args.labels) if args.labels else sorted({c.label for c in table})
        label_targets(table, names)  # labels outside the list: error naming the row, now
        templates = args.template or list(DEFAULT_TEMPLATES)
        check_templates(templates)
        data_fp = data_fingerprint(args.data, table, audio_column=args.audio_column, label_column=args.label_column)
        extra = {"templates": templates}
    else:
        _need_table(args)
        table = load_similarity_table(args.data, audio_column=args.audio_column, text_column=args.text_column,
                                      score_column=args.score_column, audio_root=args.audio_root)
        data_fp = data_fingerprint(args.data, table, audio_column=args.audio_column, text_column=args.text_column,
                                   score_column=args.score_column)

    ranks = {}
    for spec in args.model:
        model = _load_model(spec, args.device)
        fp = model_fingerprint(model)
        key = None if fp is None else cache_key(model=fp, data=data_fp, task=args.task if args.task == "zeroshot" else "pairs")
        if args.task == "retrieval":
            from clsp.evaluation.embed import embed_pairs
            from clsp.evaluation.retrieval import _device, retrieval_from_embeddings

            pairs = _embed(embed_pairs, model, clips(), cache, key, args.batch_size, skipped)
            results[spec], ranks[spec] = retrieval_from_embeddings(pairs, args.chunk_size, _device(model))
        elif args.task == "score":
            from clsp.evaluation.embed import embed_pairs
            from clsp.evaluation.score import scores_from_embeddings, write_scores

            pairs = _embed(embed_pairs, model, clips(), cache, key, args.batch_size, skipped)
            records = scores_from_embeddings(pairs)
            where = out if len(args.model) == 1 else out / rep.slug(spec)
            counts = write_scores(records, where, args.threshold)
            scores = [r["score"] for r in records]
            results[spec] = counts | {"mean_score": sum(scores) / len(scores), "min_score": min(scores),
                                      "max_score": max(scores)}
            if args.threshold is not None:
                print(f"{spec}: kept {counts['kept']} / dropped {counts['dropped']} of {counts['pairs']} pairs "
                      f"at threshold {args.threshold} -> {where}")
        elif args.task == "zeroshot":
            from clsp.evaluation.zeroshot import evaluate_zeroshot

            results[spec] = evaluate_zeroshot(model, table, class_names=names, templates=templates,
                                              batch_size=args.batch_size, cache=cache, cache_key=key)
            name = f"confusion_{rep.slug(spec)}.png"
            out.mkdir(parents=True, exist_ok=True)
            rep.plot_confusion(results[spec]["confusion"], names, out / name, title=spec)
            plots.append(name)
        else:
            from clsp.evaluation.similarity import evaluate_similarity

            results[spec] = evaluate_similarity(model, table, batch_size=args.batch_size, cache=cache, cache_key=key)
        del model

    if ranks:
        out.mkdir(parents=True, exist_ok=True)
        rep.plot_rank_histograms(ranks, out / "rank_histogram.png")
        plots.append("rank_histogram.png")
    if skipped:
        extra["skipped"] = skipped
    extra["cache"] = {"hits": cache.hits, "misses": cache.misses}
    json_path, md_path = rep.write_report(out, args.task, args.data, results, extra, plots)
    print(rep.format_table(results))
    if skipped:
        print(f"skipped samples: {json.dumps(skipped)}")
    print(f"report: {md_path}  {json_path}")
    return json.loads(json_path.read_text(encoding="utf-8"))


@entry_point
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.batch_size < 1:
        raise UserError(f"--batch-size {args.batch_size} is out of range", "give an integer >= 1")
    if args.device is not None and args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UserError(f"--device {args.device} but no CUDA GPU is visible here", "drop --device or use cpu")
    if args.out is not None and Path(args.out).exists() and not Path(args.out).is_dir():
        raise UserError(f"--out {args.out} is a file", "give a folder for the report")
    try:
        run(args)
    except UserError:
        raise
    except (ValueError, FileNotFoundError) as exc:
        # The tasks check tables, shards and models before any work and say what is wrong with them.
        raise UserError.from_exception(exc, f"see `python -m clsp.eval {args.task} --help`") from exc
    return 0


if __name__ == "__main__":
    sys.exit(main())
