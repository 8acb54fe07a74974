"""The training DataModule: equal batch counts across ranks, resume skipping."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from clsp import CLSPConfig
from clsp.data.captions import CaptionSchedule
from clsp.data.config import DataConfig
from clsp.data.demo import build_demo
from clsp.tiny import tiny_tokenizer
from clsp.training.datamodule import CLSPDataModule


def write_shards(root, n: int, samples_per_shard: int) -> None:
    build_demo(root, n_train=n, n_val=2, n_test=2, samples_per_shard=samples_per_shard)


def _module(root, rank: int, world: int, epoch: int = 0, step: int = 0, accumulate: int = 1,
            **data: object) -> CLSPDataModule:
    settings = {"batch_size": 2, "num_workers": 0, "epoch_mode": True, "caption_policy": "short", "shuffle_buffer": 4}
    config = DataConfig(train=str(root / "train"), **(settings | data))
    dm = CLSPDataModule(config, CLSPConfig.tiny("whisper"), tiny_tokenizer(), seed=0, accumulate=accumulate)
    dm.trainer = SimpleNamespace(global_rank=rank, world_size=world, current_epoch=epoch, global_step=step)
    return dm


def test_ranks_yield_equal_batch_counts_with_uneven_shards(tmp_path):
    write_shards(tmp_path, n=18, samples_per_shard=8)  # shards of 8, 8 and 2 samples
    for epoch in range(3):
        counts = [len(list(_module(tmp_path, r, 2, epoch).train_dataloader())) for r in range(2)]
        assert counts[0] == counts[1] > 0
        planned = [len(_module(tmp_path, r, 2, epoch).train_dataloader().loader) for r in range(2)]
        assert counts[0] == min(planned)
    # A single process reads everything.
    assert sum(b.size for b in _module(tmp_path, 0, 1).train_dataloader()) == 18


def test_resume_skips_trained_batches(tmp_path):
    write_shards(tmp_path, n=12, samples_per_shard=12)
    full = [b.keys for b in _module(tmp_path, 0, 1).train_dataloader()]
    loader = _module(tmp_path, 0, 1).train_dataloader()
    loader.load_state_dict({"epoch": 0, "batches": 2, "epoch_done": False})  # what Lightning hands back
    assert len(loader) == len(full)
    assert [b.keys for b in loader] == full[2:]
    assert [b.keys for b in loader] == full  # the next iteration is a whole epoch again


def test_resume_after_an_epochs_last_batch_starts_the_next_epoch(tmp_path):
    write_shards(tmp_path, n=12, samples_per_shard=12)
    next_epoch = [b.keys for b in _module(tmp_path, 0, 1, epoch=1).train_dataloader()]
    loader = _module(tmp_path, 0, 1).train_dataloader()  # the restored trainer still says epoch 0
    loader.load_state_dict({"epoch": 0, "batches": 6, "epoch_done": True})
    resumed = [b.keys for b in loader]
    assert resumed == next_epoch and resumed != [b.keys for b in _module(tmp_path, 0, 1).train_dataloader()]


def test_resumed_caption_pairing_and_draws_match_an_uninterrupted_epoch(tmp_path):
    # The pairing changes with the optimizer step (two longs from step 1 on) and picks how many captions each
    # clip draws, so a resume that gave the skipped batches the wrong step would change every later batch.
    write_shards(tmp_path, n=12, samples_per_shard=12)
    both = {"caption_policy": "both", "caption_schedule": CaptionSchedule(p_start=0.0, p_end=1.0, ramp_steps=1)}
    full = [b.input_ids for b in _module(tmp_path, 0, 1, accumulate=2, **both).train_dataloader()]
    loader = _module(tmp_path, 0, 1, step=1, accumulate=2, **both).train_dataloader()  # 2 batches = step 1 done
    loader.load_state_dict({"epoch": 0, "batches": 2, "epoch_done": False})
    resumed = [b.input_ids for b in loader]
    assert len(resumed) == len(full) - 2
    for a, b in zip(full[2:], resumed, strict=True):
        assert torch.equal(a, b)


def test_loader_state_is_the_trainers_loop_position(tmp_path):
    write_shards(tmp_path, n=12, samples_per_shard=12)
    dm = _module(tmp_path, 0, 1, epoch=3)
    progress = SimpleNamespace(current=SimpleNamespace(processed=5), is_last_batch=False)
    dm.trainer.fit_loop = SimpleNamespace(epoch_loop=SimpleNamespace(batch_progress=progress))
    assert dm.train_dataloader().state_dict() == {"epoch": 3, "batches": 5, "epoch_done": False}


def test_validation_is_split_across_ranks(tmp_path):
    build_demo(tmp_path, n_train=4, n_val=10, n_test=2, samples_per_shard=10)
    keys = []
    for rank in range(2):
        dm = _module(tmp_path, rank, 2)
        dm.data.val = str(tmp_path / "val")
        keys.append([c.key for clips, _ in dm.val_dataloader() for c in clips])
    assert len(keys[0]) == len(keys[1]) == 5 and not set(keys[0]) & set(keys[1])
    whole = _module(tmp_path, 0, 1)
    whole.data.val = str(tmp_path / "val")
    assert sorted(keys[0] + keys[1]) == sorted(c.key for clips, _ in whole.val_dataloader() for c in clips)
