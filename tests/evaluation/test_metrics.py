"""Retrieval / zero-shot / correlation metrics against hand-computed and independent values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from torchmetrics.retrieval import RetrievalHitRate, RetrievalMAP, RetrievalRecall

from clsp.evaluation.metrics import (
    pearson,
    retrieval_metrics,
    retrieval_ranks,
    spearman,
    zeroshot_metrics,
)


def _designed(sims: list[list[float]]) -> tuple[torch.Tensor, torch.Tensor]:
    # audio = identity, text = the rows: text @ audio.T is exactly `sims` [M, N].
    s = torch.tensor(sims, dtype=torch.float64)
    return torch.eye(s.shape[1], dtype=torch.float64), s


def _dense_ranks(audio, text, c2c):
    """Reference: the full similarity matrix, strictly-greater counting, relevant ranks per clip."""
    sims = text @ audio.T
    c2c = torch.as_tensor(c2c)
    target = sims[torch.arange(len(c2c)), c2c]
    t2a = (sims > target[:, None]).sum(1) + 1
    a2t = []
    for n in range(audio.shape[0]):
        row = sims[:, n]
        rel = (c2c == n).nonzero().flatten()
        a2t.append(sorted(int((row > row[m]).sum()) + 1 for m in rel))
    return t2a, a2t


def _ap10(rel_ranks: list[int]) -> float:
    """Standard AP@10 over relevant items from their 1-based ranks (no ties)."""
    hits = [r for r in sorted(rel_ranks) if r <= 10]
    return sum((j + 1) / r for j, r in enumerate(hits)) / min(len(rel_ranks), 10)


def test_hand_built_ranks():
    # 3 clips, 4 captions: captions 0,1 -> clip 0; 2 -> clip 1; 3 -> clip 2.
    sims = [
        [0.9, 0.1, 0.2],  # caption 0: clip 0 first -> rank 1
        [0.3, 0.5, 0.4],  # caption 1: clip 0 third -> rank 3
        [0.8, 0.7, 0.1],  # caption 2: clip 1 second -> rank 2
        [0.6, 0.2, 0.1],  # caption 3: clip 2 third -> rank 3
    ]
    audio, text = _designed(sims)
    ranks = retrieval_ranks(audio, text, [0, 0, 1, 2])
    assert ranks.t2a.tolist() == [1, 3, 2, 3]
    # a2t: clip 0 column [0.9, 0.3, 0.8, 0.6] -> captions 0 (rank 1), 1 (rank 4)
    #      clip 1 column [0.1, 0.5, 0.7, 0.2] -> caption 2 rank 1; clip 2 [0.2,0.4,0.1,0.1] -> caption 3 rank 3
    assert ranks.a2t_top[0].tolist() == [1, 4]
    assert ranks.a2t_best.tolist() == [1, 1, 3]
    m = retrieval_metrics(audio, text, [0, 0, 1, 2])
    assert m["t2a/R@1"] == pytest.approx(25.0)
    assert m["t2a/R@5"] == pytest.approx(100.0)
    assert m["t2a/mAP@10"] == pytest.approx(100 * (1 + 1 / 3 + 1 / 2 + 1 / 3) / 4)
    assert m["t2a/median_rank"] == pytest.approx(2.5)
    assert m["t2a/mean_rank"] == pytest.approx(9 / 4)
    assert m["a2t/R@1"] == pytest.approx(100 * 2 / 3)
    assert m["a2t/median_rank"] == 1.0
    # clip 0: AP = (1/1 + 2/4) / 2; clip 1: 1; clip 2: 1/3
    assert m["a2t/mAP@10"] == pytest.approx(100 * ((1 + 0.5) / 2 + 1 + 1 / 3) / 3)
    assert m["a2t/mAP@10_best"] == pytest.approx(100 * (1 + 1 + 1 / 3) / 3)


def test_ties_count_only_strictly_greater():
    sims = [[0.5, 0.5, 0.5], [0.2, 0.2, 0.9]]
    audio, text = _designed(sims)
    ranks = retrieval_ranks(audio, text, [1, 0])
    assert ranks.t2a.tolist() == [1, 2]  # all tied -> rank 1; 0.2 vs 0.9 -> one strictly greater
    # Two relevant captions tied with each other take consecutive positions.
    audio, text = _designed([[0.7, 0.0], [0.7, 0.0], [0.9, 0.0]])
    ranks = retrieval_ranks(audio, text, [0, 0, 1])
    assert ranks.a2t_top[0].tolist() == [2, 3]
    m = retrieval_metrics(audio, text, [0, 0, 1])
    assert ranks.a2t_best.tolist() == [2, 1]  # clip 1's column is all 0.0: its caption ties -> rank 1
    clip0, clip1 = (1 / 2 + 2 / 3) / 2, 1.0
    assert m["a2t/mAP@10"] == pytest.approx(100 * (clip0 + clip1) / 2)


def test_best_of_captions_differs_from_average():
    # Clip 0 has 5 captions; only caption 0 ranks clip 0's captions first.
    torch.manual_seed(1)
    n, d = 4, 8
    audio = torch.nn.functional.normalize(torch.randn(n, d), dim=-1)
    c2c = torch.tensor([0, 0, 0, 0, 0, 1, 2, 3])
    text = torch.nn.functional.normalize(torch.randn(len(c2c), d), dim=-1)
    text[0] = audio[0] * 10  # caption 0 is the best match of clip 0 overall
    ranks = retrieval_ranks(audio, text, c2c)
    m = retrieval_metrics(audio, text, c2c)
    best = ranks.a2t_best
    assert best[0] == 1
    per_caption_hit = (ranks.a2t_top[0] == 1).float().mean()  # the averaged (wrong) protocol
    assert per_caption_hit < 1
    assert m["a2t/R@1"] == pytest.approx(100 * (best <= 1).float().mean().item())
    # t2a averages over all 8 captions, not over clips.
    assert m["t2a/R@1"] == pytest.approx(100 * (ranks.t2a <= 1).float().mean().item())
    assert m["t2a/R@1"] * 8 % 100 == pytest.approx(0, abs=1e-6)


def _random_case(seed: int, n: int = 30, per_clip=(5,), d: int = 16):
    g = torch.Generator().manual_seed(seed)
    audio = torch.nn.functional.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=-1)
    counts = [per_clip[i % len(per_clip)] for i in range(n)]
    c2c = torch.repeat_interleave(torch.arange(n), torch.tensor(counts))
    c2c = c2c[torch.randperm(len(c2c), generator=g)]  # captions in any order
    text = audio[c2c] + 1.2 * torch.randn(len(c2c), d, generator=g, dtype=torch.float64)
    return audio, torch.nn.functional.normalize(text, dim=-1), c2c


@pytest.mark.parametrize("per_clip", [(5,), (1, 3, 0, 2), (20, 1)])
def test_chunked_equals_dense(per_clip):
    audio, text, c2c = _random_case(0, per_clip=per_clip)
    t2a, a2t = _dense_ranks(audio, text, c2c)
    for chunk in (1, 7, None):
        ranks = retrieval_ranks(audio, text, c2c, chunk_size=chunk)
        assert torch.equal(ranks.t2a, t2a)
        queries = [r for r in a2t if r]  # clips without captions are not a2t queries
        assert ranks.a2t_best.tolist() == [r[0] for r in queries]
        assert ranks.a2t_count.tolist() == [len(r) for r in queries]
        width = ranks.a2t_top.shape[1]
        assert ranks.a2t_top.tolist() == [[x for x in r if x <= 10] + [0] * (width - sum(x <= 10 for x in r)) for r in queries]
    m = retrieval_metrics(audio, text, c2c, chunk_size=5)
    queries = [r for r in a2t if r]
    assert any(r[0] > 10 for r in queries) and any(len(r) > 1 and r[1] <= 10 for r in queries)  # both regimes hit
    assert m["a2t/mAP@10"] == pytest.approx(100 * np.mean([_ap10(r) for r in queries]))
    assert m["a2t/R@5"] == pytest.approx(100 * np.mean([r[0] <= 5 for r in queries]))


def test_against_torchmetrics():
    audio, text, c2c = _random_case(3, n=40, per_clip=(5,))
    m = retrieval_metrics(audio.float(), text.float(), c2c)
    sims = (text @ audio.T).float() + 3  # torchmetrics ignores targets whose score is <= 0
    m_idx, n_idx = torch.meshgrid(torch.arange(len(c2c)), torch.arange(len(audio)), indexing="ij")
    target = c2c[m_idx] == n_idx
    for k in (1, 5, 10):
        r = RetrievalRecall(top_k=k)(sims.flatten(), target.flatten(), indexes=m_idx.flatten())
        assert m[f"t2a/R@{k}"] == pytest.approx(100 * r.item(), abs=1e-4)
        h = RetrievalHitRate(top_k=k)(sims.T.flatten(), target.T.flatten(), indexes=n_idx.T.flatten())
        assert m[f"a2t/R@{k}"] == pytest.approx(100 * h.item(), abs=1e-4)
    ap = RetrievalMAP(top_k=10)(sims.flatten(), target.flatten(), indexes=m_idx.flatten())
    assert m["t2a/mAP@10"] == pytest.approx(100 * ap.item(), abs=1e-4)


def test_a2t_map_matches_torchmetrics_when_all_relevant_in_top10():
    # torchmetrics divides by the relevant items found in the top k; with <= 10 candidates all are found,
    # so it equals the standard AP@10 (divide by min(n_relevant, 10)).
    audio, text, c2c = _random_case(5, n=3, per_clip=(3,))
    m = retrieval_metrics(audio, text, c2c)
    sims = (audio @ text.T).float() + 3
    n_idx, m_idx = torch.meshgrid(torch.arange(3), torch.arange(len(c2c)), indexing="ij")
    target = c2c[m_idx] == n_idx
    ap = RetrievalMAP(top_k=10)(sims.flatten(), target.flatten(), indexes=n_idx.flatten())
    assert m["a2t/mAP@10"] == pytest.approx(100 * ap.item(), abs=1e-4)


def test_retrieval_bad_inputs():
    audio, text, c2c = _random_case(1, n=4)
    with pytest.raises(ValueError, match="caption_to_clip"):
        retrieval_metrics(audio, text, c2c[:-1])
    with pytest.raises(ValueError, match=r"caption_to_clip\[\d+\] = 4"):
        retrieval_metrics(audio, text, torch.where(c2c == 3, 4, c2c))
    with pytest.raises(ValueError, match="dims differ"):
        retrieval_metrics(audio, text[:, :3], c2c)
    with pytest.raises(ValueError, match="empty"):
        retrieval_metrics(audio[:0], text[:0], c2c[:0])


def test_zeroshot_metrics_hand_computed():
    classes = torch.eye(3)
    # true:  0 0 0 1 1 2 ; predicted (nearest class): 0 0 1 1 1 0
    audio = classes[[0, 0, 1, 1, 1, 0]]
    m = zeroshot_metrics(audio, classes, [0, 0, 0, 1, 1, 2], ["a", "b", "c"])
    assert m["WA"] == pytest.approx(100 * 4 / 6)
    assert m["per_class_recall"] == pytest.approx({"a": 100 * 2 / 3, "b": 100.0, "c": 0.0})
    assert m["UAR"] == pytest.approx(100 * (2 / 3 + 1 + 0) / 3)
    assert m["confusion"] == [[2, 1, 0], [0, 2, 0], [1, 0, 0]]
    with pytest.raises(ValueError, match="class indices"):
        zeroshot_metrics(audio, classes, [0, 0, 0, 1, 1, 3])


def test_correlations_match_scipy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=50)
    y = x + rng.normal(size=50)
    y[::7] = 1.0  # ties
    xr = np.round(x, 1)  # more ties
    assert pearson(x, y) == pytest.approx(stats.pearsonr(x, y)[0], abs=1e-12)
    assert spearman(xr, y) == pytest.approx(stats.spearmanr(xr, y)[0], abs=1e-6)  # torchmetrics' epsilon
    with pytest.raises(ValueError, match="constant"):
        pearson(np.ones(4), np.arange(4))


def test_protocol_variants_hand_computed():
    # 2 clips, 3 captions: captions 0, 1 -> clip 0 (stored in that order); caption 2 -> clip 1.
    sims = [
        [0.1, 0.2],  # caption 0
        [0.9, 0.3],  # caption 1
        [0.5, 0.8],  # caption 2
    ]
    audio, text = _designed(sims)
    m = retrieval_metrics(audio, text, [0, 0, 1])
    # Clip 0 ranks the captions 1 > 2 > 0: caption 0 (stored first) at position 3, caption 1 at 1.
    sorted_ap = (1 / 1 + 2 / 3) / 2  # WavCaps / standard: positions sorted ascending
    laion_ap = (1 / 3 + 2 / 1) / 2  # LAION: stored order, j counts in that order (can pass 1)
    assert m["a2t/mAP@10"] == pytest.approx(100 * (sorted_ap + 1) / 2)
    assert m["a2t/mAP@10_laion"] == pytest.approx(100 * (laion_ap + 1) / 2)
    assert m["a2t/mAP@10_best"] == pytest.approx(100.0)  # both clips' best caption is first
    # Stored in rank order the two agree.
    m2 = retrieval_metrics(audio, text[[1, 0, 2]], [0, 0, 1])
    assert m2["a2t/mAP@10_laion"] == pytest.approx(m2["a2t/mAP@10"])
    # medR: t2a ranks [1, 3, 2, 3] -> numpy median 2.5; LAION/WavCaps floor(median([0, 2, 1, 2])) + 1 = 2.
    audio, text = _designed([[0.9, 0.1, 0.2], [0.3, 0.5, 0.4], [0.8, 0.7, 0.1], [0.6, 0.2, 0.1]])
    m = retrieval_metrics(audio, text, [0, 0, 1, 2])
    assert m["t2a/median_rank"] == 2.5 and m["t2a/medR"] == 2.0
    assert m["a2t/medR"] == 1.0  # best ranks [1, 1, 3]


def _laion_reference(audio, text, c2c):
    """LAION-CLAP's evaluate_clotho_audiocaps a2t mAP@10 and WavCaps' medR, written out with argsort."""
    logits = (audio @ text.T).numpy()
    c2c = np.asarray(c2c)
    maps = []
    for d in range(audio.shape[0]):
        ranking = np.argsort(-logits[d])
        preds = np.array([np.where(ranking == m)[0][0] for m in np.flatnonzero(c2c == d)])  # stored order
        hits = preds[preds < 10]
        maps.append(np.sum(np.arange(1, len(hits) + 1) / (hits + 1)) / len(preds))
    t2a = np.array([np.where(np.argsort(-(logits[:, m])) == c2c[m])[0][0] for m in range(len(c2c))])
    return 100 * np.mean(maps), np.floor(np.median(t2a)) + 1


def test_laion_map_and_medr_match_reference():
    audio, text, c2c = _random_case(7, n=25, per_clip=(5,))
    m = retrieval_metrics(audio, text, c2c, chunk_size=4)
    laion_map, med_r = _laion_reference(audio, text, c2c)
    assert m["a2t/mAP@10_laion"] == pytest.approx(laion_map, abs=1e-9)
    assert m["a2t/mAP@10_laion"] >= m["a2t/mAP@10"]
    assert m["t2a/medR"] == med_r


def test_fold_accuracies():
    from clsp.evaluation.zeroshot import fold_accuracies

    got = fold_accuracies([0, 1, 1, 0, 2, 2], [0, 1, 0, 0, 2, 1], ["1", "1", "1", "2", "2", "10"])
    assert got == pytest.approx({"WA_fold1": 200 / 3, "WA_fold2": 100.0, "WA_fold10": 0.0,
                                 "WA_fold_mean": (200 / 3 + 100) / 3})
    assert list(got)[:3] == ["WA_fold1", "WA_fold2", "WA_fold10"]  # numeric order
