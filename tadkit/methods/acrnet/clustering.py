"""ACRNet adaptive temporal clustering, mask refining and rank-weighted video scores (spec §2.4-2.6).

All three run on every training step, so they are vectorised over videos x classes:

* :func:`temporal_clustering` -- the official recurrence walks the sorted scores one position at a
  time and moves a rank-weighted positive centre and a plain negative centre. In exact arithmetic
  its decisions are a prefix of positives followed by negatives only (once a value is closer to the
  negative centre, every smaller value is too). We replay the recurrence for all rows at once under
  a hypothesis of the decisions, with the SAME float32 operations in the SAME order (sequential
  float32 prefix sums: ``numpy.cumsum`` accumulates float32 sequentially, ``torch.cumsum`` on CPU
  does not), and correct the hypothesis from its first contradiction on. Exact by construction; one
  or two rounds settle real rows, exact ties (e.g. constant rows, where float rounding of the
  centres makes the official decisions flip back and forth) take a few more.
* :func:`mask_refining` -- the official per-class / per-video loops become masked cumulative sums
  and one gather; the count-based index with Python's ``-1`` wrap is reproduced.
* :func:`rank_weighted_scores` -- ``calculate_score``, already vectorised in the official code.

The ``*_loop`` functions are straightforward ports of the official loops, kept for tests and
``benchmarks/acrnet_clustering.py``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "sort_scores",
    "temporal_clustering",
    "temporal_clustering_stats",
    "mask_refining",
    "rank_weighted_scores",
    "temporal_clustering_loop",
    "mask_refining_loop",
]


def sort_scores(seg_score: Tensor) -> tuple[Tensor, Tensor]:
    """(N, T, C) -> sorted values and indices as (N*C, T) rows, descending, stable (the official order)."""
    n, t, c = seg_score.shape
    rows = seg_score.mT.contiguous().view(-1, t)
    return torch.sort(rows, dim=-1, descending=True, stable=True)


def _rows_to_ntc(rows: Tensor, n: int, t: int, c: int) -> Tensor:
    return rows.view(n, c, t).mT.contiguous()


def _cluster_sorted_rows(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Positive/negative decisions for sorted float32 rows (R, T) -> (bool (R, T), hypothesis rounds).

    Decision ``k`` is for sorted position ``k``; position 0 is positive, position T-1 negative.
    Each round replays the recurrence for every unfinished row under a hypothesis of all its
    decisions (first round: all positive), with the official float32 operations in the official
    order (sequential float32 prefix sums of the masked terms; adding the official ``+ 0.0`` terms
    changes nothing). Everything up to and including the first decision that contradicts the
    hypothesis is then known exactly (the centres it used depend only on earlier, matching
    decisions), so the hypothesis becomes "known prefix, then that decision repeated". A row ends
    when the replay agrees with its hypothesis; each round fixes at least one more position, and
    in practice one or two rounds settle every row (a prefix of positives, then negatives).
    """
    r, t = values.shape
    decided = np.zeros((r, t), dtype=bool)
    decided[:, 0] = True
    if t <= 2:
        return decided, 0
    f32 = np.float32
    steps = np.arange(2, t, dtype=f32)  # i + 1 for the decided steps i = 1..T-2
    inv_steps = f32(1.0) / steps
    # Round 1, hypothesis "all positive": the negative centre stays v_{T-1} and the positive count is
    # the same for every row, so only one (R, T) running sum is needed.
    mid = values[:, 1 : t - 1]
    pos_sum = _prefix(values[:, 0], mid / steps)
    pos_num = _prefix(np.ones(1, dtype=f32), inv_steps[None, :])
    replay = np.abs(mid - pos_sum / pos_num) <= np.abs(mid - values[:, t - 1 : t])
    first = np.where(replay.all(axis=1), t - 2, np.argmin(replay, axis=1))
    hypothesis = np.arange(t - 2)[None, :] < first[:, None]  # positives, then negatives from the first failure
    todo = np.flatnonzero(first < t - 2)
    rounds = 1
    while todo.size:
        rounds += 1
        v = values[todo]
        mid = v[:, 1 : t - 1]
        h = hypothesis[todo]
        zero = f32(0.0)
        pos_sum = _prefix(v[:, 0], np.where(h, mid / steps, zero))
        pos_num = _prefix(np.ones(todo.size, dtype=f32), np.where(h, inv_steps, zero))
        neg_sum = _prefix(v[:, t - 1], np.where(h, zero, mid))
        neg_num = _prefix(np.ones(todo.size, dtype=f32), np.where(h, zero, f32(1.0)))
        replay = np.abs(mid - pos_sum / pos_num) <= np.abs(mid - neg_sum / neg_num)
        wrong = replay != h
        bad = wrong.any(axis=1)
        first = np.argmax(wrong[bad], axis=1)
        rows = todo[bad]
        cols = np.arange(t - 2)[None, :]
        fixed = np.where(cols >= first[:, None], replay[bad, first][:, None], hypothesis[rows])
        hypothesis[rows] = fixed
        todo = rows
    decided[:, 1 : t - 1] = hypothesis
    return decided, rounds


def _prefix(initial: np.ndarray, terms: np.ndarray) -> np.ndarray:
    """Sequential float32 running sums ``initial, initial + terms[0], ...`` BEFORE each term: (R, K)."""
    stacked = np.concatenate([initial[:, None], terms[:, :-1]], axis=1)
    return np.cumsum(stacked, axis=1, dtype=np.float32)


def temporal_clustering_stats(seg_score: Tensor, sorted_rows: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, int]:
    """:func:`temporal_clustering` plus the number of hypothesis rounds it needed (see ``_cluster_sorted_rows``)."""
    n, t, c = seg_score.shape
    values, index = sort_scores(seg_score) if sorted_rows is None else sorted_rows
    with torch.no_grad():
        if seg_score.dtype != torch.float32:  # the float32 replay is exact only for float32 scores
            decided = _cluster_rows_loop(values.detach())
            rounds = 0
        else:
            decided_np, rounds = _cluster_sorted_rows(values.detach().to("cpu").numpy())
            decided = torch.from_numpy(decided_np).to(values.device)
        mask_rows = torch.zeros_like(values)
        mask_rows.scatter_(1, index, decided.to(values.dtype))
    return _rows_to_ntc(mask_rows, n, t, c), rounds


def temporal_clustering(seg_score: Tensor, sorted_rows: tuple[Tensor, Tensor] | None = None) -> Tensor:
    """Adaptive temporal clustering (spec §2.4): (N, T, C) segment scores -> {0, 1} mask (N, T, C), no gradient.

    ``sorted_rows``: the result of :func:`sort_scores` if the caller already has it.
    """
    return temporal_clustering_stats(seg_score, sorted_rows)[0]


def _cluster_rows_loop(values: Tensor) -> Tensor:
    """The official recurrence on sorted rows (R, T) of any dtype, decisions in sorted order."""
    r, t = values.shape
    decided = torch.zeros(r, t, dtype=torch.bool, device=values.device)
    decided[:, 0] = True
    pos_sum, neg_sum = values[:, 0].clone(), values[:, -1].clone()
    pos_num, neg_num = torch.ones_like(pos_sum), torch.ones_like(neg_sum)
    for i in range(1, t - 1):
        value = values[:, i]
        condition = torch.abs(value - pos_sum / pos_num) <= torch.abs(value - neg_sum / neg_num)
        zero = torch.zeros_like(value)
        pos_num = pos_num + condition.to(values.dtype) / (i + 1)
        pos_sum = pos_sum + torch.where(condition, value, zero) / (i + 1)
        neg_num = neg_num + (~condition).to(values.dtype)
        neg_sum = neg_sum + torch.where(~condition, value, zero)
        decided[:, i] = condition
    return decided


def mask_refining(seg_score: Tensor, seg_mask: Tensor, cas: Tensor,
                  sorted_rows: tuple[Tensor, Tensor] | None = None) -> Tensor:
    """Mask refining (spec §2.5): keep the positives whose segment score reaches the class threshold tau.

    ``seg_score``, ``seg_mask``, ``cas``: (N, T, C). Returns the refined mask (N, T, C), no gradient.
    """
    n, t, c = seg_score.shape
    with torch.no_grad():
        values, index = sort_scores(seg_score) if sorted_rows is None else sorted_rows
        values = values.detach()
        mask = seg_mask.detach().mT.contiguous().view(-1, t).gather(1, index)  # (R, T) sorted order
        cs = cas.detach().mT.contiguous().view(-1, t).gather(1, index)
        rank = torch.arange(2, t + 2, device=seg_score.device).reciprocal().view(1, -1)
        weight = rank * mask
        reference = (cs * weight).sum(dim=-1) / torch.clamp_min(weight.sum(dim=-1), 1.0)  # rho (R,)
        positive = mask.bool()
        zero = torch.zeros((), dtype=cs.dtype, device=cs.device)
        running_sum = torch.cumsum(torch.where(positive, cs, zero), dim=-1)
        count = torch.cumsum(mask, dim=-1)  # k-th positive sees count k (float, as the official arange)
        running_mean = running_sum / torch.where(positive, count, torch.ones_like(count))
        passing = (positive & (running_mean >= reference[:, None])).sum(dim=-1)  # n (a count)
        num_pos = positive.sum(dim=-1)
        # official: sort_val[min(n - 1, #pos - 1)]; n = 0 -> index -1 -> the last positive (Python wrap)
        pick = torch.where(passing > 0, passing - 1, num_pos - 1)
        target = positive & ((count - 1) == pick[:, None].to(count.dtype))
        at = torch.argmax(target.to(torch.uint8), dim=-1, keepdim=True)
        tau = torch.where(num_pos > 0, values.gather(1, at).squeeze(1), torch.zeros_like(reference))
        tau = tau.to(torch.get_default_dtype()).view(n, c)  # the official stores tau in a float32 zeros() tensor
        refined = seg_mask.detach() * (seg_score.detach() >= tau.unsqueeze(1).to(seg_score.dtype)).to(seg_mask.dtype)
    return refined


def rank_weighted_scores(seg_score: Tensor, seg_mask: Tensor, cas: Tensor,
                         sorted_rows: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
    """Video-level (act, bkg) softmax scores (N, C) (spec §2.6, official ``calculate_score``).

    Gradient reaches ``cas`` only; the sort and the mask are constants.
    """
    n, t, c = seg_score.shape
    _, index = sort_scores(seg_score.detach()) if sorted_rows is None else sorted_rows
    sort_mask = seg_mask.mT.contiguous().view(-1, t).gather(1, index)
    sort_cas = cas.mT.contiguous().view(-1, t).gather(1, index)
    rank = torch.arange(2, t + 2, device=seg_score.device).unsqueeze(dim=0).reciprocal()
    act_num = (rank * sort_mask).sum(dim=-1)
    act = (sort_cas * rank * sort_mask).sum(dim=-1) / torch.clamp_min(act_num, 1.0)
    bkg_num = (1.0 - sort_mask).sum(dim=-1)
    bkg = (sort_cas * (1.0 - sort_mask)).sum(dim=-1) / torch.clamp_min(bkg_num, 1.0)
    return torch.softmax(act.view(n, c), dim=-1), torch.softmax(bkg.view(n, c), dim=-1)


# ------------------------------------------------------------------------------------------------ #
# Loop ports of the official functions (reference for tests and the benchmark; not used in training)
# ------------------------------------------------------------------------------------------------ #


def temporal_clustering_loop(seg_score: Tensor) -> Tensor:
    """Straightforward port of the official ``temporal_clustering`` (a Python loop over time steps)."""
    n, t, c = seg_score.shape
    values, index = sort_scores(seg_score.detach())
    mask = torch.zeros_like(values)
    row = torch.arange(values.shape[0], device=values.device)
    mask[row, index[:, 0]] = 1
    pos_sum, neg_sum = values[:, 0], values[:, -1]
    pos_num, neg_num = torch.ones_like(pos_sum), torch.ones_like(neg_sum)
    for i in range(1, t - 1):
        pos_center = pos_sum / pos_num
        neg_center = neg_sum / neg_num
        idx, value = index[:, i], values[:, i]
        condition = torch.le(torch.abs(value - pos_center), torch.abs(value - neg_center))
        pos_list = torch.where(condition, value, torch.zeros_like(value))
        neg_list = torch.where(~condition, value, torch.zeros_like(value))
        pos_num = pos_num + condition.float() / (i + 1)
        pos_sum = pos_sum + pos_list / (i + 1)
        neg_num = neg_num + (~condition).float()
        neg_sum = neg_sum + neg_list
        mask[row, idx] = condition.float()
    return _rows_to_ntc(mask, n, t, c)


def mask_refining_loop(seg_score: Tensor, seg_mask: Tensor, cas: Tensor) -> Tensor:
    """Straightforward port of the official ``mask_refining`` (Python loops over classes and videos)."""
    n, t, c = seg_score.shape
    sort_value, sort_index = torch.sort(seg_score, dim=1, descending=True, stable=True)
    ranks = torch.arange(2, t + 2, device=seg_score.device).reciprocal().view(1, -1).expand(n, -1).contiguous()
    row_index = torch.arange(n, device=seg_score.device).view(-1, 1).expand(-1, t).contiguous()
    mean_score = torch.zeros(n, c, device=seg_score.device)
    for i in range(c):
        index, value = sort_index[:, :, i], sort_value[:, :, i]
        mask = seg_mask[:, :, i][row_index, index]
        cs = cas[:, :, i][row_index, index]
        rank = ranks * mask
        tmp_score = (cs * rank).sum(dim=-1) / torch.clamp_min(rank.sum(dim=-1), 1.0)
        for j in range(n):
            ref_val = cs[j][mask[j].bool()]
            sort_val = value[j][mask[j].bool()]
            if ref_val.shape[0] > 0:
                cum_cnts = torch.arange(1, mask[j].sum() + 1, device=seg_score.device)
                cum_scores = torch.cumsum(ref_val, dim=-1) / cum_cnts
                passing = int(torch.ge(cum_scores, tmp_score[j]).long().sum())
                mean_score[j, i] = sort_val[min(passing - 1, sort_val.shape[0] - 1)]
            else:
                mean_score[j, i] = 0.0
    return seg_mask * torch.ge(seg_score, mean_score.unsqueeze(dim=1)).float()
