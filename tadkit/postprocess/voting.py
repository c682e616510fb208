"""ActionFormer's post-processing: (soft-)NMS per class or over all classes, then segment voting.

Same steps as the official ``batched_nms`` of happyharrycn/actionformer_release (its C++ ``softnms``
op with the Gaussian method, or ``nms``) on tadkit's NMS kernels (:mod:`tadkit.postprocess.nms`):

1. ``method="soft"``: Gaussian soft-NMS, ``s *= exp(-iou**2 / sigma)`` for every pending candidate
   of the picked one's group (no IoU gate: ``iou_threshold`` is unused by the official Gaussian
   method), dropping a candidate as soon as its score is below ``min_score``; at most
   ``max_seg_num`` picks per group. ``method="hard"``: drop candidates scoring ``<= min_score``
   (when ``min_score > 0``), greedy NMS at ``iou_threshold``, at most ``max_seg_num`` per group.
   ``method="none"``: the candidates come back unchanged (no sort, no cap), as officially.
2. Groups are the classes (``multiclass=True``) or one group (``False``).
3. Class-agnostic only (the official code disables it for multiclass NMS): *segment voting*
   replaces every kept segment by the average of the *pre-NMS* candidates whose IoU with it is
   ``>= voting_thresh``, weighted by ``score * IoU`` (``voting_thresh <= 0`` turns it off).
4. Everything is sorted by (decayed) score, highest first, and cut at ``max_seg_num``.

Differences from the C++ op, all below float32 resolution in practice (see docs/actionformer.md):

* IoUs are computed in float64 (the op: float32) and without the op's ``1e-6`` added to each
  length, so an IoU differs by at most ``2e-6 / length`` relative (lengths are at least the decoder's
  ``duration_thresh``); decayed scores are returned in the input dtype.
* Ties (equal scores) go to the lower input index; the op's pick order among exactly equal scores
  follows its swap-with-last bookkeeping.
* Hard NMS keeps a pair exactly at ``iou_threshold`` (tadkit's rule); the op drops it.

One official detail is kept on purpose: soft-NMS always emits each group's best candidate, even
when it scores below ``min_score`` (the op only compares scores with ``min_score`` after decaying).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor

from tadkit.errors import TadkitError
from tadkit.ops import tiou_pairwise
from tadkit.postprocess.nms import batched_nms, rank_within_groups, soft_nms_indices

__all__ = ["VotingNMSMethod", "nms_with_voting", "vote_segments"]

VotingNMSMethod = Literal["soft", "hard", "none"]


def vote_segments(kept: Tensor, candidates: Tensor, candidate_scores: Tensor, iou_threshold: float) -> Tensor:
    """Segment (box) voting: each kept ``(K, 2)`` row -> the ``score * IoU``-weighted mean of the
    ``(N, 2)`` candidates whose IoU with it is ``>= iou_threshold`` (a kept segment taken from the
    candidates always votes for itself with IoU 1)."""
    iou = tiou_pairwise(kept, candidates)  # (K, N)
    weights = (iou >= iou_threshold).to(candidate_scores.dtype) * candidate_scores[None, :] * iou
    weights = weights / weights.sum(dim=1, keepdim=True)
    return weights @ candidates


def _soft_groups_best_below_floor(scores: Tensor, groups: np.ndarray | None, min_score: float) -> np.ndarray:
    """Indices of each group's best candidate when it scores below ``min_score`` (the op emits it anyway)."""
    values = scores.detach().to("cpu", torch.float64).numpy()
    if groups is None:
        groups = np.zeros(values.size, dtype=np.int64)
    order, rank = rank_within_groups(groups, values)
    best = order[rank[order] == 0]
    return best[values[best] < min_score]


def nms_with_voting(
    segments: Tensor,
    scores: Tensor,
    labels: Tensor,
    *,
    method: VotingNMSMethod = "soft",
    iou_threshold: float = 0.1,
    min_score: float = 0.001,
    max_seg_num: int = 200,
    multiclass: bool = True,
    sigma: float = 0.5,
    voting_thresh: float = 0.75,
) -> tuple[Tensor, Tensor, Tensor]:
    """The official ActionFormer ``batched_nms`` (see the module docstring) on ``(N, 2)`` segments,
    ``(N,)`` scores and ``(N,)`` integer labels; returns ``(segments, scores, labels)``, score desc."""
    if method not in ("soft", "hard", "none"):
        raise TadkitError(f"must be 'soft', 'hard' or 'none', got {method!r}", field="nms_method")
    if isinstance(max_seg_num, bool) or not isinstance(max_seg_num, int) or max_seg_num < 1:
        raise TadkitError(f"must be a positive integer, got {max_seg_num!r}", field="max_seg_num")
    if method == "none":
        return segments, scores, labels
    if segments.shape[0] == 0:
        return segments.new_zeros(0, 2), scores.new_zeros(0), labels.new_zeros(0)
    groups = labels if multiclass else None
    if method == "soft":
        keep, new_scores = soft_nms_indices(
            segments, scores, groups, "gaussian", sigma, 0.0, float(min_score), max_seg_num
        )
        floor_picks = _soft_groups_best_below_floor(scores, None if groups is None else labels.cpu().numpy(),
                                                   float(min_score))
        if floor_picks.size:
            extra = torch.from_numpy(floor_picks).to(keep.device)
            keep = torch.cat((keep, extra))
            new_scores = torch.cat((new_scores, scores[extra].to(new_scores.dtype)))
    else:
        candidates = torch.arange(scores.shape[0], device=scores.device)
        if min_score > 0:
            candidates = candidates[scores > min_score]
        local = batched_nms(segments[candidates], scores[candidates], None if groups is None else labels[candidates],
                            iou_threshold, max_seg_num)
        keep = candidates[local]
        new_scores = scores[keep]
    kept_segments, kept_labels = segments[keep], labels[keep]
    if not multiclass and voting_thresh > 0:
        kept_segments = vote_segments(kept_segments, segments, scores, voting_thresh)
    order = torch.sort(new_scores, descending=True, stable=True).indices[:max_seg_num]
    return kept_segments[order], new_scores[order], kept_labels[order]
