"""The caption decoder's captions in the data: chosen per clip (data.decoder_captions), tokenized in the
workers with the decoder's own tokenizer, carried by the Batch beside the contrastive captions."""

from __future__ import annotations

import random

import pytest
from data_helpers import write_shards

from clsp.config import DecoderConfig
from clsp.data.captions import decoder_caption
from clsp.data.config import DataConfig
from clsp.data.dataset import build_dataloader, decoder_tokenizer
from clsp.decoder import prepare_tokenizer
from clsp.tiny import tiny_tokenizer

TOK = tiny_tokenizer()
DECODER = DecoderConfig.tiny()


def _loader(urls, **kw):
    decoder_tok = prepare_tokenizer(tiny_tokenizer())
    args = dict(tokenizer=TOK, sample_rate=16000, max_seconds=0.2, batch_size=3, num_workers=0, shuffle=False,
                crop="start", decoder_tokenize=decoder_tokenizer(decoder_tok, DECODER))
    return build_dataloader(urls, **{**args, **kw}), decoder_tok


def _decoded(tokenizer, batch) -> list[str]:
    return [tokenizer.decode(ids[1 : n - 1]).strip() for ids, n in zip(batch.decoder_input_ids, batch.decoder_lengths)]


@pytest.mark.parametrize("workers", [0, 1])  # 1: the tokenize function is pickled into a worker
def test_batches_carry_the_decoders_own_caption_kind(tmp_path, workers):
    urls = write_shards(tmp_path, 3, 3)
    loader, tokenizer = _loader(urls, caption_policy="short", decoder_captions="long", num_workers=workers)
    batch = next(iter(loader))
    assert batch.texts == ["short caption 0", "short caption 1", "short caption 2"]  # contrastive: short
    assert _decoded(tokenizer, batch) == ["long caption 0", "long caption 1", "long caption 2"]
    width = max(batch.decoder_lengths)
    assert batch.decoder_input_ids.shape == batch.decoder_attention_mask.shape == (3, width)
    assert batch.decoder_attention_mask.sum(1).tolist() == batch.decoder_lengths
    assert (batch.decoder_input_ids[:, 0] == tokenizer.bos_token_id).all()


def test_a_clip_without_the_kind_falls_back_and_is_counted(tmp_path):
    urls = write_shards(tmp_path, 3, 3, with_long=False)
    loader, tokenizer = _loader(urls, caption_policy="short", decoder_captions="long")
    batch = next(iter(loader))
    assert _decoded(tokenizer, batch) == ["short caption 0", "short caption 1", "short caption 2"]
    assert batch.skipped == {"decoder_caption_fallback": 3}  # an event, not a failure


def test_long_decoder_captions_are_cut_and_counted(tmp_path):
    urls = write_shards(tmp_path, 2, 2)
    decoder_tok = prepare_tokenizer(tiny_tokenizer())
    short = DecoderConfig(**{**vars(DECODER), "max_length": 3})
    loader = build_dataloader(urls, tokenizer=TOK, sample_rate=16000, max_seconds=0.2, batch_size=2, num_workers=0,
                              decoder_tokenize=decoder_tokenizer(decoder_tok, short))
    batch = next(iter(loader))
    assert batch.decoder_input_ids.shape == (2, 3) and batch.truncated == 2


def test_without_a_decoder_the_batch_has_no_decoder_rows(tmp_path):
    urls = write_shards(tmp_path, 2, 2)
    batch = next(iter(build_dataloader(urls, tokenizer=TOK, sample_rate=16000, max_seconds=0.2, batch_size=2,
                                       num_workers=0)))
    assert batch.decoder_input_ids is None and batch.decoder_lengths == []


def test_decoder_caption_rule():
    rng = random.Random(0)
    caps = {"short": ["s1"], "long": ["l1", "l2"]}
    assert decoder_caption(caps, "short", rng) == ("s1", False)
    assert decoder_caption(caps, "long", rng, "first") == ("l1", False)
    assert decoder_caption({"short": ["s"], "long": []}, "long", rng) == ("s", True)
    assert {decoder_caption(caps, "random", rng)[0] for _ in range(50)} == {"s1", "l1", "l2"}
    with pytest.raises(ValueError, match="decoder_captions"):
        decoder_caption(caps, "both", rng)
    with pytest.raises(ValueError, match="decoder_captions"):
        DataConfig(train="x", decoder_captions="both")
    with pytest.raises(ValueError, match="caption_val_clips"):
        DataConfig(train="x", caption_val_clips=-1)
