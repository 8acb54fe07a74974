"""The run's progress line: whole run (step / max_steps), ETA, short metric names, one terminal line wide;
plain lines once per log interval when the output is not a terminal."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest

from clsp.training import progress
from clsp.training.compose import compose_config, typed_config
from clsp.training.progress import ModelSize, RunProgressBar, metric_items, render

METRICS = {"v_num": 3, "loss": 2.3456, "global": 1.25, "token": 0.5, "multipositive": 0.731, "pad_eff": 0.79,
           "val_mAP@10": 12.34, "skipped": 3.0, "samples_per_s": 1234.5}


def test_metric_items_are_short_and_in_order():
    assert metric_items(METRICS) == ["1,234 samples/s", "loss 2.35", "global 1.25", "token 0.500", "multipositive 0.731",
                                     "mAP@10 12.3", "pad 0.790", "skip 3"]
    assert metric_items({"loss": 4.0, "data/padding_efficiency": 1.0}) == ["loss 4.00", "padding_efficiency 1.00"]


@pytest.mark.parametrize("width", [80, 60, 40, 200])
def test_the_line_fits_the_terminal(width):
    items = metric_items(METRICS)
    line = render(120, 800, 161.0, 913.0, items, width=width)
    assert len(line) <= width - 1, line
    assert line.startswith("step 120/800 ") and "15% 02:41<15:13" in line
    kept = _items(line.partition(" | ")[2], items)
    assert kept == items[: len(kept)], "the first items, whole"
    assert len(kept) == {80: 2, 60: 1, 40: 0, 200: len(items)}[width]


def _items(shown: str, items: list[str]) -> list[str]:
    kept, rest = [], shown
    for item in items:
        if rest.startswith(item):
            kept.append(item)
            rest = rest[len(item):].lstrip()
    assert not rest, f"a cut item: {rest!r}"
    return kept


def test_plain_line_has_no_bar_and_every_item():
    line = render(60, 60, 331.0, 0.0, ["loss 3.96", "mAP@10 13.4"])
    assert line == "step 60/60 100% 05:31<00:00 | loss 3.96 mAP@10 13.4"
    assert render(7, None, 5.0, None, []) == "step 7 00:05"  # an unbounded run: no total, no ETA


def _trainer(**kw):
    base = dict(global_step=0, max_steps=20, log_every_n_steps=5, progress_bar_metrics={"loss": 1.5},
                sanity_checking=False, state=SimpleNamespace(fn="fit"), estimated_stepping_batches=20, num_val_batches=[4])
    return SimpleNamespace(**base | kw)


def _run(bar: RunProgressBar, trainer, steps: int) -> None:
    bar._trainer = trainer
    bar.on_train_start(trainer, None)
    for step in range(1, steps + 1):
        trainer.global_step = step
        bar.on_train_batch_end(trainer, None, None, None, step - 1)
    for batch in range(4):
        bar.on_validation_batch_end(trainer, None, None, None, batch)
    bar.on_validation_end(trainer, None)
    bar.on_train_end(trainer, None)


def test_plain_lines_once_per_log_interval():
    out = io.StringIO()
    _run(RunProgressBar(stream=out), _trainer(), 20)
    lines = out.getvalue().splitlines()
    assert [ln.split(" ")[1] for ln in lines[:-1]] == ["5/20", "10/20", "15/20", "20/20"]
    assert lines[-1].startswith("validation: step 20/20 100%") and lines[-1].endswith("| loss 1.50")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_line_is_redrawn_in_place(monkeypatch):
    import os

    monkeypatch.setattr(progress.shutil, "get_terminal_size", lambda fallback: os.terminal_size((80, 24)))
    out = _Terminal()
    metrics = dict(METRICS)
    _run(RunProgressBar(stream=out, refresh_seconds=0), _trainer(progress_bar_metrics=metrics), 20)
    text = out.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")  # one line, finished when training ends
    frames = [f.removesuffix("\033[K") for f in text.rstrip("\n").split("\r") if f]
    assert len(frames) >= 20 and all(len(f) <= 79 for f in frames), max(frames, key=len)
    assert frames[-1].startswith("step 20/20 ") and "1,234 samples/s loss 2.35" in frames[-1]
    assert [f.partition(" | ")[2] for f in frames if "validating" in f] == ["validating 1/4", "validating 2/4",
                                                                            "validating 3/4", "validating 4/4"]


def test_a_bar_from_the_config_replaces_clsps_and_the_summary_is_one_line(tmp_path):
    from clsp.training.runner import build_trainer

    trainer = build_trainer(typed_config(compose_config(["recipe=demo"])), tmp_path, has_val=False)
    assert isinstance(trainer.progress_bar_callback, RunProgressBar)
    assert any(isinstance(c, ModelSize) for c in trainer.callbacks)
    off = build_trainer(typed_config(compose_config(["recipe=demo", "trainer.enable_progress_bar=false"])), tmp_path,
                        has_val=False)
    assert off.progress_bar_callback is None
