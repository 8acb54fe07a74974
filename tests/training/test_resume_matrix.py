"""Exact resume from every checkpoint position: one small run per row, killed with SIGKILL right after its
checkpoint (a test hook, `restart_hooks.DieAt`), resumed, and compared with an uninterrupted run of the same
configuration (run once per configuration and shared by its rows): final weights within 1e-6 (last.ckpt's,
its raw weights under EMA, and the exported model) and metrics.csv row for row.

The tiny corpus has 96 training clips in batches of 16: 6 batches an epoch on one process, 3 on each of two.
A row names its configuration, when checkpoints are written, and when the run is killed:

    die_at=S, when=batch       at the start of the first batch after optimizer step S
    die_at=S, when=window      after the first batch of the accumulation window following step S
    die_at=S, when=validation  at the start of the first validation after step S
    resume=best                resume=<the run's best.ckpt> instead of resume=latest
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import restart_runs as R  # tests/training is on sys.path (rootdir conftest)

pytestmark = pytest.mark.slow

# Multi-positive captions whose pairing changes every step (drawn from the optimizer step), EMA, accumulation 2.
_PAIRING = ["loss=multipositive", "data.caption_policy=both", "data.caption_schedule.ramp_steps=4",
            "data.caption_schedule.p_start=0", "data.caption_schedule.p_end=1"]
CONFIGS = {
    # 3 optimizer steps an epoch.
    "acc2_ema": [*_PAIRING, "trainer.accumulate_grad_batches=2", "trainer.ema_decay=0.9", "trainer.max_steps=5"],
    # 6 steps an epoch.
    "acc1_ema": ["trainer.ema_decay=0.9", "trainer.max_steps=9"],
    # windows of 4 and 2 batches: 2 steps an epoch, the second on a partial window.
    "acc4": ["trainer.accumulate_grad_batches=4", "trainer.max_steps=4"],
    # an endless stream, 96 samples an "epoch": 6 steps.
    "resampled": ["data.epoch_mode=false", "data.samples_per_epoch=96", "trainer.ema_decay=0.9", "trainer.max_steps=8"],
    # batches of similar duration filled to 40 s of audio: the epoch's length is unknown to Lightning.
    "bucketing": ["data.bucketing=true", "data.max_batch_seconds=40", "trainer.max_steps=12"],
    # two processes (DDP over gloo, Lightning's launcher): 3 shards of 32 dealt as 64 + 32, both ranks stop at
    # 2 batches: 2 steps an epoch.
    "two_processes": ["trainer.devices=2", "trainer.strategy=ddp", "trainer.ema_decay=0.9", "trainer.max_steps=5"],
    # the caption decoder trained beside InfoNCE (demo_caption's model and loss), greedy captions in validation:
    # 6 steps an epoch.
    "captioning": ["model=tiny_whisper_caption", "loss=global_caption", "data.decoder_captions=short",
                   "data.caption_val_clips=8", "trainer.ema_decay=0.9", "trainer.max_steps=8"],
}


@dataclass(frozen=True)
class Row:
    config: str
    every: int  # trainer.checkpoint_every_n_steps
    die_at: int | str  # optimizer step, or "epoch_end": the last step of the first epoch (read from the reference)
    when: str = "batch"
    resume: str = "latest"
    checkpoint: int | None = None  # the step the resumed checkpoint holds (default: die_at)


ROWS = {
    "epoch_last_batch": Row("acc2_ema", every=3, die_at=3),
    "epoch_last_batch_before_its_validation": Row("acc2_ema", every=1, die_at=3, when="validation", checkpoint=2),
    "mid_epoch": Row("acc2_ema", every=2, die_at=2),
    "inside_accumulation_window": Row("acc2_ema", every=2, die_at=2, when="window"),
    "from_best_ckpt": Row("acc2_ema", every=100, die_at=4, resume="best", checkpoint=3),
    "epoch_first_batch": Row("acc1_ema", every=7, die_at=7),
    "partial_window_at_epoch_end": Row("acc4", every=2, die_at=2),
    "resampled_epoch_last_batch": Row("resampled", every=6, die_at=6),
    "bucketing_epoch_last_batch": Row("bucketing", every=1, die_at="epoch_end"),
    "two_processes_epoch_last_batch": Row("two_processes", every=2, die_at=2),
    "captioning_mid_epoch": Row("captioning", every=4, die_at=4),
    "captioning_epoch_last_batch": Row("captioning", every=6, die_at=6),
}


@pytest.fixture(scope="module")
def common(demo_root) -> list[str]:
    return [f"data.demo.root={demo_root}", "data.demo.n_train=96", "data.demo.n_val=32", "data.demo.n_test=32",
            "data.demo.samples_per_shard=32",
            "data.batch_size=16", "data.num_workers=0", "trainer.enable_progress_bar=false",
            "trainer.log_every_n_steps=1", "run.final_eval=false"]


@pytest.fixture(scope="module")
def references(common, tmp_path_factory):
    """The uninterrupted run of each configuration, made on first use."""
    made: dict = {}

    def reference(config: str):
        if config not in made:
            out = tmp_path_factory.mktemp(f"whole-{config}")
            R.run([*common, *CONFIGS[config], f"run.output_dir={out}"])
            made[config] = R.run_folder(out / "demo")
        return made[config]

    return reference


def _first_epoch_steps(folder) -> int:
    return sum(1 for row in R.metrics(folder) if row["epoch"] == "0" and not row.get("val/mAP@10"))


@pytest.mark.parametrize("name", list(ROWS))
def test_killed_run_resumes_exactly(name, common, references, tmp_path):
    row = ROWS[name]
    whole = references(row.config)
    die_at = _first_epoch_steps(whole) if row.die_at == "epoch_end" else row.die_at
    overrides = [*common, *CONFIGS[row.config], f"trainer.checkpoint_every_n_steps={row.every}",
                 f"run.output_dir={tmp_path}"]
    R.run([*overrides, R.DIE], expect=-9, CLSP_TEST_DIE_AT_STEP=str(die_at), CLSP_TEST_DIE_WHEN=row.when)
    folder = R.run_folder(tmp_path / "demo")
    ckpt = folder / "checkpoints" / ("best.ckpt" if row.resume == "best" else "last.ckpt")
    at = R.checkpoint_step(ckpt)
    assert at == (row.checkpoint or die_at)

    R.run([*overrides, f"resume={ckpt}" if row.resume == "best" else "resume=latest"])
    assert R.run_folder(tmp_path / "demo") == folder
    diff = R.max_weight_diff(whole, folder)
    print(f"{name}: resumed from step {at}, max |weight difference| {diff:.3g}")
    assert diff <= 1e-6
    assert R.metrics_diff(whole, folder) == []
