"""ActionFormer's label assignment: which action each point regresses (official ``label_points``).

A point ``t`` (see :mod:`.points`) is positive for a ground-truth segment ``[s, e]`` when

1. it lies inside the segment's *centre region* (``center_sample="radius"``): strictly inside
   ``[max(c - r * stride, s), min(c + r * stride, e)]`` with ``c = (s + e) / 2`` and ``r`` the
   ``center_sample_radius``; with ``center_sample="none"`` strictly inside ``[s, e]``;
2. its level's regression range holds the larger of its two distances to the boundaries:
   ``reg_min <= max(t - s, e - t) <= reg_max`` (both ends inclusive).

Among the segments a point is positive for, it regresses the shortest one (easiest to regress);
every segment whose length is within 1e-3 of that shortest length gives the point its class too
(THUMOS14 has many near-identical duplicates), so a classification target can be multi-hot.
Regression targets are the distances ``(t - s, e - t)`` to the chosen segment divided by the
level's stride. Points that are positive for nothing have all-zero classification targets; their
regression targets are never read.

All videos of a batch are assigned at once (segments padded to the batch's largest count); the
arithmetic is the official one, element for element, so the targets are identical.
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
from torch import Tensor
from torch.nn import functional as F

from tadkit.errors import TadkitError

__all__ = ["CenterSample", "assign_targets", "pad_segments"]

CenterSample = Literal["radius", "none"]

# Two segments whose lengths differ by at most this much (feature steps) are "equally short".
_SAME_LENGTH_TOLERANCE = 1e-3


def pad_segments(
    gt_segments: Sequence[Tensor], gt_labels: Sequence[Tensor], dtype: torch.dtype, device: torch.device
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-video ``(N_b, 2)`` segments and ``(N_b,)`` labels -> ``(B, N, 2)``, ``(B, N)``, valid ``(B, N)``."""
    if len(gt_segments) != len(gt_labels):
        raise TadkitError(f"{len(gt_segments)} segment lists but {len(gt_labels)} label lists", field="labels")
    batch = len(gt_segments)
    most = max((int(seg.shape[0]) for seg in gt_segments), default=0)
    segments = torch.zeros(batch, most, 2, dtype=dtype, device=device)
    labels = torch.zeros(batch, most, dtype=torch.int64, device=device)
    valid = torch.zeros(batch, most, dtype=torch.bool, device=device)
    for b, (seg, lab) in enumerate(zip(gt_segments, gt_labels)):
        count = int(seg.shape[0])
        if seg.shape != (count, 2) or lab.shape != (count,):
            raise TadkitError(
                f"video {b}: segments {tuple(seg.shape)} and labels {tuple(lab.shape)} should be (N, 2) and (N,)",
                field="segments",
            )
        segments[b, :count] = seg.to(device=device, dtype=dtype)
        labels[b, :count] = lab.to(device=device, dtype=torch.int64)
        valid[b, :count] = True
    return segments, labels, valid


@torch.no_grad()
def assign_targets(
    points: Sequence[Tensor],
    gt_segments: Sequence[Tensor],
    gt_labels: Sequence[Tensor],
    num_classes: int,
    center_sample: CenterSample = "radius",
    center_sample_radius: float = 1.5,
) -> tuple[Tensor, Tensor]:
    """Classification and regression targets of every point of every video.

    Args:
        points: per level ``(T_l, 4)`` rows ``(t, reg_min, reg_max, stride)`` (:func:`.points.make_points`).
        gt_segments: per video ``(N_b, 2)`` ``[start, end]`` on the level-0 feature grid.
        gt_labels: per video ``(N_b,)`` class indices ``0..num_classes-1``.
        num_classes: number of action classes (no background class).
        center_sample: ``"radius"`` (centre sampling) or ``"none"`` (anywhere inside the segment).
        center_sample_radius: the centre region's half width in strides.

    Returns:
        ``cls_targets (B, ΣT, C)`` in {0, 1} and ``reg_targets (B, ΣT, 2)`` (distances / stride),
        in the points' dtype.
    """
    if center_sample not in ("radius", "none"):
        raise TadkitError(f"must be 'radius' or 'none', got {center_sample!r}", field="center_sample")
    flat = torch.cat(list(points), dim=0)  # (P, 4)
    t, reg_min, reg_max, stride = (flat[:, k, None, None] for k in range(4))  # each (P, 1, 1)
    segments, labels, valid = pad_segments(gt_segments, gt_labels, flat.dtype, flat.device)  # (B, N, 2)
    if labels[valid].numel() and (labels[valid].min() < 0 or labels[valid].max() >= num_classes):
        raise TadkitError(f"class indices must be in 0..{num_classes - 1}", field="labels")
    if segments.shape[1] == 0:  # no action in any video: every point is background
        batch, num_points = len(gt_segments), flat.shape[0]
        return flat.new_zeros(batch, num_points, num_classes), flat.new_zeros(batch, num_points, 2)
    start, end = segments[None, ..., 0], segments[None, ..., 1]  # (1, B, N)

    left, right = t - start, end - t  # (P, B, N)
    if center_sample == "radius":
        centre = 0.5 * (start + end)
        region_start = torch.maximum(centre - stride * center_sample_radius, start)
        region_end = torch.minimum(centre + stride * center_sample_radius, end)
        inside = torch.minimum(t - region_start, region_end - t) > 0
    else:
        inside = torch.minimum(left, right) > 0
    farthest = torch.maximum(left, right)
    in_range = (farthest >= reg_min) & (farthest <= reg_max)

    inf = torch.tensor(float("inf"), dtype=flat.dtype, device=flat.device)
    lengths = torch.where(inside & in_range & valid[None], (end - start).expand_as(left), inf)  # (P, B, N)
    shortest, chosen = lengths.min(dim=2)  # first index among equal lengths, as the official argmin
    equally_short = (lengths <= shortest[..., None] + _SAME_LENGTH_TOLERANCE) & (lengths < inf)

    one_hot = F.one_hot(labels, num_classes).to(flat.dtype)  # (B, N, C)
    cls_targets = torch.einsum("pbn,bnc->bpc", equally_short.to(flat.dtype), one_hot).clamp_(0.0, 1.0)
    pick = chosen.T[..., None]  # (B, P, 1)
    reg_targets = torch.stack(
        (left.permute(1, 0, 2).gather(2, pick)[..., 0], right.permute(1, 0, 2).gather(2, pick)[..., 0]), dim=-1
    )  # (B, P, 2)
    reg_targets = reg_targets / flat[None, :, 3, None]
    reg_targets = torch.where(valid.any(dim=1)[:, None, None], reg_targets, torch.zeros_like(reg_targets))
    return cls_targets, reg_targets
