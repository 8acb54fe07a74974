"""`python -m clsp.shards SOURCE ... --out DIR`: write WebDataset shards from a dataset's own layout.

    python -m clsp.shards table captions.csv --short-columns caption --out /data/mine
    python -m clsp.shards fusionaudio --json fusionaudio.json --audio-dir /data/audioset --out /data/fa
    python -m clsp.shards fcaps --manifest cuts.jsonl.gz --audio-root /data/emilia --out /data/fcaps
    python -m clsp.shards laion --shards '/data/laion/{0..99}.tar' --out /data/laion_clsp
    python -m clsp.shards demo --out /data/demo

Inputs are dealt into chunks of `--samples-per-shard` clips in input order, and chunk i always
becomes `<prefix>-<i:06d>.tar` (for `laion`, input shard i becomes output shard i), whatever
`--workers` is. After each finished shard the main process records it in sizes.json and
manifest.jsonl (key -> shard, original id, audio source), so `--resume` keeps shards that are
on disk and recorded and redoes the rest. Clips that cannot be written are listed in
skipped.jsonl; report.json has the totals (written, skipped by reason, hours, clips/s).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np

from clsp import audio_io
from clsp.atomic import atomic_path, write_json_atomic, write_text_atomic
from clsp.data.schema import KeyAllocator, canonical_meta
from clsp.data.sources import Job, fcaps_jobs, fusionaudio_jobs, table_jobs
from clsp.data.writer import SIZES_FILE, ShardWriter, read_sizes
from clsp.errors import ArgumentParser, UserError, entry_point

MANIFEST_FILE = "manifest.jsonl"
REPORT_FILE = "report.json"
SKIPPED_FILE = "skipped.jsonl"


# -- work done in the worker processes ------------------------------------------------------------
def _write_empty_shard(path: Path) -> None:
    import tarfile

    with atomic_path(path) as tmp:
        tarfile.open(tmp, "w").close()


def _finish(writer: ShardWriter, name: str, start: float, skipped: Counter, problems: list, manifest: list) -> dict:
    stats = writer.close()
    if name not in stats.shards:  # every clip of the chunk failed: still leave no gap in the numbering
        _write_empty_shard(writer.out_dir / name)
    return {
        "shard": name,
        "count": stats.samples,
        "seconds": stats.seconds,
        "skipped": dict(skipped),
        "problems": problems,
        "manifest": manifest,
        "elapsed": time.perf_counter() - start,
    }


def _write_chunk(task: dict[str, Any]) -> dict[str, Any]:
    """Write the jobs of one chunk into one shard; bad clips are counted, never fatal."""
    start = time.perf_counter()
    writer = ShardWriter(
        task["out"], task["prefix"], samples_per_shard=1 << 62, codec=task["codec"],
        sample_rate=task["sample_rate"], start_index=task["index"], write_sizes=False,
    )  # fmt: skip
    name = writer.shard_name(task["index"])
    skipped: Counter[str] = Counter()
    problems, manifest = [], []
    for job in task["jobs"]:
        try:
            audio, rate = audio_io.load(job.audio_path, offset_s=job.offset, duration_s=job.duration)
            if audio.size == 0:
                raise _Skip("empty_audio", "no samples")
            if not np.isfinite(audio).all():
                raise _Skip("nan_audio", "NaN or Inf samples")
            try:
                key = writer.write(job.key, audio, rate, job.meta)
            except ValueError as exc:  # e.g. a codec that cannot encode this rate
                raise _Skip("encode_error", str(exc)) from exc
        except FileNotFoundError as exc:
            skipped["no_audio"] += 1
            problems.append({"id": job.id, "reason": "no_audio", "detail": str(exc)})
            continue
        except audio_io.AudioDecodeError as exc:
            skipped["decode_error"] += 1
            problems.append({"id": job.id, "reason": "decode_error", "detail": str(exc)})
            continue
        except _Skip as exc:
            skipped[exc.reason] += 1
            problems.append({"id": job.id, "reason": exc.reason, "detail": f"{job.audio_path}: {exc.detail}"})
            continue
        manifest.append({"key": key, "id": job.id, "shard": name, "audio": job.audio_path})
    return _finish(writer, name, start, skipped, problems, manifest)


def _reshard_laion(task: dict[str, Any]) -> dict[str, Any]:
    """Validate (decode) every sample of one input shard and write it in our format to one shard."""
    from clsp.data.samples import decode_raw
    from clsp.data.skips import SkipCounter
    from clsp.data.tar import iter_raw

    start = time.perf_counter()
    codec, target = task["codec"], task["sample_rate"]
    writer = ShardWriter(
        task["out"], task["prefix"], samples_per_shard=1 << 62, codec=codec,
        sample_rate=target, start_index=task["index"], write_sizes=False,
    )  # fmt: skip
    name = writer.shard_name(task["index"])
    url = task["url"]
    counter = SkipCounter(max_failure_rate=None)
    manifest = []
    for raw in iter_raw(url, counter):
        sample = decode_raw(raw, counter)
        if sample is None:
            continue
        meta = canonical_meta(sample.meta, source="laion")
        meta.setdefault("id", sample.key)
        ext = next((e for e in raw if not e.startswith("__") and e.rsplit(".", 1)[-1] == codec), None)
        seconds = sample.audio.shape[0] / sample.sample_rate
        if ext is not None and target in (None, sample.sample_rate):
            meta["duration"] = round(seconds, 4)
            key = writer.write_encoded(sample.key, raw[ext], meta, seconds=seconds)  # already in our codec
        else:
            key = writer.write(sample.key, sample.audio, sample.sample_rate, meta)
        manifest.append({"key": key, "id": meta["id"], "shard": name, "audio": f"{url}#{sample.key}"})
    skipped = Counter({k: v for k, v in counter.totals.items()})
    problems = [{"id": url, "reason": r, "detail": f"{n} sample(s)"} for r, n in skipped.items()]
    return _finish(writer, name, start, skipped, problems, manifest)


class _Skip(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


# -- the driver -----------------------------------------------------------------------------------
def _prepare_out(out: Path, prefix: str, resume: bool, overwrite: bool) -> dict[str, int]:
    """Finished shards to keep (resume), after checking we will not mix with an older run."""
    out.mkdir(parents=True, exist_ok=True)
    existing = sorted(out.glob(f"{prefix}-*.tar"))
    if overwrite:
        for path in [*existing, out / SIZES_FILE, out / MANIFEST_FILE]:
            path.unlink(missing_ok=True)
        return {}
    if not resume:
        if existing:
            raise FileExistsError(f"{out} already has {len(existing)} {prefix}-*.tar shards; use --resume or --overwrite")
        return {}
    return {name: n for name, n in read_sizes(out).items() if (out / name).is_file()}


def run(
    tasks: list[dict[str, Any]],
    worker: Callable[[dict[str, Any]], dict[str, Any]],
    *,
    out: Path,
    workers: int = 1,
    resume: bool = False,
    overwrite: bool = False,
    prefix: str = "shard",
    problems: Sequence[dict[str, str]] = (),
) -> dict[str, Any]:
    """Run chunk tasks (in a process pool when workers > 1), record each finished shard, report."""
    start = time.perf_counter()
    kept = _prepare_out(out, prefix, resume, overwrite)
    todo = [t for t in tasks if f"{prefix}-{t['index']:06d}.tar" not in kept]
    # Keep only the manifest lines of kept shards; the others are rewritten as shards finish.
    manifest_path = out / MANIFEST_FILE
    old = manifest_path.read_text().splitlines() if (resume and manifest_path.is_file()) else []
    lines = [ln for ln in old if ln.strip() and json.loads(ln).get("shard") in kept]
    write_text_atomic(manifest_path, "".join(ln + "\n" for ln in lines))
    sizes = dict(kept)
    write_json_atomic(out / SIZES_FILE, dict(sorted(sizes.items())))

    skipped: Counter[str] = Counter(p["reason"] for p in problems)
    all_problems = list(problems)
    written, seconds = 0, 0.0

    def record(result: dict[str, Any]) -> None:
        nonlocal written, seconds
        with manifest_path.open("a") as f:  # manifest first: a shard in sizes.json always has its lines
            f.writelines(json.dumps(m) + "\n" for m in result["manifest"])
        sizes[result["shard"]] = result["count"]
        write_json_atomic(out / SIZES_FILE, dict(sorted(sizes.items())))
        written += result["count"]
        seconds += result["seconds"]
        skipped.update(result["skipped"])
        all_problems.extend(result["problems"])

    if workers > 1 and len(todo) > 1:
        with ProcessPoolExecutor(max_workers=min(workers, len(todo))) as pool:
            for fut in as_completed([pool.submit(worker, t) for t in todo]):
                record(fut.result())
    else:
        for task in todo:
            record(worker(task))

    elapsed = time.perf_counter() - start
    write_text_atomic(out / SKIPPED_FILE, "".join(json.dumps(p) + "\n" for p in all_problems))
    report = {
        "written": written,
        "skipped": dict(sorted(skipped.items())),
        "hours": round(seconds / 3600, 6),
        "audio_seconds": round(seconds, 3),
        "clips_per_s": round(written / elapsed, 2) if elapsed > 0 else 0.0,
        "elapsed_s": round(elapsed, 2),
        "shards_written": len(todo),
        "shards_kept": len(kept),
        "samples_total": sum(sizes.values()),
        "out": str(out),
    }
    write_json_atomic(out / REPORT_FILE, report)
    return report


def _chunk_tasks(jobs: list[Job], args: argparse.Namespace) -> list[dict[str, Any]]:
    keys = KeyAllocator()
    for job in jobs:
        job.key = keys(job.id)
    n = args.samples_per_shard
    return [
        {"index": i // n, "jobs": jobs[i : i + n], **_common(args)}
        for i in range(0, len(jobs), n)
    ]


def _common(args: argparse.Namespace) -> dict[str, Any]:
    return {"out": str(args.out), "prefix": args.prefix, "codec": args.codec, "sample_rate": args.sample_rate}


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--out", type=Path, required=True, help="output shard folder")
    common.add_argument("--sample-rate", type=int, default=None, help="resample to this rate (default: keep)")
    common.add_argument("--codec", choices=sorted(audio_io.CODECS), default="flac")
    common.add_argument("--samples-per-shard", type=int, default=1000)
    common.add_argument("--prefix", default="shard", help="shard file name prefix")
    common.add_argument("--workers", type=int, default=1, help="processes, each writing its own shards")
    common.add_argument("--resume", action="store_true", help="keep finished shards, redo the rest")
    common.add_argument("--overwrite", action="store_true", help="delete existing shards in --out first")

    parser = ArgumentParser(prog="python -m clsp.shards", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="source", required=True)
    p = sub.add_parser("table", parents=[common], help="CSV/TSV/JSONL table of audio paths + captions")
    p.add_argument("table", type=Path)
    p.add_argument("--audio-column", default=None, help="default: first of audio/path/file/...")
    p.add_argument("--short-columns", default=None, help="comma-separated short (global) caption columns")
    p.add_argument("--long-columns", default=None, help="comma-separated long (fine-grained) caption columns")
    p.add_argument("--attribute-columns", default=None, help="comma-separated attribute columns")
    p.add_argument("--id-column", default=None)
    p.add_argument("--transcript-column", default=None)
    p.add_argument("--audio-root", type=Path, default=None, help="relative paths base (default: table folder)")
    p = sub.add_parser("fusionaudio", parents=[common], help="FusionAudio JSON + AudioSet audio folder")
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--audio-dir", type=Path, required=True)
    p = sub.add_parser("fcaps", parents=[common], help="FCaps/ParaSpeechCaps JSONL(.gz) or lhotse cuts")
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--audio-root", type=Path, default=None)
    p = sub.add_parser("laion", parents=[common], help="re-shard / validate LAION-CLAP style shards")
    p.add_argument("--shards", required=True, help="shard URLs (braces, '::' lists, folders)")
    p = sub.add_parser("demo", help="the procedural demo corpus (train/val/test)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sample-rate", type=int, default=16000)
    return parser


@entry_point
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.source == "demo":
        from clsp.data.demo import build_demo

        counts = build_demo(args.out, seed=args.seed, sample_rate=args.sample_rate)
        print(json.dumps({"out": str(args.out), "counts": counts}))
        return 0
    for flag, value, low in (("--samples-per-shard", args.samples_per_shard, 1), ("--workers", args.workers, 1),
                             ("--sample-rate", args.sample_rate, 1)):
        if value is not None and value < low:
            raise UserError(f"{flag} {value} is out of range", f"give an integer >= {low}")
    if args.out.exists() and not args.out.is_dir():
        raise UserError(f"--out {args.out} is a file", "give a folder for the shards")
    try:  # read the whole input first: a missing file or unusable table stops here, before --out is made
        if args.source == "table":
            jobs, problems = table_jobs(
                args.table,
                audio_column=args.audio_column,
                short_columns=_split(args.short_columns),
                long_columns=_split(args.long_columns),
                attribute_columns=_split(args.attribute_columns),
                id_column=args.id_column,
                transcript_column=args.transcript_column,
                audio_root=args.audio_root,
            )
        elif args.source == "fusionaudio":
            jobs, problems = fusionaudio_jobs(args.json, args.audio_dir)
        elif args.source == "fcaps":
            jobs, problems = fcaps_jobs(args.manifest, args.audio_root)
        else:
            from clsp.data.urls import expand_urls

            urls = expand_urls(args.shards)
    except UserError:
        raise
    except (FileNotFoundError, ValueError) as exc:
        raise UserError.from_exception(exc, f"see `python -m clsp.shards {args.source} --help`") from exc
    try:
        if args.source == "laion":
            tasks = [{"index": i, "url": u, **_common(args)} for i, u in enumerate(urls)]
            report = run(tasks, _reshard_laion, out=args.out, workers=args.workers, resume=args.resume,
                         overwrite=args.overwrite, prefix=args.prefix)
        else:
            report = run(_chunk_tasks(jobs, args), _write_chunk, out=args.out, workers=args.workers,
                         resume=args.resume, overwrite=args.overwrite, prefix=args.prefix, problems=problems)
    except FileExistsError as exc:  # shards of an earlier run in --out
        raise UserError.from_exception(exc) from exc
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
