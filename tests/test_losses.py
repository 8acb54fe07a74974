"""Single-process checks of clsp.losses against plain reference computations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from clsp.losses import (
    CaptioningLoss,
    ContrastiveOutputs,
    GlobalInfoNCE,
    HardNegativeLoss,
    LossSuite,
    MultiPositiveInfoNCE,
    SigLIPLoss,
    TokenInfoNCE,
)


def unit(*shape: int, dtype=torch.float64) -> torch.Tensor:
    return F.normalize(torch.randn(*shape, dtype=dtype), dim=-1).requires_grad_()


def outputs(b: int = 6, d: int = 8, extra: int = 0, **kw) -> ContrastiveOutputs:
    owner = torch.cat([torch.arange(b), torch.randint(0, b, (extra,))])
    return ContrastiveOutputs(
        audio=unit(b, d), text=unit(b + extra, d), caption_to_clip=owner,
        scale=torch.tensor(10.0, dtype=torch.float64, requires_grad=True), **kw,
    )


# ----------------------------------------------------------------------------- reference computations


def ref_infonce(a, t, s):
    b = a.shape[0]
    logits = (s * a @ t.T).tolist()
    total = 0.0
    for i in range(b):  # plain per-row log-softmax, both directions
        row = logits[i]
        col = [logits[j][i] for j in range(b)]
        total += -(row[i] - math.log(sum(math.exp(x) for x in row)))
        total += -(col[i] - math.log(sum(math.exp(x) for x in col)))
    return total / (2 * b)


def ref_siglip(a, t, s, bias):
    b = a.shape[0]
    logits = (s * a @ t.T + bias).tolist()
    total = 0.0
    for i in range(b):
        for j in range(b):
            z = 1.0 if i == j else -1.0
            total += -math.log(1 / (1 + math.exp(-z * logits[i][j])))
    return total / b


def ref_multipositive(a, t, owner, s):
    logits = (s * a @ t.T).tolist()
    owner = owner.tolist()
    b, c = len(logits), len(owner)
    a2t = 0.0
    for i in range(b):
        lse = math.log(sum(math.exp(x) for x in logits[i]))
        mine = [j for j in range(c) if owner[j] == i]
        a2t += -sum((logits[i][j] - lse) / len(mine) for j in mine)
    t2a = 0.0
    for j in range(c):
        col = [logits[i][j] for i in range(b)]
        t2a += -(col[owner[j]] - math.log(sum(math.exp(x) for x in col)))
    return (a2t / b + t2a / c) / 2


def ref_token_scores(a, am, t, tm):
    """Naive late interaction over the full [B, B, Ta, Tt] tensor."""
    sim = torch.einsum("ifd,jtd->ijft", a, t)
    s_t2a = sim.masked_fill(~am[:, None, :, None], -math.inf).amax(2)
    s_t2a = (s_t2a * tm[None]).sum(-1) / tm.sum(-1)[None]
    s_a2t = sim.masked_fill(~tm[None, :, None, :], -math.inf).amax(3)
    s_a2t = (s_a2t * am[:, None]).sum(-1) / am.sum(-1)[:, None]
    return s_t2a, s_a2t


def ref_token_loss(a, am, t, tm, s):
    s_t2a, s_a2t = ref_token_scores(a, am, t, tm)
    labels = torch.arange(a.shape[0])
    return (F.cross_entropy(s * s_t2a.T, labels) + F.cross_entropy(s * s_a2t, labels)) / 2


def token_inputs(b=5, ta=7, tt=6, d=8, dtype=torch.float64):
    a = F.normalize(torch.randn(b, ta, d, dtype=dtype), dim=-1)
    t = F.normalize(torch.randn(b, tt, d, dtype=dtype), dim=-1)
    am = torch.arange(ta)[None] < torch.randint(1, ta + 1, (b,))[:, None]
    tm = torch.arange(tt)[None] < torch.randint(1, tt + 1, (b,))[:, None]
    am[0] = True  # at least one full row
    return a, am, t, tm


# ----------------------------------------------------------------------------- global losses


def test_global_infonce_matches_reference():
    out = outputs(extra=3)
    loss = GlobalInfoNCE()(out)
    assert loss.item() == pytest.approx(ref_infonce(out.audio, out.text[:6], 10.0), abs=1e-10)


def test_global_infonce_aligned_beats_shuffled():
    a = unit(8, 16)
    aligned = ContrastiveOutputs(a, a.detach().clone(), torch.arange(8), torch.tensor(20.0))
    shuffled = ContrastiveOutputs(a, a.detach()[torch.randperm(8)], torch.arange(8), torch.tensor(20.0))
    assert GlobalInfoNCE()(aligned) < GlobalInfoNCE()(shuffled)
    assert SigLIPLoss()(ContrastiveOutputs(**{**aligned.__dict__, "logit_bias": torch.tensor(-5.0)})) < SigLIPLoss()(
        ContrastiveOutputs(**{**shuffled.__dict__, "logit_bias": torch.tensor(-5.0)})
    )


def test_siglip_matches_reference_and_needs_bias():
    out = outputs(logit_bias=torch.tensor(-3.0, dtype=torch.float64))
    loss = SigLIPLoss()(out)
    assert loss.item() == pytest.approx(ref_siglip(out.audio, out.text, 10.0, -3.0), abs=1e-10)
    with pytest.raises(ValueError, match="logit_bias"):
        SigLIPLoss()(outputs())


def test_multipositive_matches_reference():
    out = outputs(b=4, extra=5)
    loss = MultiPositiveInfoNCE()(out)
    ref = ref_multipositive(out.audio, out.text, out.caption_to_clip, 10.0)
    assert loss.item() == pytest.approx(ref, abs=1e-10)


def test_multipositive_single_caption_equals_global():
    out = outputs()
    assert MultiPositiveInfoNCE()(out).item() == pytest.approx(GlobalInfoNCE()(out).item(), abs=1e-12)


def test_multipositive_rejects_bad_owner():
    out = outputs(extra=1)
    out.caption_to_clip[-1] = 99
    with pytest.raises(ValueError, match="caption_to_clip"):
        MultiPositiveInfoNCE()(out)


def test_shape_errors_name_the_loss():
    out = outputs()
    out.text = out.text[:3]
    with pytest.raises(ValueError, match="GlobalInfoNCE.*C >= B"):
        GlobalInfoNCE()(out)


# ----------------------------------------------------------------------------- token loss


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 16])
def test_token_infonce_chunked_equals_naive(chunk):
    a, am, t, tm = token_inputs()
    a1, t1 = a.clone().requires_grad_(), t.clone().requires_grad_()
    a2, t2 = a.clone().requires_grad_(), t.clone().requires_grad_()
    s1 = torch.tensor(7.0, dtype=torch.float64, requires_grad=True)
    s2 = s1.detach().clone().requires_grad_()
    out = ContrastiveOutputs(a1[:, 0], t1[:, 0], torch.arange(5), s1, audio_tokens=a1, audio_mask=am,
                             text_tokens=t1, text_mask=tm)
    loss = TokenInfoNCE(chunk_size=chunk)(out)
    ref = ref_token_loss(a2, am, t2, tm, s2)
    torch.testing.assert_close(loss, ref, atol=1e-5, rtol=0)
    loss.backward()
    ref.backward()
    for got, want in [(a1.grad, a2.grad), (t1.grad, t2.grad), (s1.grad, s2.grad)]:
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_token_infonce_float32_grads_match():
    a, am, t, tm = token_inputs(b=9, dtype=torch.float32)
    a1, t1 = a.clone().requires_grad_(), t.clone().requires_grad_()
    a2, t2 = a.clone().requires_grad_(), t.clone().requires_grad_()
    out = ContrastiveOutputs(a1[:, 0], t1[:, 0], torch.arange(9), torch.tensor(10.0), audio_tokens=a1,
                             audio_mask=am, text_tokens=t1, text_mask=tm)
    TokenInfoNCE(chunk_size=4)(out).backward()
    ref_token_loss(a2, am, t2, tm, torch.tensor(10.0)).backward()
    torch.testing.assert_close(a1.grad, a2.grad, atol=1e-5, rtol=0)
    torch.testing.assert_close(t1.grad, t2.grad, atol=1e-5, rtol=0)


def test_token_infonce_ignores_padding_values():
    a, am, t, tm = token_inputs()
    am[1, 3:] = False
    tm[2, 2:] = False

    def run(fill):
        a_in, t_in = a.clone(), t.clone()
        a_in[~am] = fill
        t_in[~tm] = fill
        a_in.requires_grad_()
        t_in.requires_grad_()
        out = ContrastiveOutputs(a[:, 0], t[:, 0], torch.arange(5), torch.tensor(5.0), audio_tokens=a_in,
                                 audio_mask=am, text_tokens=t_in, text_mask=tm)
        loss = TokenInfoNCE(chunk_size=2)(out)
        loss.backward()
        return loss, a_in.grad, t_in.grad

    base = run(0.0)
    for fill in (1e6, -1e6, float("nan")):
        got = run(fill)
        torch.testing.assert_close(got[0], base[0], atol=1e-12, rtol=0)
        torch.testing.assert_close(got[1], base[1], atol=1e-12, rtol=0)
        torch.testing.assert_close(got[2], base[2], atol=1e-12, rtol=0)
    assert base[1][~am].abs().sum() == 0  # padding gets no gradient


def test_token_infonce_aligned_beats_shuffled_and_errors():
    a, am, t, _ = token_inputs(tt=7)
    perm = torch.tensor([1, 2, 3, 4, 0])
    loss_fn = TokenInfoNCE()

    def make(text_tokens):
        return ContrastiveOutputs(a[:, 0], a[:, 0], torch.arange(5), torch.tensor(10.0), audio_tokens=a,
                                  audio_mask=am, text_tokens=text_tokens, text_mask=am)

    assert loss_fn(make(a)) < loss_fn(make(a[perm]))
    bad = make(a)
    bad.text_mask = am.clone()
    bad.text_mask[2] = False
    with pytest.raises(ValueError, match="valid token"):
        loss_fn(bad)
    with pytest.raises(ValueError, match="chunk_size"):
        TokenInfoNCE(chunk_size=0)


def test_token_infonce_no_grad_and_partial_grad():
    a, am, t, tm = token_inputs()
    t_leaf = t.clone().requires_grad_()
    out = ContrastiveOutputs(a[:, 0], t[:, 0], torch.arange(5), torch.tensor(4.0), audio_tokens=a,
                             audio_mask=am, text_tokens=t_leaf, text_mask=tm)
    with torch.no_grad():
        value = TokenInfoNCE(chunk_size=2)(out)
    loss = TokenInfoNCE(chunk_size=2)(out)
    torch.testing.assert_close(value, loss.detach())
    loss.backward()  # only the text side needs a gradient here
    t_ref = t.clone().requires_grad_()
    ref_token_loss(a, am, t_ref, tm, torch.tensor(4.0)).backward()
    torch.testing.assert_close(t_leaf.grad, t_ref.grad, atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------- hard negatives


def test_hard_negative_reference_and_mask():
    neg = unit(6, 8)
    has = torch.tensor([True, False, True, True, False, True])
    out = outputs(negative_text=neg, has_negative=has)
    loss = HardNegativeLoss()(out)
    a, t, n = out.audio.detach(), out.text.detach(), neg.detach()
    ref = []
    for i in range(6):
        if has[i]:
            lp, ln = 10 * float(a[i] @ t[i]), 10 * float(a[i] @ n[i])
            ref.append(-(lp - math.log(math.exp(lp) + math.exp(ln))))
    assert loss.item() == pytest.approx(sum(ref) / len(ref), abs=1e-10)


def test_hard_negative_none_is_zero_with_graph():
    neg = torch.full((6, 8), float("nan"), dtype=torch.float64)
    out = outputs(negative_text=neg, has_negative=torch.zeros(6, dtype=torch.bool))
    loss = HardNegativeLoss()(out)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.isfinite(out.audio.grad).all() and out.audio.grad.abs().sum() == 0


# ----------------------------------------------------------------------------- suite and config


def test_suite_rejects_bad_terms():
    with pytest.raises(ValueError, match="without '.'"):
        LossSuite({"a.b": (GlobalInfoNCE(), 1.0)})
    with pytest.raises(ValueError, match="'g'.*nn.Module"):
        LossSuite({"g": (lambda out: out, 1.0)})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="'g'.*finite"):
        LossSuite({"g": (GlobalInfoNCE(), float("inf"))})


def test_suite_reports_missing_inputs_by_term():
    suite = LossSuite({"tok": (TokenInfoNCE(), 1.0), "sig": (SigLIPLoss(), 1.0)})
    assert suite.needs_tokens
    with pytest.raises(ValueError, match="'tok'.*audio_tokens"):
        suite(outputs(logit_bias=torch.tensor(-1.0)))
    suite = LossSuite({"sig": (SigLIPLoss(), 1.0)})
    with pytest.raises(ValueError, match="'sig'.*logit_bias"):
        suite(outputs())


# ----------------------------------------------------------------------------- captioning


def ref_captioning(logits, ids, mask, smoothing: float) -> float:
    """Plain loops: token t + 1 scored at position t, over real tokens only, smoothed as F.cross_entropy does."""
    total, count = 0.0, 0
    for b in range(ids.shape[0]):
        for t in range(ids.shape[1] - 1):
            if not mask[b, t + 1]:
                continue
            row = logits[b, t].tolist()
            lse = math.log(sum(math.exp(x) for x in row))
            logp = [x - lse for x in row]
            target = int(ids[b, t + 1])
            total += -(1 - smoothing) * logp[target] - smoothing * sum(logp) / len(logp)
            count += 1
    return total / count


def caption_inputs(dtype=torch.float64, vocab: int = 11):
    lengths = torch.tensor([6, 3, 5])  # <bos> ... <eos> per caption; the rest is padding
    mask = torch.arange(6)[None] < lengths[:, None]
    ids = torch.randint(0, vocab, (3, 6))
    ids[~mask] = 1  # the pad id, which is also a real token id: only the mask tells them apart
    logits = (3 * torch.randn(3, 6, vocab, dtype=dtype)).requires_grad_()
    return logits, ids, mask


def caption_outputs(logits, ids, mask) -> ContrastiveOutputs:
    b = ids.shape[0]
    return ContrastiveOutputs(unit(b, 4), unit(b, 4), torch.arange(b), torch.tensor(10.0),
                              caption_logits=logits, caption_ids=ids, caption_mask=mask)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_captioning_matches_a_naive_reference_with_padding(smoothing):
    logits, ids, mask = caption_inputs()
    value = CaptioningLoss(label_smoothing=smoothing)(caption_outputs(logits, ids, mask))
    assert value.dtype == torch.float64
    assert value.item() == pytest.approx(ref_captioning(logits.detach(), ids, mask, smoothing), rel=1e-12)
    value.backward()
    padded = ~mask[:, 1:]  # positions whose next token is padding get no gradient; the last position never does
    assert logits.grad[:, :-1][padded].abs().max() == 0 and logits.grad[:, -1].abs().max() == 0
    assert logits.grad[:, :-1][~padded].abs().min() > 0


def test_captioning_under_bf16_autocast_is_float32_and_close_to_float64():
    logits, ids, mask = caption_inputs(vocab=1000)
    exact = CaptioningLoss()(caption_outputs(logits, ids, mask)).item()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = CaptioningLoss()(caption_outputs(logits.detach().bfloat16(), ids, mask))
    assert value.dtype == torch.float32
    # bf16 logits themselves are ~0.4 % off; the loss adds no low-precision error on top of that
    rounded = CaptioningLoss()(caption_outputs(logits.detach().bfloat16().double(), ids, mask)).item()
    assert value.item() == pytest.approx(rounded, rel=1e-5) and value.item() == pytest.approx(exact, rel=1e-2)


def test_captioning_inputs_are_checked():
    logits, ids, mask = caption_inputs()
    with pytest.raises(ValueError, match="caption_logits"):
        CaptioningLoss()(caption_outputs(logits, ids[:, :4], mask))
    with pytest.raises(ValueError, match="label_smoothing"):
        CaptioningLoss(label_smoothing=1.0)
    suite = LossSuite({"caption": (CaptioningLoss(), 1.0)})
    assert suite.needs_captions and not suite.needs_tokens
    assert not LossSuite({"global": (GlobalInfoNCE(), 1.0)}).needs_captions
    with pytest.raises(ValueError, match="caption_logits"):
        suite(outputs())
