"""Shards -> Batch: splitting over ranks/workers, determinism, batch layout, caption policies, negatives."""

from __future__ import annotations

import random

import pytest
import torch
from data_helpers import write_shards

from clsp.data.captions import select_captions
from clsp.data.config import DataConfig
from clsp.data.dataset import ShardDataset, build_dataloader, text_tokenizer
from clsp.tiny import tiny_tokenizer

TOK = tiny_tokenizer()


def _keys(loader) -> list[str]:
    return [k for batch in loader for k in batch.keys]


def _loader(urls, **kw):
    args = dict(tokenizer=TOK, sample_rate=8000, max_seconds=0.2, batch_size=2, num_workers=0, shuffle_buffer=4)
    args.update(kw)
    return build_dataloader(urls, **args)


def test_fewer_shards_than_workers_epoch_mode(tmp_path):
    urls = write_shards(tmp_path, 5, 10)  # one shard
    loader = _loader(urls, num_workers=2, batch_size=2)
    keys = _keys(loader)
    assert sorted(keys) == [f"s{i:04d}" for i in range(5)]  # every sample once, no hang
    assert len(loader) == 3  # worker 0: 3 samples -> 2 batches, worker 1: 2 samples -> 1 batch


def test_two_ranks_two_workers_disjoint_and_complete(tmp_path):
    for n_shards, per_shard in [(6, 3), (2, 5)]:  # shard-level split and sample-level split
        folder = tmp_path / f"{n_shards}"
        urls = write_shards(folder, n_shards * per_shard, per_shard)
        seen = []
        for rank in range(2):
            loader = _loader(urls, num_workers=2, rank=rank, world_size=2)
            keys = _keys(loader)
            assert len(keys) == len(set(keys))
            seen.append(set(keys))
        assert not seen[0] & seen[1]
        assert len(seen[0] | seen[1]) == n_shards * per_shard


def test_seeded_determinism_and_epochs(tmp_path):
    urls = write_shards(tmp_path, 12, 3)
    a = _keys(_loader(urls, seed=1))
    assert a == _keys(_loader(urls, seed=1))
    assert a != _keys(_loader(urls, seed=2))
    loader = _loader(urls, seed=1)
    epoch0, epoch1 = _keys(loader), _keys(loader)  # each iteration is the next epoch
    assert epoch0 == a and epoch1 != epoch0 and sorted(epoch1) == sorted(epoch0)
    loader.set_epoch(0)
    assert _keys(loader) == a
    # the random crop is seeded too
    b1 = next(iter(_loader(urls, seed=3, max_seconds=0.1)))
    b2 = next(iter(_loader(urls, seed=3, max_seconds=0.1)))
    assert torch.equal(b1.audio, b2.audio)


def test_batch_layout(tmp_path):
    urls = write_shards(tmp_path, 5, 5, seconds=0.25)
    loader = _loader(urls, batch_size=4, caption_policy="both", crop="start", max_seconds=0.2, shuffle=False)
    batch = next(iter(loader))
    b = batch.size
    assert b == 4 and batch.audio.shape == (4, 1600) and batch.audio.dtype == torch.float32
    assert batch.audio_lengths.tolist() == [1600] * 4
    assert torch.equal(batch.caption_to_clip[:b], torch.arange(b))
    assert batch.input_ids.shape[0] == batch.attention_mask.shape[0] == len(batch.texts) == 8
    assert batch.caption_kinds == ["long"] * 4 + ["short"] * 4
    assert batch.texts[0] == "long caption 0" and batch.texts[4] == "short caption 0"
    assert batch.caption_to_clip.tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    assert batch.input_ids[0, 0].item() == TOK.bos_token_id and batch.truncated == 0
    assert batch.keys == ["s0000", "s0001", "s0002", "s0003"] and batch.attributes[1]["gender"] == "female"
    last = list(loader)[-1]
    assert last.size == 1  # partial last batch kept


def test_padding_truncation_and_fallback(tmp_path):
    urls = write_shards(tmp_path, 3, 3, seconds=0.25, with_long=False)
    loader = _loader(urls, batch_size=3, caption_policy="long", max_length=4, crop="none", max_seconds=None,
                     sample_rate=16000, shuffle=False)  # fmt: skip
    batch = next(iter(loader))
    assert batch.caption_kinds == ["short"] * 3 and batch.skipped == {"caption_fallback": 3}
    assert batch.input_ids.shape == (3, 4) and batch.truncated == 3
    assert batch.audio.shape == (3, 4000)


def test_select_captions_policies():
    rng = random.Random(0)
    caps = {"short": ["s1"], "long": ["l1", "l2"]}
    # "both": the primary long caption plus the one the step's pairing asks for (chosen in the data).
    out, fb = select_captions(caps, "both", rng, "first", "short+long")
    assert out == [("l1", "long"), ("s1", "short")] and not fb
    assert select_captions(caps, "both", rng, "first", "two_longs") == ([("l1", "long"), ("l2", "long")], False)
    assert select_captions(caps, "short", rng)[0] == [("s1", "short")]
    assert select_captions({"short": [], "long": ["l"]}, "short", rng) == ([("l", "long")], True)
    picks = {select_captions(caps, "random", rng)[0][0][0] for _ in range(50)}
    assert picks == {"s1", "l1", "l2"}
    with pytest.raises(ValueError, match="caption_policy"):
        DataConfig(caption_policy="longest")


def test_hard_negatives(tmp_path, monkeypatch):
    def flip(caption, rng, attributes=None):
        return None if attributes.get("gender") == "male" else caption.replace("short", "tall")

    monkeypatch.setattr("clsp.data.dataset.flip_attribute", flip)
    urls = write_shards(tmp_path, 4, 4)
    batch = next(iter(_loader(urls, batch_size=4, hard_negatives=True, shuffle=False, caption_policy="short")))
    assert batch.has_negative.tolist() == [False, True, False, True]
    # Negatives are padded to their own longest row, as the captions are to theirs (each padded once).
    assert batch.negative_input_ids.shape[0] == batch.input_ids.shape[0]
    assert batch.negative_input_ids.shape[1] == max(batch.negative_lengths)
    assert batch.input_ids.shape[1] == max(batch.caption_lengths)
    assert not torch.equal(batch.negative_input_ids[1], batch.input_ids[1])
    assert batch.skipped == {"no_negative": 2}


def test_resampled_mode_and_weights(tmp_path):
    a = write_shards(tmp_path / "a", 4, 2)
    b = write_shards(tmp_path / "b", 4, 2)
    spec = [{"urls": a, "weight": 1.0}, {"urls": b, "weight": 1.0}]
    loader = _loader(spec, epoch_mode=False, samples_per_epoch=9, batch_size=2)
    batches = list(loader)
    assert len(batches) == len(loader) == 5 and all(x.size == 2 for x in batches)
    ds = ShardDataset(a, text_tokenizer(TOK), DataConfig(epoch_mode=False, num_workers=2, batch_size=2),
                      sample_rate=8000, max_seconds=0.2, world_size=2)
    assert len(ds) == 2  # 8 samples from sizes.json over 4 readers: 1 batch per reader, 2 workers


def test_skips_reach_the_batch(tmp_path):
    urls = write_shards(tmp_path, 4, 4)
    with open(urls[0], "r+b") as f:  # corrupt the second clip's FLAC payload in place
        data = f.read()
        pos = data.find(b"fLaC", data.find(b"s0001.flac"))
        f.seek(pos)
        f.write(b"XXXX")
    batches = list(_loader(urls, batch_size=8, shuffle=False))
    assert batches[0].size == 3 and batches[0].skipped == {"decode_error": 1}
