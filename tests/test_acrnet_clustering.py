"""ACRNet clustering / refining: the vectorised versions equal loop ports of the official functions exactly."""

from __future__ import annotations

import pytest
import torch

from tadkit.methods.acrnet.clustering import (
    mask_refining,
    mask_refining_loop,
    rank_weighted_scores,
    temporal_clustering,
    temporal_clustering_loop,
    temporal_clustering_stats,
)


def _seg_scores(kind: str, n: int, t: int, c: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if kind == "uniform":
        return torch.rand(n, t, c, generator=g)
    if kind == "ties":  # few distinct values: many exact ties in the sort and in the centre tests
        return torch.randint(0, 5, (n, t, c), generator=g).float() / 4
    if kind == "constant":  # every value equal: decisions hinge on the float rounding of the centres
        return torch.full((n, t, c), 0.3) + torch.zeros(n, t, c)
    if kind == "realistic":  # softmax + sigmoid mix like the model's segment score
        cas = torch.randn(n, t, c, generator=g) * 3
        aas = torch.sigmoid(torch.randn(n, t, 1, generator=g) * 2)
        return (torch.softmax(cas, dim=-1) + aas) / 2
    raise ValueError(kind)


CASES = [("uniform", 3, 50, 4), ("ties", 4, 37, 5), ("constant", 2, 20, 3), ("realistic", 3, 64, 7),
         ("uniform", 2, 1, 3), ("uniform", 2, 2, 3), ("ties", 2, 3, 2), ("realistic", 2, 200, 20)]


@pytest.mark.parametrize("kind,n,t,c", CASES)
def test_clustering_equals_loop_port(kind, n, t, c):
    for seed in range(3):
        s = _seg_scores(kind, n, t, c, seed)
        fast, rounds = temporal_clustering_stats(s)
        slow = temporal_clustering_loop(s)
        assert torch.equal(fast, slow), (kind, seed)
        if kind in ("uniform", "realistic"):
            assert rounds <= 2  # distinct values: all positive, then one switch to negatives
        # structure: per (video, class) the top value is positive and the smallest (last sorted) negative
        rows = fast.mT.reshape(-1, t)
        values, index = torch.sort(s.mT.reshape(-1, t), dim=-1, descending=True, stable=True)
        assert bool((rows.gather(1, index[:, :1]) == 1).all())
        if t >= 2:
            assert bool((rows.gather(1, index[:, -1:]) == 0).all())


def test_constant_rows_hinge_on_rounding():
    """All-equal scores: the loop's float32 centres decide; the vectorised version must follow them."""
    for value in (0.3, 0.1, 0.7, 1.0 / 3.0, 0.123456):
        s = torch.full((1, 30, 2), value)
        assert torch.equal(temporal_clustering(s), temporal_clustering_loop(s)), value


def test_multi_round_rows_are_exact():
    """Constant rows: rounding flips the official decisions back to positive after negatives (not a
    prefix pattern); the hypothesis rounds must follow the loop exactly."""
    s = torch.full((1, 20, 1), 0.3)
    loop = temporal_clustering_loop(s)[0, :, 0].tolist()
    assert loop != sorted(loop, reverse=True)  # the official result is not "positives then negatives"
    mask, rounds = temporal_clustering_stats(s)
    assert rounds > 2
    assert mask[0, :, 0].tolist() == loop


@pytest.mark.parametrize("kind,n,t,c", CASES)
def test_refining_equals_loop_port(kind, n, t, c):
    for seed in range(3):
        s = _seg_scores(kind, n, t, c, seed)
        g = torch.Generator().manual_seed(100 + seed)
        cas = torch.randn(n, t, c, generator=g) * 2  # raw CAS, negative values included
        if kind == "ties":
            cas = torch.round(cas)  # tied CAS values too
        mask = temporal_clustering_loop(s)
        assert torch.equal(mask_refining(s, mask, cas), mask_refining_loop(s, mask, cas)), (kind, seed)


def test_refining_negative_index_wrap():
    """n = 0 (no running mean reaches rho) takes index -1: the LAST positive, not the first.

    Two positives with CAS -1: rho = (-1/2 - 1/3) / max(5/6, 1) = -0.83 > running means -1, -1 -> n = 0,
    tau = score of the 2nd positive -> both stay. Without the wrap (index 0) only the first would stay.
    """
    t = 10
    s = torch.full((1, t, 1), 0.1)
    s[0, 0, 0], s[0, 1, 0] = 0.9, 0.89
    mask = temporal_clustering(s)
    assert mask[0, :, 0].tolist() == [1, 1] + [0] * (t - 2)
    cas = torch.full((1, t, 1), -1.0)
    refined = mask_refining(s, mask, cas)
    assert refined[0, :, 0].tolist() == [1, 1] + [0] * (t - 2)
    assert torch.equal(refined, mask_refining_loop(s, mask, cas))
    # CAS (2, -4): rho = (1 - 4/3) / 1 = -1/3, running means 2, -1 -> n = 1 -> tau = first -> only it stays.
    cas2 = torch.zeros(1, t, 1)
    cas2[0, 0, 0], cas2[0, 1, 0] = 2.0, -4.0
    refined2 = mask_refining(s, mask, cas2)
    assert refined2[0, :, 0].tolist() == [1] + [0] * (t - 1)
    assert torch.equal(refined2, mask_refining_loop(s, mask, cas2))


def test_video_scores_gradient_reaches_cas_only():
    s = _seg_scores("realistic", 2, 30, 5, 1).requires_grad_(True)
    cas = torch.randn(2, 30, 5, requires_grad=True)
    mask = mask_refining(s.detach(), temporal_clustering(s.detach()), cas.detach())
    act, bkg = rank_weighted_scores(s, mask, cas)
    assert torch.allclose(act.sum(dim=-1), torch.ones(2)) and torch.allclose(bkg.sum(dim=-1), torch.ones(2))
    (act[:, 0].sum() + bkg[:, 1].sum()).backward()
    assert s.grad is None or float(s.grad.abs().sum()) == 0.0
    assert float(cas.grad.abs().sum()) > 0
