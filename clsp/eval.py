"""Evaluate CLSP/CLAP models: ``python -m clsp.eval <task> --model M [--model M2 ...] --data D [--out DIR]``.

Tasks:
  retrieval   text<->audio retrieval, AudioCaps/Clotho protocol (R@1/5/10, mAP@10, ranks)
  zeroshot    zero-shot classification with prompt templates (WA, UAR, confusion matrix)
  similarity  Pearson / Spearman of model cosine vs human style ratings
  score       cosine of every audio-caption pair (JSONL); --threshold splits kept/dropped
  captioning  the model's captions (JSONL with each clip's references) scored against every caption of the
              clip: BLEU-1..4, METEOR, ROUGE-L, CIDEr-D, SPICE, SPIDEr (pip install 'clsp[caption]'; METEOR,
              SPICE and PTB tokenisation run on Java; what cannot run is listed with why) + the CLAP score
  suite       a paper's tables in one run: `suite clap|clsp|fusionaudio|captioning --model M --root DIR`

--data is a CSV/TSV/JSONL table (relative audio paths resolve against its folder, or
--audio-root), for retrieval/score WebDataset shards ('/d/test-{0000..0009}.tar' or a
folder, for retrieval/score/captioning), or an official release folder as NAME:DIR:
  audiocaps:DIR  test.csv/val.csv, audio named by YouTube id (in DIR or DIR/test/)
  clotho:DIR     clotho_captions_evaluation.csv + evaluation/
  esc50:DIR      meta/esc50.csv + audio/          us8k:DIR   metadata/UrbanSound8K.csv + audio/foldN/
  ravdess:DIR    Actor_01..24/                    crema-d:DIR  AudioWAV/ + VideoDemographics.csv
(--split picks val/validation; --label-column picks emotion, gender, age, ... of the speech sets).
Several --model values are evaluated side by side in one report. Embeddings are
cached as .safetensors under --cache-dir (default <out>/.cache), keyed by model weights
and data, so a re-run skips the encoders.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from clsp.data.samples import read_samples
from clsp.data.table import is_table
from clsp.data.table_cache import default_cache_root, materialize
from clsp.data.urls import expand_urls, is_shard_spec
from clsp.errors import ArgumentParser, UserError, entry_point
from clsp.evaluation import report as rep
from clsp.evaluation.captioning import TOKENIZERS
from clsp.evaluation.catalog import fingerprint, fold_name, load_official, parse_official_spec, with_labels
from clsp.evaluation.clips import Clip, Skips, shard_clips
from clsp.evaluation.embed import EmbeddingCache
from clsp.evaluation.metrics import RetrievalRanks
from clsp.evaluation.official import OfficialSet
from clsp.evaluation.score import write_scores
from clsp.evaluation.suite import SUITES, run_suite
from clsp.evaluation.tables import (
    data_fingerprint,
    load_label_table,
    load_retrieval_table,
    load_similarity_table,
)
from clsp.evaluation.tasks import Evaluation, Outcome, evaluate
from clsp.evaluation.zeroshot import DEFAULT_TEMPLATES, check_templates, label_targets, read_labels
from clsp.loading import load_model

__all__ = ["main", "build_parser"]



def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="python -m clsp.eval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    tasks = parser.add_subparsers(dest="task", required=True, metavar="TASK")
    # Options of every task, the suite included: which models, where results and the cache go, how to encode.
    run = argparse.ArgumentParser(add_help=False)
    run.add_argument("--model", action="append", required=True,
                     help="model folder, hub id, clap:<path-or-id> or a training .ckpt (repeat to compare)")
    run.add_argument("--out", default=None, help="output folder (default eval/<task>, eval/suite-<name>)")
    run.add_argument("--cache-dir", default=None, help="embedding cache (default <out>/.cache)")
    run.add_argument("--no-cache", action="store_true", help="neither read nor write the embedding cache")
    run.add_argument("--batch-size", type=int, default=16, help="clips per encode_audio call")
    run.add_argument("--device", default=None, help="move the model here (e.g. cuda, cpu)")

    common = argparse.ArgumentParser(add_help=False, parents=[run])
    common.add_argument("--data", required=True, help="table (.csv/.tsv/.jsonl/.json), shards, or NAME:DIR")
    common.add_argument("--split", default=None, help="split of an official set (audiocaps: test/val; clotho: "
                        "evaluation/validation)")
    common.add_argument("--audio-root", default=None, help="resolve relative audio paths here, not the table's folder")
    common.add_argument("--audio-column", default=None)
    common.add_argument("--table-split", default=None,
                        help="split a table like training does (train=0.8,val=0.1,test=0.1) and evaluate --split "
                             "(default test) of it, through the table cache")
    common.add_argument("--split-column", default=None, help="or split it by this column's values")

    pairs = argparse.ArgumentParser(add_help=False)
    pairs.add_argument("--caption-column", action="append", default=None, help="caption column(s) of a table")
    pairs.add_argument("--captions", choices=("short", "long", "all"), default="all",
                       help="which caption kinds of a shard (or short_/long_ table columns) to use")

    r = tasks.add_parser("retrieval", parents=[common, pairs], help="text<->audio retrieval")
    r.add_argument("--chunk-size", type=int, default=None, help="query rows per similarity block")
    z = tasks.add_parser("zeroshot", parents=[common], help="zero-shot classification")
    z.add_argument("--label-column", default=None,
                   help="label column of a table, or attribute of ravdess:/crema-d: (emotion, gender, age, ...)")
    z.add_argument("--fold", default=None, help="evaluate only this fold of esc50:/us8k: (a model trained on the others)")
    z.add_argument("--labels", default=None, help="label list file (one per line or a JSON list); default: the table's")
    z.add_argument("--template", action="append", default=None,
                   help='prompt with {label}, repeat for an ensemble (default "This is a sound of {label}.")')
    s = tasks.add_parser("similarity", parents=[common], help="style similarity vs human scores")
    s.add_argument("--text-column", default=None)
    s.add_argument("--score-column", default=None)
    c = tasks.add_parser("score", parents=[common, pairs], help="cosine of every audio-caption pair")
    c.add_argument("--threshold", type=float, default=None, help="also write kept.jsonl / dropped.jsonl (e.g. 0.08)")
    g = tasks.add_parser("captioning", parents=[common, pairs], help="caption the clips and score the captions")
    g.add_argument("--num-beams", type=int, default=None, help="beam search width (default: the model's decoder.num_beams)")
    g.add_argument("--max-new-tokens", type=int, default=None, help="caption length limit (default: the model's)")
    g.add_argument("--caption-tokenizer", choices=TOKENIZERS, default="auto",
                   help="metric tokenisation: ptb (Java, as DCASE), simple (Python), auto (ptb when Java runs)")

    u = tasks.add_parser("suite", parents=[run], help="a named suite of official sets, with the published numbers beside")
    u.add_argument("suite", choices=tuple(SUITES), help=", ".join(SUITES))
    u.add_argument("--root", required=True, help="folder holding the downloaded sets (any depth up to 2)")
    u.add_argument("--ratings", default=None, help="style-ratings table (audio, description, score) for clsp")
    u.add_argument("--esc50-fold", default=None,
                   help="evaluate ESC-50 on this held-out fold only (for a model trained on the other folds)")
    return parser


def _load_model(spec: str, device: str | None):
    model = load_model(spec)
    if device is not None:
        model = model.to(device)
    return model.eval()


def _official(args) -> OfficialSet | None:
    """The OfficialSet named by --data NAME:DIR, or None for a table or shards."""
    spec = parse_official_spec(args.data)
    return None if spec is None else load_official(*spec, split=args.split)


def _official_info(found: OfficialSet) -> dict:
    return {"set": found.name, "dir": str(found.root), "split": found.split, "listed_clips": found.listed,
            "evaluated_clips": len(found.clips), "missing_clips": len(found.missing), "missing": found.missing,
            "notes": found.notes}


def _pair_input(args, found: OfficialSet | None) -> Evaluation:
    """Retrieval / score data: an official retrieval set, shards (streamed) or a table."""
    if found is not None:
        if found.task != "retrieval":
            raise UserError(f"{found.name} is a classification set", f"use `zeroshot`, not `{args.task}`")
        return Evaluation(args.task, lambda: found.clips, fingerprint(found), info={"official": _official_info(found)})
    options = {"captions": args.captions, "caption_columns": args.caption_column, "audio_column": args.audio_column}
    skips = Skips()
    if _through_cache(args):
        return _cached_table_input(args, skips)
    if is_shard_spec(args.data):
        urls = expand_urls(args.data)
        return Evaluation(args.task, lambda: shard_clips(urls, args.captions, skips), data_fingerprint(args.data,
                          **options), skips=skips)
    clips = load_retrieval_table(args.data, audio_column=args.audio_column, caption_columns=args.caption_column,
                                 captions=args.captions, audio_root=args.audio_root, skips=skips)
    return Evaluation(args.task, lambda: clips, data_fingerprint(args.data, clips, **options), skips=skips)


def _through_cache(args) -> bool:
    """Tables the direct reader cannot serve (Parquet with audio bytes, an audiofolder) or that are split
    go through the table cache, as in training: one reader path."""
    if not is_table(args.data):
        return False
    direct = Path(args.data).is_file() and Path(args.data).suffixes[-2:] != [".parquet"] and \
        not args.data.endswith(".parquet")
    return bool(args.table_split or args.split_column or not direct)


def _cached_table_input(args, skips: Skips) -> Evaluation:
    """Retrieval / score data from a table written to cached shards (its --split part when split)."""
    split = (args.split or "test") if (args.table_split or args.split_column) else None
    columns = {"audio_column": args.audio_column, "audio_root": args.audio_root,
               "short_columns": args.caption_column or ()}
    got = materialize(args.data, default_cache_root(), split=split, fractions=args.table_split,
                      split_column=args.split_column, **{k: v for k, v in columns.items() if v})
    skips.update(got.skipped)
    skips.examples += got.examples
    urls = expand_urls(str(got.folder))
    return Evaluation(args.task, lambda: shard_clips(urls, args.captions, skips),
                      data_fingerprint(str(got.folder), captions=args.captions), skips=skips,
                      info={"table_cache": str(got.folder)})


def _cached_label_clips(args, skips: Skips) -> list[Clip]:
    """Labelled clips of a table read through the table cache (its --split part when split): the label
    column travels as an attribute of each sample."""
    if not args.label_column:
        raise ValueError("a table read through the table cache needs --label-column")
    split = (args.split or "test") if (args.table_split or args.split_column) else None
    options = {"audio_column": args.audio_column, "audio_root": args.audio_root}
    got = materialize(args.data, default_cache_root(), split=split, fractions=args.table_split,
                      split_column=args.split_column, attribute_columns=[args.label_column],
                      short_columns=[args.label_column], **{k: v for k, v in options.items() if v})
    skips.update(got.skipped)
    skips.examples += got.examples
    return [Clip(key=str(s.key), audio=s.audio, sample_rate=s.sample_rate, frames=len(s.audio),
                 label=str(s.attributes[args.label_column]), line=i)
            for i, s in enumerate(read_samples(str(got.folder))) if s.attributes.get(args.label_column) is not None]


def _zeroshot_input(args, found: OfficialSet | None) -> Evaluation:
    """Zero-shot data: an official classification set (a label attribute, a fold) or a label table."""
    if found is not None:
        if found.task != "zeroshot":
            raise UserError(f"{found.name} is a retrieval set", "use `retrieval` (or `score`), not `zeroshot`")
        label = args.label_column or found.default_label
        indices, clips, names = with_labels(found, label)
        if args.fold is not None:
            fold = fold_name(args.fold)
            indices = [i for i, c in zip(indices, clips) if c.attributes.get("fold") == fold]
            if not indices:
                raise UserError(f"{found.name}: no clip in fold {args.fold}", "pick a fold the release has (--fold)")
        info = {"official": _official_info(found)}
        if args.fold is not None:
            info["protocol"] = f"held-out fold {args.fold} only"
        ev = Evaluation("zeroshot", lambda: found.clips, fingerprint(found), names, indices=indices, info=info,
                        templates=args.template or list(found.templates[label]),
                        labels=[found.clips[i].attributes[label] for i in indices])
    else:
        if is_shard_spec(args.data):
            raise ValueError(f"zeroshot needs a table (.csv/.tsv/.jsonl/.json), not shards: {args.data}")
        skips = Skips()
        clips = _cached_label_clips(args, skips) if _through_cache(args) else load_label_table(
            args.data, audio_column=args.audio_column, label_column=args.label_column, audio_root=args.audio_root,
            skips=skips)
        ev = Evaluation("zeroshot", lambda: clips, data_fingerprint(args.data, clips, audio_column=args.audio_column,
                        label_column=args.label_column), sorted({c.label for c in clips}),
                        args.template or list(DEFAULT_TEMPLATES), skips=skips)
    if args.labels:
        ev.names = read_labels(args.labels)
    check_templates(ev.templates)
    clips = list(ev.clips())
    label_targets([clips[i] for i in ev.indices] if ev.indices is not None else clips, ev.names)  # fail now
    ev.info["templates"] = ev.templates
    return ev


def _similarity_input(args) -> Evaluation:
    if is_shard_spec(args.data):
        raise ValueError(f"similarity needs a table (.csv/.tsv/.jsonl/.json), not shards: {args.data}")
    skips = Skips()
    clips = load_similarity_table(args.data, audio_column=args.audio_column, text_column=args.text_column,
                                  score_column=args.score_column, audio_root=args.audio_root, skips=skips)
    return Evaluation("similarity", lambda: clips, data_fingerprint(
        args.data, clips, audio_column=args.audio_column, text_column=args.text_column,
        score_column=args.score_column), skips=skips)


def load_input(args) -> Evaluation:
    """Read and check the task's data before any model is loaded, so bad input fails fast."""
    if args.task == "similarity":
        return _similarity_input(args)
    found = _official(args)
    if args.task == "zeroshot":
        return _zeroshot_input(args, found)
    ev = _pair_input(args, found)
    if args.task == "captioning":
        ev.options = {"tokenizer": args.caption_tokenizer, "num_beams": args.num_beams,
                      "max_new_tokens": args.max_new_tokens}
    return ev


def run_suite_command(args) -> dict:
    """`suite NAME`: every model on the suite's sets under --root; writes the report, returns its JSON."""
    out = Path(args.out or Path("eval") / f"suite-{args.suite}")
    cache = EmbeddingCache(None if args.no_cache else (args.cache_dir or out / ".cache"))
    payload = run_suite(args.suite, args.model, args.root, load_model=lambda spec: _load_model(spec, args.device),
                        cache=cache, batch_size=args.batch_size, ratings=args.ratings, esc50_fold=args.esc50_fold)
    payload["cache"] = {"hits": cache.hits, "misses": cache.misses}
    json_path, md_path = rep.write_suite_report(out, payload)
    for task, by_model in payload["results"].items():
        print(f"== {task}")
        print(rep.format_table(by_model))
    for line in payload["not_found"]:
        print(f"not evaluated: {line}")
    print(f"report: {md_path}  {json_path}")
    return json.loads(json_path.read_text(encoding="utf-8"))


def _after(args, spec: str, outcome: Outcome, ev: Evaluation, out: Path) -> list[str]:
    """A task's own outputs beside the table: score files, a confusion plot. Returns the plots written."""
    if args.task == "score":
        where = out if len(args.model) == 1 else out / rep.slug(spec)
        counts = write_scores(outcome.records, where, args.threshold)
        outcome.metrics |= counts
        if args.threshold is not None:
            print(f"{spec}: kept {counts['kept']} / dropped {counts['dropped']} of {counts['pairs']} pairs "
                  f"at threshold {args.threshold} -> {where}")
    if args.task == "captioning":
        where = out if len(args.model) == 1 else out / rep.slug(spec)
        write_scores(outcome.records, where, name="captions")
        for metric, why in outcome.metrics["unavailable"].items():
            print(f"{spec}: {metric} unavailable: {why}")
        print(f"{spec}: captions of {len(outcome.records)} clips -> {where / 'captions.jsonl'} "
              f"(tokenisation: {outcome.metrics['tokenization']})")
    if args.task == "zeroshot":
        name = f"confusion_{rep.slug(spec)}.png"
        out.mkdir(parents=True, exist_ok=True)
        rep.plot_confusion(outcome.metrics["confusion"], ev.names, out / name, title=spec)
        return [name]
    return []


def run(args) -> dict:
    """Run one task for every model; write the report; return report.json's content."""
    if args.task == "suite":
        return run_suite_command(args)
    out = Path(args.out or Path("eval") / args.task)
    cache = EmbeddingCache(None if args.no_cache else (args.cache_dir or out / ".cache"))
    ev = load_input(args)
    results: dict[str, dict] = {}
    ranks: dict[str, RetrievalRanks] = {}
    plots: list[str] = []
    for spec in args.model:
        model = _load_model(spec, args.device)
        outcome = evaluate(model, ev, cache=cache, batch_size=args.batch_size, desc=spec,
                           chunk_size=getattr(args, "chunk_size", None))
        plots += _after(args, spec, outcome, ev, out)
        results[spec] = outcome.metrics
        if outcome.ranks is not None:
            ranks[spec] = outcome.ranks
        del model
    if ranks:
        out.mkdir(parents=True, exist_ok=True)
        rep.plot_rank_histograms(ranks, out / "rank_histogram.png")
        plots.append("rank_histogram.png")
    extra = dict(ev.info)
    if ev.skips:
        extra["skipped"] = ev.skips.as_dict()
    extra["cache"] = {"hits": cache.hits, "misses": cache.misses}
    json_path, md_path = rep.write_report(out, args.task, args.data, results, extra, plots)
    print(rep.format_table(results))
    if ev.skips:
        print(f"skipped: {json.dumps(ev.skips.counts)}; e.g. {'; '.join(ev.skips.examples[:3])}")
    print(f"report: {md_path}  {json_path}")
    return json.loads(json_path.read_text(encoding="utf-8"))


@entry_point
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.batch_size < 1:
        raise UserError(f"--batch-size {args.batch_size} is out of range", "give an integer >= 1")
    for option in ("num_beams", "max_new_tokens"):
        value = getattr(args, option, None)
        if value is not None and value < 1:
            raise UserError(f"--{option.replace('_', '-')} {value} is out of range", "give an integer >= 1")
    if args.device is not None and args.device.startswith("cuda"):
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
