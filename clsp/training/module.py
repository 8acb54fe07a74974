"""The LightningModule: one contrastive training step, validation retrieval, optimizers.

It knows the model only through `embed_audio` / `embed_text` / `scale()` and the losses only
through `ContrastiveOutputs`, so any tower pair and any loss suite train the same way.
EMA lives in a callback (`clsp.training.callbacks.EMA`), which swaps the average in for validation.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch

from clsp import checks
from clsp.data.batch import Batch
from clsp.evaluation.metrics import retrieval_metrics
from clsp.evaluation.retrieval import with_mean_map
from clsp.losses import ContrastiveOutputs, LossSuite
from clsp.model import CLSPModel
from clsp.training.optim import build_optimizer, build_scheduler
from clsp.training.schedule import MultiPositiveSchedule
from clsp.training.schema import OptimSettings


class CLSPTrainingModule(L.LightningModule):
    def __init__(
        self,
        model: CLSPModel,
        losses: LossSuite,
        optim: Mapping[str, Any],
        *,
        caption_schedule: MultiPositiveSchedule | None = None,
        pretrained_prefixes: tuple[str, ...] = (),
        seed: int = 0,
    ):
        super().__init__()
        self.model = model
        self.losses = losses
        self.optim_cfg = {**dataclasses.asdict(OptimSettings()), **optim}  # unset keys: the schema's defaults
        self.pretrained_prefixes = pretrained_prefixes
        self.seed = seed
        # Which captions each step pairs, for a loss that takes all of a clip's captions.
        self.schedule = (caption_schedule or MultiPositiveSchedule()) if losses.needs_all_captions else None
        # Data-side counters summed over the run (logged, and shown in the progress bar).
        self.skipped: dict[str, int] = {}
        self.truncated = 0
        self.batches_this_epoch = 0
        self._rng_to_restore: dict | None = None
        self._val: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self._last_time: float | None = None

    # ------------------------------------------------------------- one step
    def contrastive_outputs(self, batch: Batch, step: int) -> ContrastiveOutputs:
        """Run both towers on a batch and collect what the losses need."""
        model, losses, size = self.model, self.losses, batch.size
        tokens = losses.needs_tokens
        audio = model.embed_audio(batch.audio, batch.audio_lengths, return_tokens=tokens)
        rows = self._caption_rows(batch, step)  # on the CPU: indexing with it needs no device read
        width = max((batch.caption_lengths[r] for r in rows.tolist()), default=None) if batch.caption_lengths else None
        ids, mask = _trim(batch.input_ids[rows], batch.attention_mask[rows], width)
        text = model.embed_text(ids, mask, return_tokens=tokens)
        negative = None
        if losses.needs_negatives:
            if batch.negative_input_ids is None:
                raise ValueError("the loss needs hard negatives but the batch has none (set data hard_negatives)")
            neg_ids, neg_mask = _trim(batch.negative_input_ids, batch.negative_attention_mask,
                                      max(batch.negative_lengths, default=None))
            negative = model.embed_text(neg_ids, neg_mask).embeds
        return ContrastiveOutputs(
            audio=audio.embeds,
            text=text.embeds,
            caption_to_clip=batch.caption_to_clip[rows.to(batch.caption_to_clip.device)],
            logit_scale=model.scale(),
            logit_bias=model.logit_bias,
            audio_tokens=audio.tokens,
            audio_mask=audio.mask,
            text_tokens=None if text.tokens is None else text.tokens[:size],
            text_mask=None if text.mask is None else text.mask[:size],
            negative_text=negative,
            has_negative=batch.has_negative,
        )

    def _caption_rows(self, batch: Batch, step: int) -> torch.Tensor:
        """Primary captions only, or (multi-positive) the primary plus this step's extra kind."""
        if not self.losses.needs_all_captions:
            return torch.arange(batch.size)
        rows = torch.arange(len(batch.caption_to_clip))
        if self.schedule is None or not batch.caption_kinds:
            return rows
        # CLSP stage 2: each step is "short+long" or "two longs", drawn reproducibly from the step.
        mode = self.schedule.draw(step, random.Random(self.seed * 1_000_003 + step))
        wanted = "short" if mode == "short+long" else "long"
        kinds = torch.tensor([k == wanted for k in batch.caption_kinds])
        keep = (rows < batch.size) | kinds
        return rows[keep]

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        # No host reads in the step (clsp.checks): the batch was validated in collate, on the CPU.
        with checks.disabled():
            out = self.contrastive_outputs(batch, self.global_step)
            total, parts = self.losses(out)
            debug = checks.enabled()  # CLSP_CHECKS=1
        # Reading the loss is a device sync: only on logging steps, where Lightning reads it anyway.
        if (debug or self.global_step % max(self.trainer.log_every_n_steps, 1) == 0) and not bool(torch.isfinite(total)):
            raise FloatingPointError(f"non-finite loss at step {self.global_step}: {({k: float(v) for k, v in parts.items()})}")
        self.truncated += batch.truncated
        for reason, n in batch.skipped.items():
            self.skipped[reason] = self.skipped.get(reason, 0) + int(n)
        self.batches_this_epoch += 1
        # Every term on its own (the total alone when there is one term): logged, and in the progress bar.
        terms = {"loss": total.detach(), **(parts if len(parts) > 1 else {})}
        self.log_dict({f"train/{k}": v for k, v in terms.items()}, batch_size=batch.size)
        self.log_dict(terms, prog_bar=True, logger=False, batch_size=batch.size)
        self.log("train/logit_scale", self.model.scale().detach(), batch_size=batch.size)
        now = time.perf_counter()
        if self._last_time is not None:
            rate = batch.size * self.trainer.world_size / max(now - self._last_time, 1e-9)
            self.log("samples_per_s", rate, prog_bar=True, batch_size=batch.size)
        self._last_time = now
        skipped = sum(v for k, v in self.skipped.items() if k not in ("caption_fallback", "no_negative"))
        self.log("data/skipped", float(skipped), prog_bar=bool(skipped), batch_size=batch.size)
        self.log("data/truncated", float(self.truncated), prog_bar=bool(self.truncated), batch_size=batch.size)
        # Real / padded audio samples of this batch (a host float from collate): what bucketing buys.
        self.log("data/padding_efficiency", batch.padding_efficiency, prog_bar=True, batch_size=batch.size)
        return total

    def on_train_batch_start(self, batch, batch_idx) -> None:
        # Restored here, not at load time, so nothing Lightning does while restarting draws from it.
        rng, self._rng_to_restore = self._rng_to_restore, None
        if rng:
            torch.set_rng_state(rng["torch"])
            random.setstate((rng["python"][0], tuple(rng["python"][1]), rng["python"][2]))
            if rng["cuda"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(rng["cuda"])

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        # LAION-CLAP clamps the scale to [0, ln 100] after every step. Inside the step, so the EMA
        # update and any checkpoint that follow see the clamped value.
        scale = self.model.logit_scale
        if hasattr(scale, "ds_id"):  # DeepSpeed ZeRO-3 keeps the parameter partitioned: gather it to clamp it
            import deepspeed

            with deepspeed.zero.GatheredParameters([scale], modifier_rank=0):
                self.model.clamp_logit_scale_()
        else:
            self.model.clamp_logit_scale_()

    def on_train_epoch_start(self) -> None:
        # Not called when a run resumes mid-epoch; on_load_checkpoint sets the count then.
        self.batches_this_epoch = 0
        self._last_time = None

    # ------------------------------------------------------------ validation
    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        # The EMA callback has swapped the average into self.model for validation.
        self._val.append(embed_batch(self.model, batch))

    def on_validation_epoch_end(self) -> None:
        # Each rank embedded its share of the clips; every rank scores the gathered whole, so the
        # values agree across ranks (no sync needed) and equal a single-process validation.
        parts = self._gather_validation(self._val)
        self._val.clear()
        if parts is None:
            return
        metrics = batches_retrieval([parts])
        logged = {f"val/{k}": v for k, v in metrics.items()}
        self.log_dict(logged)
        self.log("val_mAP@10", logged["val/mAP@10"], prog_bar=True, logger=False)

    def _gather_validation(self, parts: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """All ranks' (audio, text, caption_to_clip), rank-major, with clip indices made global."""
        dim = self.model.config.head.dim
        local = _concat(parts, dim)
        if self.trainer.world_size == 1:
            return local if len(local[0]) else None
        audio, text, owner = (x.to(self.device) for x in local)
        sizes = self.all_gather(torch.tensor([len(audio), len(text)], device=self.device)).cpu()  # [W, 2]
        if int(sizes[:, 0].sum()) == 0:
            return None
        n_audio, n_text = int(sizes[:, 0].max()), int(sizes[:, 1].max())
        # all_gather needs equal shapes: pad each rank's rows to the longest, then cut the padding off.
        audio = self.all_gather(_pad_rows(audio, n_audio)).cpu()
        text = self.all_gather(_pad_rows(text, n_text)).cpu()
        owner = self.all_gather(_pad_rows(owner, n_text)).cpu()
        # Each rank's rows without the padding, joined as any embed_batch parts are.
        return _concat([(audio[r, :na], text[r, :nt], owner[r, :nt]) for r, (na, nt) in enumerate(sizes.tolist())])

    # ------------------------------------------------------------ optimizers
    def configure_optimizers(self):
        optimizer = build_optimizer(self.model, self.optim_cfg, self.pretrained_prefixes)
        scheduler = build_scheduler(optimizer, self.optim_cfg, int(self.trainer.estimated_stepping_batches))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ----------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["clsp"] = {
            "model_config": self.model.portable_config().to_dict(),
            "data_position": {"epoch": int(self.current_epoch), "batches": int(self.batches_this_epoch)},
            "skipped": dict(self.skipped),
            "truncated": int(self.truncated),
            # Dropout and friends draw from these; restoring them makes a resumed run exact.
            "rng": {"torch": torch.get_rng_state(), "python": _python_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("clsp", {})
        self.skipped = dict(state.get("skipped", {}))
        self.truncated = int(state.get("truncated", 0))
        self._rng_to_restore = state.get("rng")
        position = state.get("data_position")
        if position is not None:
            self.batches_this_epoch = int(position["batches"])
            datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
            if datamodule is not None:
                datamodule.resume_at(**position)


def _python_rng_state() -> list:
    version, state, gauss = random.getstate()
    return [version, list(state), gauss]


@torch.no_grad()
def embed_batch(model: CLSPModel, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(audio [B, D], captions [C, D], caption_to_clip [C]) of one batch, on the CPU."""
    audio = model.embed_audio(batch.audio, batch.audio_lengths).embeds
    ids, mask = _trim(batch.input_ids, batch.attention_mask)
    text = model.embed_text(ids, mask).embeds
    return audio.float().cpu(), text.float().cpu(), batch.caption_to_clip.cpu()


def batches_retrieval(parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> dict[str, float]:
    """Retrieval metrics (both directions, percent) over embed_batch outputs, plus mean mAP@10."""
    audio, text, owner = _concat(parts)
    out = with_mean_map(retrieval_metrics(audio, text, owner))
    out["n_clips"], out["n_captions"] = float(len(audio)), float(len(text))
    return out


def _concat(parts: list, dim: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """embed_batch outputs joined into one (audio, text, caption_to_clip) with clip indices offset
    (`dim`: the embedding width of the empty result when there are no parts)."""
    if not parts:
        return torch.zeros(0, dim), torch.zeros(0, dim), torch.zeros(0, dtype=torch.long)
    offsets = torch.cumsum(torch.tensor([0] + [len(a) for a, _, _ in parts[:-1]]), 0)
    return (torch.cat([a for a, _, _ in parts]), torch.cat([t for _, t, _ in parts]),
            torch.cat([c + o for (_, _, c), o in zip(parts, offsets.tolist())]))


def _pad_rows(x: torch.Tensor, rows: int) -> torch.Tensor:
    return torch.cat([x, x.new_zeros((rows - len(x), *x.shape[1:]))])


def _trim(ids: torch.Tensor, mask: torch.Tensor, width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop padding columns that no selected row uses (rows were padded for the whole batch).

    `width` (the longest selected row, known on the CPU from collate) avoids reading the mask back
    from the device; without it the mask is read (one sync)."""
    if width is None:
        width = int(mask.sum(1).max())
    return ids[:, :width], mask[:, :width]
