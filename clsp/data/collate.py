"""Decoded samples + their chosen captions -> one `Batch` (audio padded, captions tokenized, once each)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from clsp.data.batch import Batch
from clsp.data.samples import Sample
from clsp.tokenizer import Tokens

Tokenize = Callable[[list[str]], Tokens]  # the model's own tokenization (clsp.tokenizer.tokenize, bound)


def collate(
    samples: Sequence[Sample],
    chosen: Sequence[list[tuple[str, str]]],
    tokenize: Tokenize,
    *,
    negatives: Sequence[str | None] | None = None,
    skipped: dict[str, int] | None = None,
    decoder: tuple[Sequence[str], Tokenize] | None = None,
) -> Batch:
    """One Batch from decoded samples and their chosen captions (primary first per sample).

    Audio is zero padded to the longest clip; the captions are tokenized in one call and padded to the
    longest of them, the hard negatives (if any) in another, so every row the step embeds is padded
    once, to its own batch's width. `decoder`: one caption per sample and the caption decoder's
    tokenization, for the decoder's input rows. Truncation at the max lengths is counted.
    """
    b = len(samples)
    if b == 0:
        raise ValueError("cannot collate an empty list of samples")
    waves = [torch.from_numpy(np.ascontiguousarray(s.audio)) for s in samples]
    audio = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)
    lengths = torch.tensor([w.shape[0] for w in waves], dtype=torch.int64)

    # Primary captions first (rows 0..B-1), then the extras in sample order.
    rows = [c[0] for c in chosen] + [(text, kind, i) for i, c in enumerate(chosen) for text, kind in c[1:]]
    texts = [r[0] for r in rows]
    kinds = [r[1] for r in rows]
    owner = list(range(b)) + [r[2] for r in rows[b:]]
    tok = tokenize(texts)
    batch = Batch(
        audio=audio,
        audio_lengths=lengths,
        input_ids=tok.input_ids,
        attention_mask=tok.attention_mask,
        caption_to_clip=torch.tensor(owner, dtype=torch.int64),
        caption_kinds=kinds,
        keys=[s.key for s in samples],
        attributes=[s.attributes for s in samples],
        texts=texts,
        truncated=int(tok.cut.sum()),
        skipped=dict(skipped or {}),
        caption_lengths=tok.attention_mask.sum(1).tolist(),
        padding_efficiency=float(lengths.sum()) / max(audio.numel(), 1),
    )
    if negatives is not None:
        # A clip without a negative gets its own caption (masked out by has_negative) so rows stay aligned.
        neg = tokenize([n if n is not None else texts[i] for i, n in enumerate(negatives)])
        batch.negative_input_ids = neg.input_ids
        batch.negative_attention_mask = neg.attention_mask
        batch.has_negative = torch.tensor([n is not None for n in negatives], dtype=torch.bool)
        batch.negative_lengths = neg.attention_mask.sum(1).tolist()
    if decoder is not None:
        texts, tokenize_decoder = decoder
        dec = tokenize_decoder(list(texts))
        batch.decoder_input_ids, batch.decoder_attention_mask = dec.input_ids, dec.attention_mask
        batch.decoder_lengths = dec.attention_mask.sum(1).tolist()
        batch.truncated += int(dec.cut.sum())
    return batch
