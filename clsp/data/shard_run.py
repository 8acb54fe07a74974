"""Driving a shard-writing job: tasks -> worker processes -> a shard folder with its bookkeeping files.

Jobs are dealt into chunks of `samples_per_shard` clips in input order, and chunk i always becomes
`<prefix>-<i:06d>.tar` (for `laion`, input shard i becomes output shard i), whatever `workers` is.
After each finished shard the main process records it in sizes.json and manifest.jsonl (key ->
shard, original id, audio source), so `resume` keeps shards that are on disk and recorded and redoes
the rest. Clips that cannot be written are listed in skipped.jsonl; report.json has the totals
(written, skipped by reason, hours, clips/s). With a `Part` (clsp.data.parts) the process does only
its share of the tasks and keeps its own copy of each of those files; `merge_parts` combines them.
A split table (clsp.data.splits) becomes one such folder per split.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from tqdm import tqdm

from clsp.atomic import write_json_atomic, write_text_atomic
from clsp.data.parts import WHOLE, Part
from clsp.data.schema import KeyAllocator
from clsp.data.shard_tasks import write_chunk
from clsp.data.sources import Job
from clsp.data.splits import split_jobs, split_problems
from clsp.data.writer import SIZES_FILE, read_sizes

__all__ = ["MANIFEST_FILE", "REPORT_FILE", "SKIPPED_FILE", "chunk_tasks", "count_skipped", "merge_parts", "run",
           "write_jobs"]

MANIFEST_FILE = "manifest.jsonl"
REPORT_FILE = "report.json"
SKIPPED_FILE = "skipped.jsonl"
BOOKKEEPING = (SIZES_FILE, MANIFEST_FILE, SKIPPED_FILE, REPORT_FILE)


def _shards(out: Path, prefix: str) -> dict[Path, Part | None]:
    """The folder's shards of `prefix`: path -> the part that wrote it (None: a whole run)."""
    name = re.compile(rf"{re.escape(prefix)}-(?:p(\d+)of(\d+)-)?\d{{6}}\.tar")
    found = {}
    for path in out.iterdir():
        m = name.fullmatch(path.name)
        if m:
            found[path] = Part(int(m.group(1)), int(m.group(2))) if m.group(1) else None
    return found


def prepare_out(out: Path, prefix: str, part: Part, resume: bool, overwrite: bool) -> dict[str, int]:
    """Finished shards to keep (resume), after checking we will not mix with an older run.

    One folder holds one layout: a whole run's shards, or those of the parts of one --part I/N.
    `overwrite` deletes this part's shards and files and any other layout's, never a sibling part's."""
    out.mkdir(parents=True, exist_ok=True)
    shards = _shards(out, prefix)
    layout = None if part.whole else part.count
    foreign = {p: q for p, q in shards.items() if (q.count if q else None) != layout}
    own = [p for p, q in shards.items() if p not in foreign and (q is None or q.index == part.index)]
    if overwrite:
        stale = {part} | {q or WHOLE for q in foreign.values()}
        files = [out / q.file(f) for q in stale for f in (SIZES_FILE, MANIFEST_FILE)]
        for path in [*own, *foreign, *files]:
            path.unlink(missing_ok=True)
        return {}
    if foreign:
        other = next(iter(foreign))
        raise FileExistsError(f"{out} holds {prefix} shards of another layout ({other.name}) than --part {part}; "
                              "use another --out, or --overwrite")
    if own and not resume:
        raise FileExistsError(f"{out} already has {len(own)} {part.prefix(prefix)}-*.tar shards; use --resume or --overwrite")
    return {n: c for n, c in read_sizes(out, part.file(SIZES_FILE)).items() if (out / n).is_file()}


def assign_keys(jobs: Sequence[Job]) -> None:
    """Unique sanitised shard keys, in input order over the whole job (so every part agrees)."""
    keys = KeyAllocator()
    for job in jobs:
        job.key = keys(job.id)


def chunk_tasks(jobs: Sequence[Job], samples_per_shard: int) -> list[dict[str, Any]]:
    """Task i holds jobs [i * n, (i + 1) * n)."""
    n = samples_per_shard
    return [{"index": i // n, "jobs": list(jobs[i : i + n])} for i in range(0, len(jobs), n)]


def run(
    tasks: list[dict[str, Any]],
    worker: Callable[[dict[str, Any]], dict[str, Any]],
    *,
    out: Path,
    settings: Mapping[str, Any],
    prefix: str = "shard",
    part: Part = WHOLE,
    workers: int = 1,
    resume: bool = False,
    overwrite: bool = False,
    problems: Sequence[dict[str, str]] = (),
    progress: bool = False,
) -> dict[str, Any]:
    """Run this part's tasks (in a process pool when workers > 1), record each finished shard, report.

    `settings` (codec, sample_rate) go to every task; listing `problems` are reported by part 0.
    skipped.jsonl and the report's "skipped" cover the folder's shards, kept ones included; "written"
    counts this run's clips, "samples_total" all of them."""
    start = time.perf_counter()
    kept = prepare_out(out, prefix, part, resume, overwrite)
    mine = [t for t in tasks if part.owns(t["index"])]
    shard_prefix = part.prefix(prefix)
    todo = [{**t, **settings, "out": str(out), "prefix": shard_prefix} for t in mine
            if f"{shard_prefix}-{t['index']:06d}.tar" not in kept]  # fmt: skip
    files = {name: out / part.file(name) for name in BOOKKEEPING}
    problems = [*(problems if part.index == 0 else []), *_restart_files(files, kept, resume)]
    skipped, sizes, written, seconds = count_skipped(problems), dict(kept), 0, 0.0
    bar, units = _progress_bar(todo, out, progress)
    with bar:
        for result in _results(todo, worker, workers):
            with files[MANIFEST_FILE].open("a") as f:  # manifest first: a shard in sizes.json always has its lines
                f.writelines(json.dumps(m) + "\n" for m in result["manifest"])
            sizes[result["shard"]] = result["count"]
            write_json_atomic(files[SIZES_FILE], dict(sorted(sizes.items())))
            written += result["count"]
            seconds += result["seconds"]
            skipped.update(count_skipped(result["problems"]))
            problems.extend(result["problems"])
            bar.update(units[result["shard"]])

    elapsed = time.perf_counter() - start
    write_text_atomic(files[SKIPPED_FILE], "".join(json.dumps(p) + "\n" for p in problems))
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
        "part": str(part),
        "tasks_total": len(tasks),
        "tasks_in_part": len(mine),
        "out": str(out),
    }
    write_json_atomic(files[REPORT_FILE], report)
    return report


def _progress_bar(todo: list[dict[str, Any]], out: Path, show: bool) -> tuple[tqdm, dict[str, int]]:
    """A bar over the clips (laion: the shards) to write, and how far each shard moves it."""
    units = {f"{t['prefix']}-{t['index']:06d}.tar": len(t.get("jobs", ())) or 1 for t in todo}
    bar = tqdm(total=sum(units.values()), unit="clip" if any("jobs" in t for t in todo) else "shard",
               desc=f"writing {out.name}", file=sys.stderr, disable=not show, leave=False)  # fmt: skip
    return bar, units


def _results(todo: list[dict[str, Any]], worker: Callable, workers: int) -> Iterator[dict[str, Any]]:
    """Each task's result as it finishes (from a process pool when workers > 1)."""
    if workers > 1 and len(todo) > 1:
        with ProcessPoolExecutor(max_workers=min(workers, len(todo))) as pool:
            for fut in as_completed([pool.submit(worker, t) for t in todo]):
                yield fut.result()
    else:
        for task in todo:
            yield worker(task)


def _restart_files(files: Mapping[str, Path], kept: Mapping[str, int], resume: bool) -> list[dict[str, Any]]:
    """Cut the manifest and sizes file back to the kept shards; returns the kept shards' skip lines."""
    lines = _kept_lines(files[MANIFEST_FILE], kept) if resume else []
    write_text_atomic(files[MANIFEST_FILE], "".join(json.dumps(m) + "\n" for m in lines))
    write_json_atomic(files[SIZES_FILE], dict(sorted(kept.items())))
    return _kept_lines(files[SKIPPED_FILE], kept) if resume else []


def _kept_lines(path: Path, kept: Mapping[str, int]) -> list[dict[str, Any]]:
    """The JSON lines of a manifest or skip list that belong to kept shards."""
    lines = path.read_text().splitlines() if path.is_file() else []
    return [rec for ln in lines if ln.strip() and (rec := json.loads(ln)).get("shard") in kept]


def count_skipped(problems: Sequence[Mapping[str, Any]]) -> Counter[str]:
    """Skipped clips by reason (a line may stand for several: a damaged LAION shard's "count")."""
    counts: Counter[str] = Counter()
    for p in problems:
        counts[p["reason"]] += int(p.get("count", 1))
    return counts


def write_jobs(
    jobs: list[Job],
    problems: Sequence[dict[str, str]],
    out: Path,
    *,
    samples_per_shard: int,
    fractions: Mapping[str, float] | None = None,
    by_column: bool = False,
    seed: int = 0,
    prefix: str | None = None,
    **run_options: Any,
) -> dict[str, dict[str, Any]]:
    """Jobs -> shards in `out` ({"": report}), or with a split (`fractions`, or each job's `split`
    when `by_column`) one folder `out/<split>` per split with shards named `<split>-...` ({split: report}).
    Rows with no split value are listed in `out/skipped.jsonl`."""
    assign_keys(jobs)
    if not fractions and not by_column:
        tasks = chunk_tasks(jobs, samples_per_shard)
        return {"": run(tasks, write_chunk, out=out, prefix=prefix or "shard", problems=problems, **run_options)}
    by_split = split_jobs(jobs, fractions, seed)
    bad = split_problems(problems, fractions, seed)
    reports = {}
    for name in sorted(set(by_split) | (set(bad) - {""})):
        tasks = chunk_tasks(by_split.get(name, []), samples_per_shard)
        reports[name] = run(tasks, write_chunk, out=out / name, prefix=prefix or name, problems=bad.get(name, []),
                            **run_options)  # fmt: skip
    if bad.get(""):
        write_text_atomic(out / SKIPPED_FILE, "".join(json.dumps(p) + "\n" for p in bad[""]))
    return reports


def merge_parts(out: Path) -> dict[str, Any]:
    """Combine the per-part files of a finished `--part I/N` job in `out` into sizes.json, manifest.jsonl,
    skipped.jsonl and report.json; a folder of split folders merges each. Returns the combined report
    ({split: report} for split folders). A missing or unfinished part is a ValueError naming it."""
    out = Path(out)
    pattern = re.compile(r"report-p\d+of(\d+)\.json")
    counts = {int(m.group(1)) for p in out.glob("report-p*of*.json") if (m := pattern.fullmatch(p.name))}
    if not counts:
        subs = sorted(d for d in out.iterdir() if d.is_dir() and any(d.glob("report-p*of*.json"))) if out.is_dir() else []
        if subs:
            return {d.name: merge_parts(d) for d in subs}
        raise ValueError(f"{out} has no part reports (report-pIIIofNNN.json); write it with --part I/N first")
    if len(counts) > 1:
        raise ValueError(f"{out} mixes --part layouts ({sorted(counts)} parts); merge one layout per folder")
    count = counts.pop()
    parts = [Part(i, count) for i in range(count)]
    sizes, manifest, skipped = {}, [], []
    for part in parts:
        report_path = out / part.file(REPORT_FILE)
        if not report_path.is_file():
            raise ValueError(f"part {part} has not finished in {out} (no {report_path.name}); run it, then merge")
        report = json.loads(report_path.read_text())
        own = read_sizes(out, part.file(SIZES_FILE))
        missing = [n for n in own if not (out / n).is_file()]
        if len(own) != report["tasks_in_part"] or missing:
            raise ValueError(f"part {part} in {out} is incomplete ({len(own) - len(missing)} of "
                             f"{report['tasks_in_part']} shards); rerun it with --resume, then merge")
        sizes.update(own)
        manifest += _kept_lines(out / part.file(MANIFEST_FILE), own)
        skipped += [json.loads(ln) for ln in (out / part.file(SKIPPED_FILE)).read_text().splitlines() if ln.strip()]
    write_json_atomic(out / SIZES_FILE, dict(sorted(sizes.items())))
    write_text_atomic(out / MANIFEST_FILE, "".join(json.dumps(m) + "\n" for m in manifest))
    write_text_atomic(out / SKIPPED_FILE, "".join(json.dumps(p) + "\n" for p in skipped))
    merged = {
        "written": sum(sizes.values()),
        "skipped": dict(sorted(count_skipped(skipped).items())),
        "samples_total": sum(sizes.values()),
        "shards": len(sizes),
        "parts": len(parts),
        "out": str(out),
    }
    write_json_atomic(out / REPORT_FILE, merged)
    return merged
