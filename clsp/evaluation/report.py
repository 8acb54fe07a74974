"""Evaluation reports: a terminal table, report.json, report.md and PNG plots.

Plots use matplotlib's object API with the Agg canvas, so no pyplot global state and no
display are needed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from clsp.evaluation.metrics import RetrievalRanks

__all__ = ["scalar_metrics", "format_table", "write_report", "plot_rank_histograms", "plot_confusion", "slug"]


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
    json_path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    header, rows = _rows(results)
    md = [f"# clsp eval: {task}", "", f"Data: `{data}`", ""]
    md += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(r) + " |" for r in rows]
    for key, value in (extra or {}).items():
        md += ["", f"{key}: `{json.dumps(value)}`"]
    for p in plots or []:
        md += ["", f"![{p}]({p})"]
    md_path = out / "report.md"
    md_path.write_text("\n".join(md) + "\n", encoding="utf-8")
    return json_path, md_path


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


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
    fig.savefig(str(path), dpi=100)
    return Path(path)


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
    fig.savefig(str(path), dpi=100)
    return Path(path)
