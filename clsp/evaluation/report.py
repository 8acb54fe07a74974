"""Evaluation reports: a terminal table, report.json, report.md and PNG plots.

Plots use matplotlib's object API with the Agg canvas, so no pyplot global state and no
display are needed. Every file is written under a temporary name and renamed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from clsp.atomic import atomic_path, write_text_atomic
from clsp.evaluation.metrics import RetrievalRanks

__all__ = [
    "scalar_metrics", "format_table", "write_report", "write_suite_report", "plot_rank_histograms",
    "plot_confusion", "plot_summary", "slug",
]


def slug(name: str, max_len: int = 60) -> str:
    """A file-name-safe version of a model spec."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_.")
    return s[-max_len:] or "model"


def scalar_metrics(metrics: dict) -> dict[str, float]:
    """The numeric entries of a metrics dict (lists/dicts such as the confusion matrix left out)."""
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    return str(v) if isinstance(v, int) else f"{v:.4g}" if abs(v) < 1 else f"{v:.2f}"


def _rows(results: dict[str, dict]) -> tuple[list[str], list[list[str]]]:
    names = list(dict.fromkeys(k for m in results.values() for k in scalar_metrics(m)))
    rows = [[n] + [_fmt(scalar_metrics(m).get(n)) for m in results.values()] for n in names]
    return ["metric", *results], rows


def format_table(results: dict[str, dict]) -> str:
    """Metrics as rows, models as columns, aligned for a terminal."""
    header, rows = _rows(results)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return "\n".join([line(header), "  ".join("-" * w for w in widths), *map(line, rows)])


def write_report(
    out_dir: str | Path, task: str, data: str, results: dict[str, dict], extra: dict | None = None,
    plots: list[str] | None = None,
) -> tuple[Path, Path]:
    """Write report.json (everything) and report.md (the table and plots); returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"task": task, "data": data, "models": results, **(extra or {})}
    json_path = out / "report.json"
    write_text_atomic(json_path, json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    header, rows = _rows(results)
    md = [f"# clsp eval: {task}", "", f"Data: `{data}`", ""]
    md += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(r) + " |" for r in rows]
    for key, value in (extra or {}).items():
        md += ["", f"{key}: `{json.dumps(value)}`"]
    for p in plots or []:
        md += ["", f"![{p}]({p})"]
    md_path = out / "report.md"
    write_text_atomic(md_path, "\n".join(md) + "\n")
    return json_path, md_path


def _figure(width: float, height: float):

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(str(tmp), dpi=100, format=path.suffix.lstrip(".") or "png")
    return path


def plot_rank_histograms(ranks: dict[str, RetrievalRanks], path: str | Path, max_rank: int = 50) -> Path:
    """Histograms of the t2a ranks and a2t best ranks per model; ranks above `max_rank` share a bin."""
    fig = _figure(10, 4)
    bins = np.arange(1, max_rank + 3) - 0.5
    for ax, direction in zip(fig.subplots(1, 2), ("t2a", "a2t")):
        for name, r in ranks.items():
            values = (r.t2a if direction == "t2a" else r.a2t_best).numpy().clip(max=max_rank + 1)
            ax.hist(values, bins=bins, histtype="step", label=name, density=True)
        ax.set_title(f"{direction} rank (best caption)" if direction == "a2t" else "t2a rank")
        ax.set_xlabel(f"rank ({max_rank + 1} = more than {max_rank})")
        ax.set_ylabel("fraction of queries")
        ax.legend(fontsize="small")
    fig.tight_layout()
    return _save(fig, path)


def plot_confusion(confusion: list[list[int]], names: list[str], path: str | Path, title: str = "") -> Path:
    """A row-normalised confusion matrix (rows: true class, columns: predicted)."""
    cm = np.asarray(confusion, dtype=np.float64)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    size = min(4 + 0.35 * len(names), 30)
    fig = _figure(size, size)
    ax = fig.subplots()
    image = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046)
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize="small")
    ax.set_yticks(range(len(names)), names, fontsize="small")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if len(names) <= 20:
        for i, j in zip(*np.nonzero(cm)):
            ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize="x-small",
                    color="white" if norm[i, j] > 0.5 else "black")
    fig.tight_layout()
    return _save(fig, path)


# -- suite reports ----------------------------------------------------------------------------

# The columns of a suite table, per task kind; report.json has every metric.
HEADLINE = {
    "retrieval": ("t2a/R@1", "t2a/R@5", "t2a/R@10", "t2a/mAP@10", "t2a/medR", "a2t/R@1", "a2t/R@5", "a2t/R@10",
                  "a2t/mAP@10", "a2t/mAP@10_laion", "a2t/medR", "num_clips"),
    "zeroshot": ("WA", "UAR", "WA_fold_mean", "num_clips"),
    "similarity": ("pearson", "spearman", "num_pairs"),
    "captioning": ("BLEU_1", "BLEU_4", "METEOR", "ROUGE_L", "CIDEr-D", "SPICE", "SPIDEr", "clap_score", "num_clips"),
}
# The one number per task the summary plot shows (CIDEr-D for captioning: it needs no Java, so it is always there).
_SUMMARY = {"retrieval": "t2a/R@1", "zeroshot": "WA", "similarity": "pearson", "captioning": "CIDEr-D"}


def _kind(metrics: dict) -> str:
    if "tokenization" in metrics:
        return "captioning"
    return "retrieval" if "t2a/R@1" in metrics else "similarity" if "pearson" in metrics else "zeroshot"


def _suite_table(models: dict[str, dict], published: list[dict]) -> list[str]:
    kind = _kind(next(iter(models.values())))
    cols = [c for c in HEADLINE[kind] if any(c in m for m in models.values())]
    lines = ["| model | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for spec, m in models.items():
        lines.append(f"| `{spec}` (this run) | " + " | ".join(_fmt(m.get(c)) for c in cols) + " |")
    for p in published:
        name = f"{p['paper']}: {p['model']}" + (f" ({p['setting']})" if p["setting"] else "")
        lines.append(f"| {name} | " + " | ".join(_fmt(p["metrics"].get(c)) for c in cols) + " |")
    return lines


def write_suite_report(out_dir: str | Path, payload: dict) -> tuple[Path, Path]:
    """report.json, report.md and the plots of a `run_suite` payload; returns (json, md) paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ranks = payload.get("ranks", {})
    plots: dict[str, list[str]] = {}
    for task, by_model in ranks.items():
        name = f"rank_histogram_{slug(task)}.png"
        plot_rank_histograms(by_model, out / name)
        plots.setdefault(task, []).append(name)
    for task, by_model in payload["results"].items():
        for spec, m in by_model.items():
            if "confusion" in m:
                name = f"confusion_{slug(task)}_{slug(spec)}.png"
                plot_confusion(m["confusion"], m["class_names"], out / name, title=f"{task}: {spec}")
                plots.setdefault(task, []).append(name)
    summary = [t for t, by_model in payload["results"].items() if by_model]
    if summary:
        plot_summary(payload, out / "summary.png")
    for task, by_model in payload.get("captions", {}).items():  # each model's captions, beside the report
        for spec, records in by_model.items():
            name = f"captions_{slug(task)}_{slug(spec)}.jsonl"
            write_text_atomic(out / name, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    body = {k: v for k, v in payload.items() if k not in ("ranks", "captions")}
    json_path = out / "report.json"
    write_text_atomic(json_path, json.dumps(body, indent=2, ensure_ascii=False) + "\n")

    md = [f"# clsp eval suite: {payload['suite']}", "", f"Root: `{payload['root']}`", ""]
    md += ["Models: " + ", ".join(f"`{m}`" for m in payload["models"]), ""]
    if summary:
        md += ["![summary](summary.png)", ""]
    if payload["not_found"]:
        md += ["## Not evaluated", ""] + [f"- {line}" for line in payload["not_found"]] + [""]
    for task, by_model in payload["results"].items():
        if not by_model:
            continue
        dataset = task.split("/")[0]
        info = payload["sets"].get(dataset)
        md += [f"## {task}", ""]
        if info is not None:
            split = f" (split {info['split']})" if info["split"] else ""
            md += [f"Data: `{info['dir']}`{split}: {info['evaluated']} of {info['listed']} listed clips evaluated, "
                   f"{info['missing_count']} missing."]
            md += [f"Note: {n}" for n in info["notes"]]
        protocol = payload["protocols"].get(task, {})
        if "heldout_fold" in protocol:
            md += [f"Evaluated on held-out fold {protocol['heldout_fold']} only (for a model trained on the other "
                   "folds); published rows are 5-fold means."]
        md += [f"Protocol: {k} = `{json.dumps(v)}`" for k, v in protocol.items()]
        md += [""] + _suite_table(by_model, payload["published"].get(task, [])) + [""]
        md += [f"`{spec}`: {metric} unavailable: {why}" for spec, m in by_model.items()
               for metric, why in m.get("unavailable", {}).items()]
        if info is not None and info["missing"] and task == next(t for t in payload["results"] if t.startswith(dataset)):
            md += [f"<details><summary>{info['missing_count']} missing clips</summary>", ""]
            md += [f"- {line}" for line in info["missing"]] + ["", "</details>", ""]
        md += [f"![{p}]({p})" for p in plots.get(task, [])] + [""]
    md_path = out / "report.md"
    write_text_atomic(md_path, "\n".join(md) + "\n")
    return json_path, md_path


def plot_summary(payload: dict, path: str | Path) -> Path:
    """One bar group per task: each model's headline number beside the published ones."""
    tasks = [t for t, by_model in payload["results"].items() if by_model]
    fig = _figure(max(4.0, 3.2 * len(tasks)), 4)
    axes = np.atleast_1d(fig.subplots(1, len(tasks)))
    for ax, task in zip(axes, tasks):
        by_model = payload["results"][task]
        metric = _SUMMARY[_kind(next(iter(by_model.values())))]
        names = [f"{slug(spec, 24)}" for spec in by_model]
        values = [by_model[spec].get(metric, 0.0) for spec in by_model]
        for p in payload["published"].get(task, []):
            if metric in p["metrics"]:
                names.append(f"{p['paper'].split(' (')[0]}\n{p['model'][-24:]}")
                values.append(p["metrics"][metric])
        colors = ["tab:blue"] * len(by_model) + ["tab:gray"] * (len(values) - len(by_model))
        ax.bar(range(len(values)), values, color=colors)
        ax.set_xticks(range(len(values)), names, rotation=90, fontsize="x-small")
        ax.set_title(f"{task}\n{metric}", fontsize="small")
    fig.tight_layout()
    return _save(fig, path)
