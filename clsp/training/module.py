"""The LightningModule: one contrastive training step, validation retrieval, optimizers.

The step reads: embed the batch's clips and captions (which captions, and their hard negatives, were
chosen by the data), pack what the losses need into `ContrastiveOutputs`, run the loss suite. The
module knows the model only through `embed_audio` / `embed_text` / `scale()` and, when a loss term
captions (`CaptioningLoss`), its caption decoder, teacher-forced on the batch's decoder captions over
the clips' frames (`CLSPModel.decoder_frames`). Parts no loss term reads are frozen (a decoder without a
captioning term, the text side in a captioning-only run), so DDP finds no unused parameters. Validation is the
evaluation package's retrieval path (`clsp.evaluation.retrieval`) over each rank's share of the clips,
plus, for a captioning run, greedy captions on a capped number of them (`clsp.training.caption_validation`).
Counters, EMA, checkpoints and the random state live in callbacks (`clsp.training.callbacks`).
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info

from clsp import checks
from clsp.data.batch import Batch
from clsp.evaluation.clips import Clip
from clsp.evaluation.embed import PairEmbeddings, embed_pairs
from clsp.evaluation.retrieval import join_pairs, retrieval_scores
from clsp.folders import upgrade_state
from clsp.losses import ContrastiveOutputs, LossSuite
from clsp.model import CLSPModel, Embeddings
from clsp.training.caption_validation import CaptionValidation
from clsp.training.optim import build_optimizer, build_scheduler
from clsp.training.schema import OptimConfig


class CLSPTrainingModule(L.LightningModule):
    def __init__(self, model: CLSPModel, losses: LossSuite, optim: OptimConfig | None = None, *,
                 pretrained_prefixes: tuple[str, ...] = (), caption_val_clips: int = 0):
        super().__init__()
        self.model = model
        self.losses = losses
        self.optim_cfg = optim or OptimConfig()
        self.pretrained_prefixes = pretrained_prefixes
        self._val: list[PairEmbeddings] = []
        if losses.needs_captions and model.decoder is None:
            raise ValueError("a loss term trains the caption decoder but the model has none (set model.decoder)")
        captioning = losses.needs_captions and caption_val_clips > 0
        self._captions = CaptionValidation(caption_val_clips) if captioning else None
        self._freeze_unused()

    def _freeze_unused(self) -> None:
        """Freeze what no loss term reads: DDP would fail on parameters that get no gradient."""
        model, unused = self.model, {}
        if model.decoder is not None and not self.losses.needs_captions:
            unused["the caption decoder"] = list(model.decoder.parameters())
        if not self.losses.needs_embeddings:
            scales = [p for p in (model.logit_scale, model.logit_bias) if p is not None]
            unused["the text tower, text head and logit scale"] = [*model.text.parameters(),
                                                                    *model.text_head.parameters(), *scales]
        for what, params in unused.items():
            for param in params:
                param.requires_grad_(False)
            rank_zero_info(f"{what}: frozen, no loss term trains it")

    # ------------------------------------------------------------- one step
    def contrastive_outputs(self, batch: Batch) -> ContrastiveOutputs:
        """Run both towers (and the caption decoder) on a batch and collect what the losses need."""
        model, losses, b = self.model, self.losses, batch.size
        tokens = losses.needs_tokens
        audio = model.embed_audio(batch.audio, batch.audio_lengths, return_tokens=tokens or losses.needs_captions)
        text = model.embed_text(batch.input_ids, batch.attention_mask, return_tokens=tokens) \
            if losses.needs_embeddings else None
        negative = None
        if losses.needs_negatives:
            if batch.negative_input_ids is None:
                raise ValueError("the loss needs hard negatives but the batch has none (set data.hard_negatives)")
            negative = model.embed_text(batch.negative_input_ids, batch.negative_attention_mask).embeds
        logits, ids, mask = self._caption_pass(batch, audio) if losses.needs_captions else (None, None, None)
        return ContrastiveOutputs(
            audio=audio.embeds, text=None if text is None else text.embeds, caption_to_clip=batch.caption_to_clip,
            scale=model.scale(), logit_bias=model.logit_bias,
            audio_tokens=audio.tokens if tokens else None, audio_mask=audio.mask if tokens else None,
            text_tokens=None if text is None or text.tokens is None else text.tokens[:b],
            text_mask=None if text is None or text.mask is None else text.mask[:b],
            negative_text=negative, has_negative=batch.has_negative,
            caption_logits=logits, caption_ids=ids, caption_mask=mask,
        )

    def _caption_pass(self, batch: Batch, audio: Embeddings) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The decoder teacher-forced on the batch's decoder captions over the clips' frames: (logits, ids, mask)."""
        if batch.decoder_input_ids is None:
            raise ValueError("the loss trains the caption decoder but the batch has no decoder captions (build the "
                             "data module with the decoder's tokenizer)")
        width = max(batch.decoder_lengths)  # host-side lengths: no device read
        ids, mask = batch.decoder_input_ids[:, :width], batch.decoder_attention_mask[:, :width]
        return self.model.decoder(self.model.decoder_frames(audio), audio.mask, ids), ids, mask

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        # No host reads in the step (clsp.checks): the batch was validated in collate, on the CPU.
        with checks.disabled():
            total, parts = self.losses(self.contrastive_outputs(batch))
            debug = checks.enabled()  # CLSP_CHECKS=1
        # Reading the loss is a device sync: only on logging steps, where Lightning reads it anyway.
        if (debug or self.global_step % max(self.trainer.log_every_n_steps, 1) == 0) and not bool(torch.isfinite(total)):
            raise FloatingPointError(f"non-finite loss at step {self.global_step}: {({k: float(v) for k, v in parts.items()})}")
        # Every term on its own (the total alone when there is one term): logged, and in the progress bar.
        terms = {"loss": total.detach(), **(parts if len(parts) > 1 else {})}
        self.log_dict({f"train/{k}": v for k, v in terms.items()}, batch_size=batch.size)
        self.log_dict(terms, prog_bar=True, logger=False, batch_size=batch.size)
        self.log("train/logit_scale", self.model.scale().detach(), batch_size=batch.size)
        return total

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        # LAION-CLAP clamps the scale to [0, ln 100] after every step. Inside the step, so the EMA
        # update and any checkpoint that follow see the clamped value.
        scale = self.model.logit_scale
        if hasattr(scale, "ds_id"):  # DeepSpeed ZeRO-3 keeps the parameter partitioned: gather it to clamp it
            import deepspeed  # optional dependency

            with deepspeed.zero.GatheredParameters([scale], modifier_rank=0):
                self.model.clamp_logit_scale_()
        else:
            self.model.clamp_logit_scale_()

    # ------------------------------------------------------------ validation
    def validation_step(self, item: tuple[list[Clip], dict[str, int]], batch_idx: int) -> None:
        # The EMA callback has swapped the average into self.model for validation.
        clips, _ = item
        if clips and self._captions is not None:  # before embed_pairs drops the clips' audio
            self._captions.add(self.model, clips, self.trainer.global_rank, self.trainer.world_size)
        if clips:
            self._val.append(embed_pairs(self.model, clips, batch_size=len(clips)))

    def on_validation_epoch_end(self) -> None:
        # Each rank embedded its share of the clips; every rank scores the gathered whole, so the
        # values agree across ranks (no sync needed) and equal a single-process validation.
        if self._captions is not None:  # every rank takes part in the gather, whatever its share
            self.log_dict({f"val/{k}": v for k, v in self._captions.result(self.trainer.world_size).items()})
        parts, self._val = self._val, []
        joined = self._gather(parts)
        if joined is None:
            return
        metrics, _ = retrieval_scores(*joined)
        # sync_dist: the values are already equal, but Lightning asks for it on epoch-level logs (and warns
        # per key without it); one small all-reduce per validation, a no-op on one process.
        self.log_dict({f"val/{k}": float(v) for k, v in metrics.items()}, sync_dist=True)
        self.log("val_mAP@10", float(metrics["mAP@10"]), prog_bar=True, logger=False, sync_dist=True)

    def _gather(self, parts: list[PairEmbeddings]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """All ranks' (audio, text, caption_to_clip), rank-major, with clip indices made global."""
        dim = self.model.config.head.dim
        local = join_pairs(parts) if parts else None
        audio = local.audio if local else torch.zeros(0, dim)
        text = local.text if local else torch.zeros(0, dim)
        owner = local.caption_to_clip if local else torch.zeros(0, dtype=torch.long)
        if self.trainer.world_size == 1:
            return (audio, text, owner) if len(audio) else None
        sizes = self.all_gather(torch.tensor([len(audio), len(text)], device=self.device)).cpu()  # [W, 2]
        if int(sizes[:, 0].sum()) == 0:
            return None
        # all_gather needs equal shapes: pad each rank's rows to the longest, then cut the padding off.
        n_audio, n_text = int(sizes[:, 0].max()), int(sizes[:, 1].max())
        audio, text, owner = (self.all_gather(_pad_rows(x.to(self.device), n)).cpu()
                              for x, n in ((audio, n_audio), (text, n_text), (owner, n_text)))
        ranks = [PairEmbeddings([""] * na, audio[r, :na], [""] * nt, [""] * nt, owner[r, :nt], text[r, :nt])
                 for r, (na, nt) in enumerate(sizes.tolist())]
        whole = join_pairs(ranks)
        return whole.audio, whole.text, whole.caption_to_clip

    # ------------------------------------------------------------ optimizers
    def configure_optimizers(self):
        # The training device (DeepSpeed builds the optimizer before moving the model): fused kernels on CUDA.
        optimizer = build_optimizer(self.model, self.optim_cfg, self.pretrained_prefixes,
                                    device=self.trainer.strategy.root_device)
        scheduler = build_scheduler(optimizer, self.optim_cfg, int(self.trainer.estimated_stepping_batches))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ----------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The data position is the train loader's own state (`clsp.training.datamodule.ResumableLoader`).
        checkpoint["clsp"] = {"model_config": self.model.portable_config().to_dict()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        for key in ("state_dict", "current_model_state"):  # checkpoints written by older clsp versions
            if key in checkpoint:
                checkpoint[key] = upgrade_state(checkpoint[key], prefix="model.")


def _pad_rows(x: torch.Tensor, rows: int) -> torch.Tensor:
    return torch.cat([x, x.new_zeros((rows - len(x), *x.shape[1:]))])
