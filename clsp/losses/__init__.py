"""Contrastive objectives for audio-text dual encoders.

Every loss is an ``nn.Module`` whose ``forward`` takes one :class:`ContrastiveOutputs`
and returns a scalar. A :class:`LossSuite` weights the terms and reports each one for logging;
the trainer builds it from ``configs/loss/*.yaml`` (``_target_`` entries, ``clsp.training.components``).
One file each: ``base`` (inputs, float32 rule), ``gather``, ``contrastive`` (global terms), ``token``,
``negatives``, ``suite``.

Multi-process scaling (torch.distributed initialised, world size W > 1). Losses that
gather (GlobalInfoNCE, SigLIPLoss, MultiPositiveInfoNCE) use an all-gather whose backward
*sums* the gradient over ranks. The contract, for every mode (full or ``local_loss``):

* the mean over ranks of the returned loss equals the single-process loss on the
  concatenated (gathered) batch; without ``local_loss`` every rank returns exactly that value;
* on each rank, the gradient w.r.t. that rank's inputs is ``W x`` the gradient of the
  single-process loss w.r.t. those rows. DDP (and DeepSpeed) *average* gradients over the
  W ranks, so the parameter update is exactly the single-process update on the global batch.

Batch sizes may differ across ranks (a short last batch): tensors are padded to the
largest size for the collective and trimmed after it.

Precision. Every loss computes its logits, log-softmax and log-sigmoid in float32 whatever the
autocast state: bf16/fp16 inputs are upcast and autocast is off inside ``forward`` (the B x B
work is small beside the towers, and bf16 logits put the loss ~1 % off). float64 inputs stay float64.

Host syncs. Nothing in a loss reads a device tensor on the host, except value checks that run only
when ``clsp.checks.enabled()`` (off in the training step) and the per-rank size exchange when
several processes gather.
"""

from clsp.losses.base import ContrastiveOutputs
from clsp.losses.captioning import CaptioningLoss
from clsp.losses.contrastive import GlobalInfoNCE, MultiPositiveInfoNCE, SigLIPLoss
from clsp.losses.gather import gather_with_grad
from clsp.losses.negatives import HardNegativeLoss
from clsp.losses.suite import LossSuite
from clsp.losses.token import TokenInfoNCE

__all__ = [
    "ContrastiveOutputs",
    "GlobalInfoNCE",
    "SigLIPLoss",
    "MultiPositiveInfoNCE",
    "TokenInfoNCE",
    "HardNegativeLoss",
    "CaptioningLoss",
    "LossSuite",
    "gather_with_grad",
]
