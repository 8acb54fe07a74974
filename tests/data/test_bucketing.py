"""Duration bucketing: batches of similar length, same samples and batch counts, seeded, budgets, even ranks."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from data_helpers import tone

from clsp.data.bucketing import _pieces
from clsp.data.config import DataConfig
from clsp.data.dataset import ShardDataset, build_dataloader, text_tokenizer
from clsp.data.writer import ShardWriter
from clsp.tiny import tiny_tokenizer

TOK = tiny_tokenizer()
RATE = 8000


def _mixed_shards(out: Path, n: int = 96, per_shard: int = 24) -> list[str]:
    """Clips of 0.05-0.6 s, log-normally spread like speech corpora, in random order."""
    rng = np.random.default_rng(0)
    seconds = np.clip(rng.lognormal(np.log(0.15), 0.6, n), 0.05, 0.6)
    with ShardWriter(out, samples_per_shard=per_shard, codec="flac") as writer:
        for i, s in enumerate(seconds):
            meta = {"id": f"s{i:04d}", "captions": {"short": [f"caption {i}"]}}
            writer.write(f"s{i:04d}", tone(float(s), RATE, 200 + 5 * i), RATE, meta)
    return sorted(str(p) for p in out.glob("*.tar"))


def _loader(urls, **kw):
    args = dict(tokenizer=TOK, sample_rate=RATE, max_seconds=1.0, batch_size=8, num_workers=0, shuffle_buffer=32)
    args.update(kw)
    return build_dataloader(urls, **args)


def _efficiency(batches) -> float:
    real = sum(int(b.audio_lengths.sum()) for b in batches)
    return real / sum(b.audio.numel() for b in batches)


@pytest.fixture(scope="module")
def urls(tmp_path_factory):
    return _mixed_shards(tmp_path_factory.mktemp("mixed"))


def test_bucketing_keeps_samples_and_batch_counts_and_cuts_padding(urls):
    plain = list(_loader(urls))
    bucketed = list(_loader(urls, bucketing=True))
    keys = sorted(k for b in plain for k in b.keys)
    assert sorted(k for b in bucketed for k in b.keys) == keys  # every sample once
    assert [b.size for b in bucketed] == [b.size for b in plain] == [8] * 12
    # padding_efficiency is what collate reports per batch: real / padded samples.
    for b in bucketed:
        assert b.padding_efficiency == pytest.approx(int(b.audio_lengths.sum()) / b.audio.numel())
    assert _efficiency(bucketed) > 0.75 > _efficiency(plain) + 0.2, (_efficiency(bucketed), _efficiency(plain))


def test_bucketed_order_is_seeded_and_resumable(urls):
    def keys(loader, epoch):
        loader.set_epoch(epoch)
        return [b.keys for b in loader]

    loader = _loader(urls, bucketing=True)
    first = keys(loader, 0)
    assert keys(loader, 0) == first
    assert keys(loader, 1) != first
    assert keys(_loader(urls, bucketing=True, seed=1), 0) != first
    # A resumed run decodes and skips the batches already trained on, then continues identically.
    loader.set_epoch(0)
    assert [b.keys for b in itertools.islice(iter(loader), 5, None)] == first[5:]


def test_drop_last_and_short_last_batch(urls):
    sizes = [b.size for b in _loader(urls[:3], bucketing=True, batch_size=10)]  # 72 samples
    assert sizes == [10] * 7 + [2]
    assert [b.size for b in _loader(urls[:3], bucketing=True, batch_size=10, drop_last=True)] == [10] * 7


def test_budget_fills_batches_to_padded_seconds(urls):
    budget = 1.2
    batches = list(_loader(urls, bucketing=True, max_batch_seconds=budget, batch_size=16))
    assert sorted(k for b in batches for k in b.keys) == sorted(f"s{i:04d}" for i in range(96))
    for b in batches:
        assert b.size <= 16
        padded_seconds = b.size * b.audio.shape[1] / RATE
        assert b.size == 1 or padded_seconds <= budget + 1e-9
    assert len({b.size for b in batches}) > 2  # short clips share a batch with more of their kind


def test_budget_in_resampled_mode_yields_fixed_batch_counts_on_every_rank(urls):
    counts = []
    for rank in range(2):
        loader = _loader(urls, bucketing=True, max_batch_seconds=1.0, epoch_mode=False, samples_per_epoch=160,
                         rank=rank, world_size=2)
        counts.append((len(loader), sum(1 for _ in loader)))
    assert counts == [(10, 10), (10, 10)]


def test_epoch_mode_ranks_stay_even(urls):
    for rank in range(2):
        cfg = dict(rank=rank, world_size=2)
        plain, bucketed = _loader(urls, **cfg), _loader(urls, bucketing=True, **cfg)
        assert len(bucketed) == len(plain) == sum(1 for _ in bucketed) == sum(1 for _ in plain)


def test_pieces_cut_sorted_durations():
    assert _pieces([1, 1, 2, 2, 3], 2, None) == [(0, 2), (2, 4), (4, 5)]
    # budget 4 s padded: [1, 1, 1] costs 3, adding 2 would cost 8; one clip over budget still forms a batch.
    assert _pieces([1, 1, 1, 2, 2, 5], 10, 4.0) == [(0, 3), (3, 5), (5, 6)]
    assert _pieces([], 4, None) == []


@pytest.mark.parametrize("kw, match", [
    (dict(max_batch_seconds=10.0), "needs bucketing"),
    (dict(bucketing=True, max_batch_seconds=0.0), "> 0"),
])
def test_config_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        DataConfig(**kw)


def test_budget_on_several_ranks_needs_resampled_mode(urls):
    with pytest.raises(ValueError, match="epoch_mode: false"):
        ShardDataset(urls, text_tokenizer(TOK), DataConfig(bucketing=True, max_batch_seconds=10.0), sample_rate=RATE,
                     max_seconds=None, world_size=2, rank=0)


def test_budget_length_unknown_in_epoch_mode(urls):
    dataset = ShardDataset(urls, text_tokenizer(TOK), DataConfig(bucketing=True, max_batch_seconds=2.0),
                           sample_rate=RATE, max_seconds=None)
    with pytest.raises(TypeError, match="length unknown"):
        len(dataset)
