"""Captioning evaluation: each clip's caption from the model's decoder, scored against the clip's references.

    metrics, records = evaluate_captioning(model, clips)   # clips: `Clip`s with their references as captions

One audio pass per batch of clips (`clip_frames`) gives both what the decoder reads (its frames)
and the clip embedding, so the CLAP-based caption score (the cosine of a clip with its own generated
caption, `clsp.evaluation.score`) comes beside the captioning metrics (`clsp.evaluation.captioning`:
BLEU-1..4, METEOR, ROUGE-L, CIDEr-D, SPICE, SPIDEr over all references of a clip) at no extra audio cost.
Validation (`clsp.training.caption_validation`) captions its capped clips through the same functions.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence

import torch
from tqdm import tqdm

from clsp.audio_io import resample
from clsp.evaluation.captioning import METRICS, caption_metrics
from clsp.evaluation.clips import Clip, load_audio
from clsp.evaluation.embed import PairEmbeddings, encode_texts
from clsp.evaluation.score import scores_from_embeddings
from clsp.losses import CaptioningLoss, ContrastiveOutputs

__all__ = ["caption_frames", "clip_frames", "evaluate_captioning", "reference_loss"]


@torch.inference_mode()
def clip_frames(model, clips: Sequence[Clip]):
    """`model.encode_audio(..., return_tokens=True)` of the clips in one call: L2-normalised embeddings [N, D] +
    frames (projected and the tower's) and their mask. Clips come at the model's rate, resampled as
    encode_audio resamples."""
    rate = model.sample_rate
    waves = [resample(wave, clip_rate or rate, rate) for wave, clip_rate in map(load_audio, clips)]
    return model.encode_audio(waves, sample_rate=rate, return_tokens=True, batch_size=len(waves))


def caption_frames(model, frames, **generate_options) -> list[str]:
    """The decoder's captions for `clip_frames` output (greedy by default; options as `CLSPModel.caption`)."""
    return model.decoder.caption(model.decoder_frames(frames), frames.mask, **generate_options)


@torch.inference_mode()
def reference_loss(model, frames, references: Sequence[Sequence[str]]) -> tuple[float, int]:
    """(summed next-token cross-entropy, target tokens) of every reference caption, teacher-forced on its clip's
    frames: the captioning loss of training (`CaptioningLoss`, without label smoothing) as a sum, so parts add."""
    owner = torch.tensor([i for i, refs in enumerate(references) for _ in refs], device=frames.tokens.device)
    tokens = model.decoder.tokenize([r for refs in references for r in refs])
    ids, mask = tokens.input_ids.to(owner.device), tokens.attention_mask.to(owner.device)
    logits = model.decoder(model.decoder_frames(frames)[owner], frames.mask[owner], ids)
    out = ContrastiveOutputs(audio=frames.embeds[owner], text=None, caption_to_clip=owner, scale=logits.new_ones(()),
                             caption_logits=logits, caption_ids=ids, caption_mask=mask)
    count = int(mask[:, 1:].sum())
    return float(CaptioningLoss(gather=False)(out)) * count, count


def evaluate_captioning(model, clips: Iterable[Clip], *, batch_size: int = 16, metrics: Sequence[str] = METRICS,
                        tokenizer: str = "auto", desc: str | None = None, **generate_options) -> tuple[dict, list[dict]]:
    """Caption every clip and score the captions against the clips' own captions (their references).

    Returns (metrics, records): metrics has each available score (`clsp.evaluation.captioning` names), the mean
    CLAP score of the clips with their generated captions, num_clips, `unavailable` (metric -> why) and the
    tokenisation used; records one {key, caption, references, clap_score} per clip, in order."""
    if getattr(model, "decoder", None) is None:
        raise ValueError("this model has no caption decoder: captioning needs one (a model trained with a "
                         "captioning loss)")
    keys, predictions, references, embeds = [], [], [], []
    batch: list[Clip] = []
    bar = tqdm(desc=desc, unit="clip", file=sys.stderr, disable=desc is None or not sys.stderr.isatty(),
               mininterval=1.0, dynamic_ncols=True)

    def flush() -> None:
        frames = clip_frames(model, batch)
        predictions.extend(caption_frames(model, frames, **generate_options))
        embeds.append(frames.embeds.float().cpu())
        for clip in batch:
            keys.append(clip.key)
            references.append(list(clip.captions))
            clip.audio = None  # one batch of decoded audio in memory at a time
        bar.update(len(batch))
        batch.clear()

    with bar:
        for clip in clips:
            if clip.captions:
                batch.append(clip)
            if len(batch) == batch_size:
                flush()
        if batch:
            flush()
    if not keys:
        raise ValueError("no clips to caption: the data set is empty or no clip has a reference caption")
    scored = caption_metrics(predictions, references, metrics=metrics, tokenizer=tokenizer)
    pairs = PairEmbeddings(keys, torch.cat(embeds), predictions, ["generated"] * len(keys),
                           torch.arange(len(keys)), encode_texts(model, predictions))
    clap = [r["score"] for r in scores_from_embeddings(pairs)]
    records = [{"key": k, "caption": p, "references": refs, "clap_score": s}
               for k, p, refs, s in zip(keys, predictions, references, clap)]
    result = {**scored["scores"], "clap_score": sum(clap) / len(clap), "num_clips": len(keys),
              "unavailable": scored["unavailable"], "tokenization": scored["tokenization"]}
    return result, records
