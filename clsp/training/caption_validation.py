"""The captioning part of validation: on the first `caption_val_clips` validation clips, greedy captions scored
with CIDEr-D and the teacher-forced captioning loss, logged as val/caption/CIDEr-D and val/caption/loss.

It reads the clips the validation loader already streams (`clsp.evaluation.clips.ClipStream`), before the
retrieval part drops their audio, and captions them through the evaluation's functions
(`clsp.evaluation.caption_task`). The cap is split over the ranks (rank r captions its first
cap // world (+1 for r < cap % world) clips); the ranks' captions are gathered, so every rank scores the same
whole. A clip's references are its validation captions (`data.val_caption_policy`). CIDEr-D uses the Python
tokenisation (no Java in the training loop); its idf comes from the scored clips, so it needs two or more.
"""

from __future__ import annotations

import warnings

import torch.distributed as dist

from clsp.evaluation.caption_task import caption_frames, clip_frames, reference_loss
from clsp.evaluation.captioning import caption_metrics
from clsp.evaluation.clips import Clip


class CaptionValidation:
    """Collects one validation epoch's captions on a rank; `result` gathers and scores them."""

    def __init__(self, clips: int):
        self.clips = int(clips)
        self._reset()

    def _reset(self) -> None:
        self.predictions: list[str] = []
        self.references: list[list[str]] = []
        self.nll, self.tokens = 0.0, 0

    def quota(self, rank: int, world: int) -> int:
        return self.clips // world + (rank < self.clips % world)

    def add(self, model, clips: list[Clip], rank: int, world: int) -> None:
        """Caption this rank's next clips, up to its quota (call before anything drops the clips' audio)."""
        take = [c for c in clips if c.captions][: max(self.quota(rank, world) - len(self.predictions), 0)]
        if not take:
            return
        frames = clip_frames(model, take)
        self.predictions += caption_frames(model, frames)
        refs = [list(c.captions) for c in take]
        self.references += refs
        nll, tokens = reference_loss(model, frames, refs)
        self.nll, self.tokens = self.nll + nll, self.tokens + tokens

    def result(self, world: int) -> dict[str, float]:
        """{"caption/CIDEr-D", "caption/loss"} over every rank's clips (a collective call when world > 1); what
        cannot be scored is left out (a warning says why). Resets for the next epoch."""
        mine = (self.predictions, self.references, self.nll, self.tokens)
        self._reset()
        parts = [mine]
        if world > 1:
            parts = [None] * world
            dist.all_gather_object(parts, mine)
        predictions = [p for part in parts for p in part[0]]
        references = [r for part in parts for r in part[1]]
        tokens = sum(part[3] for part in parts)
        out: dict[str, float] = {}
        if tokens:
            out["caption/loss"] = sum(part[2] for part in parts) / tokens
        if predictions:
            scored = caption_metrics(predictions, references, metrics=["CIDEr-D"], tokenizer="simple")
            if "CIDEr-D" in scored["scores"]:
                out["caption/CIDEr-D"] = scored["scores"]["CIDEr-D"]
            else:
                warnings.warn(f"val/caption/CIDEr-D not logged: {scored['unavailable'].get('CIDEr-D')}", stacklevel=2)
        return out

