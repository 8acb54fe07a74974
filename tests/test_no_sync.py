"""No op in the training step makes the host wait for the GPU: found on the CPU with `SyncTracer`, the
meta device standing in for CUDA (see tests/sync_tracer.py), at tiny size, on the path of
tools/benchmarks/gpu.py's step (towers, global + token + multi-positive (+ hard negative) losses, backward)."""

from __future__ import annotations

import pytest
import torch
from sync_tracer import SyncFound, SyncTracer, meta_device

from clsp import checks
from clsp.config import CLSPConfig
from clsp.data.batch import Batch
from clsp.losses import ContrastiveOutputs
from clsp.model import CLSPModel
from clsp.training.components import build_losses

LOSSES = {"global": {"_target_": "clsp.losses.GlobalInfoNCE"},
          "token": {"_target_": "clsp.losses.TokenInfoNCE", "weight": 0.5},
          "multipositive": {"_target_": "clsp.losses.MultiPositiveInfoNCE", "weight": 0.5},
          "hard": {"_target_": "clsp.losses.HardNegativeLoss", "weight": 0.2}}


def _batch(sample_rate: int, clips: int = 4, seconds: int = 2, tokens: int = 12) -> Batch:
    """Clips of 1 to `seconds` s; a primary caption each, a second one for half of them, hard negatives."""
    g = torch.Generator().manual_seed(0)
    captions = clips + clips // 2
    lengths = torch.randint(sample_rate, sample_rate * seconds + 1, (clips,), generator=g)
    audio = 0.1 * torch.randn(clips, sample_rate * seconds, generator=g) * (
        torch.arange(sample_rate * seconds) < lengths[:, None])
    caption_lengths = torch.randint(3, tokens + 1, (captions,), generator=g)
    mask = (torch.arange(tokens) < caption_lengths[:, None]).long()
    ids = torch.where(mask.bool(), torch.randint(3, 900, (captions, tokens), generator=g), 1)
    owner = torch.cat([torch.arange(clips), torch.arange(clips // 2)])
    return Batch(audio, lengths, ids, mask, owner, caption_kinds=["long"] * clips + ["short"] * (captions - clips),
                 negative_input_ids=ids[:clips].flip(1), negative_attention_mask=mask[:clips].flip(1),
                 has_negative=torch.tensor([True, False] * (clips // 2)), caption_lengths=caption_lengths.tolist(),
                 negative_lengths=[tokens] * clips)


def _model(tower: str) -> CLSPModel:
    return CLSPModel(CLSPConfig.tiny(tower)).train().to("meta")


@pytest.mark.parametrize("tower", ["htsat", "whisper"])
def test_model_and_losses_step_has_no_syncing_op(tower):
    model = _model(tower)
    batch = _batch(model.sample_rate).to("meta")
    losses = build_losses(LOSSES)
    tracer = SyncTracer("meta")
    with meta_device(), checks.disabled(), tracer:
        audio = model.embed_audio(batch.audio, batch.audio_lengths, return_tokens=True)
        text = model.embed_text(batch.input_ids, batch.attention_mask, return_tokens=True)
        negative = model.embed_text(batch.negative_input_ids, batch.negative_attention_mask).embeds
        out = ContrastiveOutputs(audio.embeds, text.embeds, batch.caption_to_clip, model.scale(), None,
                                 audio.tokens, audio.mask, text.tokens[:batch.size], text.mask[:batch.size],
                                 negative, batch.has_negative)
        total, _ = losses(out)
        total.backward()
    assert tracer.syncs == [], "syncing ops in the model + loss step:\n" + "\n".join(tracer.syncs)


def test_training_module_step_has_no_syncing_op():
    from clsp.training.module import CLSPTrainingModule
    from clsp.training.schema import OptimConfig

    model = _model("htsat")
    losses = build_losses(LOSSES)
    module = CLSPTrainingModule(model, losses, OptimConfig(lr=1e-4))
    batch = _batch(model.sample_rate).to("meta")
    tracer = SyncTracer("meta")
    with meta_device(), checks.disabled(), tracer:
        total, _ = losses(module.contrastive_outputs(batch))
        total.backward()
    assert tracer.syncs == [], "syncing ops in the training module's step:\n" + "\n".join(tracer.syncs)


def test_the_tracer_names_each_kind_of_sync():
    device = torch.randn(6, 3, device="meta")
    host_index = torch.tensor([0, 2])
    tracer = SyncTracer("meta")
    with tracer:
        device[host_index]  # a CPU index: uploaded with a blocking copy
        host_index.to("meta")  # blocking upload
        host_index.to("meta", non_blocking=True)  # async: fine
        torch.ones(3, device="meta").repeat_interleave(2)  # a scalar repeat count: the size is known, fine
        host_index.nonzero()  # host work: free
        device * torch.tensor(2.0)  # a 0-dim host scalar: passed by value, fine
    assert [s.split(":")[0] for s in tracer.syncs] == ["index", "_to_copy"], tracer.syncs
    for sync in (lambda: device.sum().item(), lambda: device.nonzero(), lambda: device[device[:, 0] > 0],
                 lambda: torch.ones(3, dtype=torch.long, device="meta").repeat_interleave(
                     torch.ones(3, dtype=torch.long, device="meta"))):
        with pytest.raises((SyncFound, NotImplementedError, RuntimeError)), SyncTracer("meta") as found:
            sync()
        assert found.syncs, sync
    on_cpu = SyncTracer("cpu")  # the CPU as the device: data-dependent ops count wherever they run
    with on_cpu:
        torch.arange(4).nonzero()
        torch.arange(4)[torch.arange(4) > 1]
        torch.tensor([1, 2]).repeat_interleave(torch.tensor([1, 2]), output_size=3)
    assert [s.split(":")[0] for s in on_cpu.syncs] == ["nonzero", "index"], on_cpu.syncs
