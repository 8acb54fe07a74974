"""`python -m clsp.shards SOURCE ... --out DIR`: write WebDataset shards from a dataset's own layout.

    python -m clsp.shards table captions.csv --short-columns caption --out /data/mine
    python -m clsp.shards table clips.parquet --split train=0.8,val=0.1,test=0.1 --out /data/mine
    python -m clsp.shards fusionaudio --json fusionaudio.json --audio-dir /data/audioset --out /data/fa
    python -m clsp.shards fcaps --manifest cuts.jsonl.gz --audio-root /data/emilia --out /data/fcaps --part 3/8
    python -m clsp.shards laion --shards '/data/laion/{0..99}.tar' --out /data/laion_clsp
    python -m clsp.shards merge /data/fcaps
    python -m clsp.shards demo --out /data/demo

A table is a CSV/TSV/JSONL/JSON file (optionally gzipped), a Parquet file, folder or glob (Hugging
Face `datasets` Audio columns included), or an `audiofolder` (audio files + metadata.csv/.jsonl).
Audio may be anything libsndfile or FFmpeg (through PyAV) decodes; shards hold it re-encoded in
--codec (FLAC by default). Inputs are dealt into chunks of `--samples-per-shard` clips in input
order, and chunk i always becomes `<prefix>-<i:06d>.tar` (for `laion`, input shard i becomes
output shard i), whatever `--workers` is; `--resume` keeps recorded finished shards and redoes the
rest. Clips that cannot be written are listed in skipped.jsonl; report.json has the totals.
`--split` / `--split-column` write one folder per split (`DIR/train`, ...). `--part I/N` (default:
from a SLURM array) writes part I of N of the shards, named `<prefix>-pIIIofNNN-<i:06d>.tar`, with its
own sizes/manifest/report files; `merge DIR` combines them once all parts are done.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from clsp import audio_io
from clsp.data.demo import build_demo
from clsp.data.parts import resolve_part
from clsp.data.shard_run import merge_parts, run, write_jobs
from clsp.data.shard_tasks import reshard_laion
from clsp.data.sources import fcaps_jobs, fusionaudio_jobs, table_jobs
from clsp.data.splits import parse_fractions
from clsp.data.urls import expand_urls
from clsp.errors import ArgumentParser, UserError, entry_point


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--out", type=Path, required=True, help="output shard folder")
    common.add_argument("--sample-rate", type=int, default=None, help="resample to this rate (default: keep)")
    common.add_argument("--codec", choices=sorted(audio_io.CODECS), default="flac")
    common.add_argument("--samples-per-shard", type=int, default=1000)
    common.add_argument("--prefix", default=None, help="shard file name prefix (default: shard, or the split)")
    common.add_argument("--workers", type=int, default=1, help="processes, each writing its own shards")
    common.add_argument("--resume", action="store_true", help="keep finished shards, redo the rest")
    common.add_argument("--overwrite", action="store_true", help="delete existing shards in --out first")
    common.add_argument("--part", default=None, metavar="I/N",
                        help="write part I of N (from 0; default: the SLURM array task's, else the whole job)")

    parser = ArgumentParser(prog="python -m clsp.shards", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="source", required=True)
    p = sub.add_parser("table", parents=[common], help="table of audio + captions: CSV/TSV/JSONL, Parquet, audiofolder")
    p.add_argument("table", type=Path, help="a table file, a Parquet folder or glob, or an audiofolder")
    p.add_argument("--audio-column", default=None, help="default: a Parquet audio column, else audio/path/file/...")
    p.add_argument("--short-columns", default=None, help="comma-separated short (global) caption columns")
    p.add_argument("--long-columns", default=None, help="comma-separated long (fine-grained) caption columns")
    p.add_argument("--attribute-columns", default=None, help="comma-separated attribute columns")
    p.add_argument("--id-column", default=None)
    p.add_argument("--transcript-column", default=None)
    p.add_argument("--audio-root", type=Path, default=None, help="relative paths base (default: table folder)")
    p.add_argument("--split", default=None, metavar="NAME=FRACTION,...",
                   help="e.g. train=0.8,val=0.1,test=0.1: one folder per split, rows drawn by a hash of their audio")
    p.add_argument("--split-column", default=None, help="a column naming each row's split")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the --split hash")
    p = sub.add_parser("fusionaudio", parents=[common], help="FusionAudio JSON + AudioSet audio folder")
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--audio-dir", type=Path, required=True)
    p = sub.add_parser("fcaps", parents=[common], help="FCaps/ParaSpeechCaps JSONL(.gz) or lhotse cuts")
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--audio-root", type=Path, default=None)
    p = sub.add_parser("laion", parents=[common], help="re-shard / validate LAION-CLAP style shards")
    p.add_argument("--shards", required=True, help="shard URLs (braces, '::' lists, folders)")
    p = sub.add_parser("merge", help="combine the per-part files of a finished --part job into one set")
    p.add_argument("out", type=Path, help="the folder the parts wrote (or its split folders' parent)")
    p = sub.add_parser("demo", help="the procedural demo corpus (train/val/test)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sample-rate", type=int, default=16000)
    return parser


def _check(args: argparse.Namespace) -> dict:
    """Range checks; the part and split options parsed (a bad one is a one-line UserError)."""
    for flag, value, low in (("--samples-per-shard", args.samples_per_shard, 1), ("--workers", args.workers, 1),
                             ("--sample-rate", args.sample_rate, 1)):
        if value is not None and value < low:
            raise UserError(f"{flag} {value} is out of range", f"give an integer >= {low}")
    if args.out.exists() and not args.out.is_dir():
        raise UserError(f"--out {args.out} is a file", "give a folder for the shards")
    split, column = getattr(args, "split", None), getattr(args, "split_column", None)
    if split and column:
        raise UserError("--split and --split-column both given", "use one of them")
    try:
        return {"part": resolve_part(args.part), "fractions": parse_fractions(split) if split else None}
    except ValueError as exc:
        raise UserError.from_exception(exc) from exc


def _list_jobs(args: argparse.Namespace) -> tuple[list, list]:
    """(jobs, problems) of a chunked source, or (shard URLs, []) for laion."""
    if args.source == "table":
        return table_jobs(
            args.table,
            audio_column=args.audio_column,
            short_columns=_split(args.short_columns),
            long_columns=_split(args.long_columns),
            attribute_columns=_split(args.attribute_columns),
            id_column=args.id_column,
            transcript_column=args.transcript_column,
            audio_root=args.audio_root,
            split_column=args.split_column,
        )
    if args.source == "fusionaudio":
        return fusionaudio_jobs(args.json, args.audio_dir)
    if args.source == "fcaps":
        return fcaps_jobs(args.manifest, args.audio_root)

    return expand_urls(args.shards), []


def _write(args: argparse.Namespace, jobs: list, problems: list, part, fractions) -> dict:
    options = {"settings": {"codec": args.codec, "sample_rate": args.sample_rate}, "part": part,
               "workers": args.workers, "resume": args.resume, "overwrite": args.overwrite,
               "progress": sys.stderr.isatty()}  # fmt: skip
    if args.source == "laion":
        tasks = [{"index": i, "url": u} for i, u in enumerate(jobs)]
        return run(tasks, reshard_laion, out=args.out, prefix=args.prefix or "shard", **options)
    reports = write_jobs(jobs, problems, args.out, samples_per_shard=args.samples_per_shard, fractions=fractions,
                         by_column=bool(getattr(args, "split_column", None)), seed=getattr(args, "split_seed", 0),
                         prefix=args.prefix, **options)  # fmt: skip
    return reports[""] if list(reports) == [""] else reports


@entry_point
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.source == "demo":

        counts = build_demo(args.out, seed=args.seed, sample_rate=args.sample_rate)
        print(json.dumps({"out": str(args.out), "counts": counts}))
        return 0
    if args.source == "merge":
        try:
            print(json.dumps(merge_parts(args.out), indent=1))
        except (FileNotFoundError, ValueError) as exc:
            raise UserError.from_exception(exc) from exc
        return 0
    checked = _check(args)
    try:  # read the whole input first: a missing file or unusable table stops here, before --out is made
        jobs, problems = _list_jobs(args)
    except UserError:
        raise
    except (FileNotFoundError, ValueError) as exc:
        raise UserError.from_exception(exc, f"see `python -m clsp.shards {args.source} --help`") from exc
    try:
        report = _write(args, jobs, problems, **checked)
    except FileExistsError as exc:  # shards of an earlier run in --out
        raise UserError.from_exception(exc) from exc
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
