"""Every loss under CPU bf16 autocast, from bf16 embeddings, equals its float64 value within 0.1 %.

bf16 logits put GlobalInfoNCE ~0.8 % and SigLIP 1.5-3.3 % off at B=256; clsp computes the logits,
log-softmax and log-sigmoid in float32 whatever the autocast state.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from clsp.losses import (
    ContrastiveOutputs,
    GlobalInfoNCE,
    HardNegativeLoss,
    MultiPositiveInfoNCE,
    SigLIPLoss,
    TokenInfoNCE,
)

B, D = 256, 512


def _bf16_unit(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, dim=-1).bfloat16()


def _outputs(b: int = B, tokens: bool = False) -> ContrastiveOutputs:
    """Trained-like bf16 embeddings: each caption close to its clip, so logits spread widely."""
    g = torch.Generator().manual_seed(0)
    audio = torch.randn(b, D, generator=g)
    text = audio + 6.0 * torch.randn(b, D, generator=g)
    extra = audio[: b // 2] + 6.0 * torch.randn(b // 2, D, generator=g)
    negative = text + 0.3 * torch.randn(b, D, generator=g)
    kw = {}
    if tokens:
        ta, tt = 16, 24
        a_tok = audio[:, None] + 1.5 * torch.randn(b, ta, D, generator=g)
        t_tok = audio[:, None] + 1.5 * torch.randn(b, tt, D, generator=g)
        kw = dict(
            audio_tokens=_bf16_unit(a_tok), text_tokens=_bf16_unit(t_tok),
            audio_mask=torch.arange(ta)[None] < torch.randint(4, ta + 1, (b,), generator=g)[:, None],
            text_mask=torch.arange(tt)[None] < torch.randint(4, tt + 1, (b,), generator=g)[:, None],
        )
    return ContrastiveOutputs(
        audio=_bf16_unit(audio),
        text=torch.cat([_bf16_unit(text), _bf16_unit(extra)]),
        caption_to_clip=torch.cat([torch.arange(b), torch.arange(b // 2)]),
        # The clamp maximum, where trained models sit; token scores are means of maxima, so a milder scale.
        scale=torch.tensor(1 / 0.07 if tokens else 100.0).bfloat16(),
        logit_bias=torch.tensor(-10.0).bfloat16(),
        negative_text=_bf16_unit(negative),
        has_negative=torch.rand(b, generator=g) < 0.9,
        **kw,
    )


def _float64(out: ContrastiveOutputs) -> ContrastiveOutputs:
    return dataclasses.replace(out, **{
        f.name: getattr(out, f.name).double() for f in dataclasses.fields(out)
        if isinstance(getattr(out, f.name), torch.Tensor) and getattr(out, f.name).is_floating_point()
    })


@pytest.mark.parametrize("loss, b, tokens", [
    (GlobalInfoNCE(), B, False),
    (SigLIPLoss(), B, False),
    (MultiPositiveInfoNCE(), B, False),
    (HardNegativeLoss(), B, False),
    (TokenInfoNCE(chunk_size=16), 64, True),
], ids=lambda x: type(x).__name__ if isinstance(x, torch.nn.Module) else None)
def test_loss_under_bf16_autocast_matches_float64(loss, b, tokens):
    out = _outputs(b, tokens)
    exact = loss(_float64(out)).item()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss(out)
    assert value.dtype == torch.float32
    assert abs(value.item() - exact) <= 1e-3 * abs(exact), (value.item(), exact)


def test_float64_inputs_stay_float64():
    out = _float64(_outputs(8))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert GlobalInfoNCE()(out).dtype == torch.float64
