"""AFSD training targets (spec ``methods/afsd.md`` §1.1, §3), vectorised over points, GTs and the batch.

* :func:`clip_targets` — the dataset's ``(start / L, end / L, class)`` rows from GTs in clip frames;
* :func:`boundary_labels` — the "activation guided" start / end labels with Python's half-to-even round;
* :func:`coarse_targets` — THUMOS assignment: a point inside several GTs takes the shortest (first on
  ties), no scale ranges; distances in clip frames;
* :func:`refinement_targets` — from the detached coarse predictions: class kept when IoU >= piou,
  offsets ``(gt - pred) / (0.5 * (l + r))``.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
import torch

from tadkit.models.losses import distance_iou


def clip_targets(gts: np.ndarray | torch.Tensor, clip_length: int) -> torch.Tensor:
    """(K, 3) GTs ``(start, end, class)`` in clip frames -> float32 ``(start / L, end / L, class)``
    (official ``annos_transform``: divided in double, then stored as float32)."""
    g = np.asarray(gts, dtype=np.float64).reshape(-1, 3)
    out = np.stack([g[:, 0] * 1.0 / clip_length, g[:, 1] * 1.0 / clip_length, g[:, 2]], axis=1)
    return torch.from_numpy(out).float()


def boundary_labels(gts: np.ndarray | torch.Tensor, clip_length: int) -> torch.Tensor:
    """(2, L) float32 start / end labels of one clip from GTs ``(start, end[, class])`` in clip frames.

    For each GT with ``d = max((e - s) / 10, 2)``, frames ``round(s - d/2) .. round(s + d/2)`` (each end
    clipped to ``[0, L-1]``, inclusive) get start = 1, and the same around ``e`` for end = 1. ``round``
    is Python's (half to even, on the double value), which ``np.rint`` reproduces.
    """
    g = np.asarray(gts, dtype=np.float64).reshape(len(gts), -1)[:, :2] if len(gts) else np.zeros((0, 2))
    s, e = g[:, 0], g[:, 1]
    d = np.maximum((e - s) / 10.0, 2.0)
    frames = np.arange(clip_length)
    labels = np.zeros((2, clip_length), dtype=np.float32)
    for row, centre in enumerate((s, e)):
        lo = np.clip(np.rint(centre - d / 2.0), 0, clip_length - 1)
        hi = np.clip(np.rint(centre + d / 2.0), 0, clip_length - 1)
        inside = (frames[None, :] >= lo[:, None]) & (frames[None, :] <= hi[:, None])
        labels[row] = inside.any(axis=0)
    return torch.from_numpy(labels)


class CoarseTargets(NamedTuple):
    loc: torch.Tensor  # (B, P, 2) distances (left, right) to the assigned GT, clip frames
    labels: torch.Tensor  # (B, P) int64, 0 = background


class RefinementTargets(NamedTuple):
    offsets: torch.Tensor  # (B, P, 2)
    labels: torch.Tensor  # (B, P) int64, 0 = not a refinement positive


def pad_truths(targets: Sequence[torch.Tensor], device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """List of (K_b, 3) normalised targets -> (B, G, 3) padded and (B, G) validity mask."""
    b = len(targets)
    g = max((int(t.shape[0]) for t in targets), default=0)
    g = max(g, 1)
    device = device if device is not None else (targets[0].device if b else None)
    truths = torch.zeros(b, g, 3, device=device)
    valid = torch.zeros(b, g, dtype=torch.bool, device=device)
    for i, t in enumerate(targets):  # one copy per sample, not per element
        k = int(t.shape[0])
        if k:
            truths[i, :k] = t.to(device=device, dtype=torch.float32)
            valid[i, :k] = True
    return truths, valid


def prior_levels(priors: torch.Tensor) -> torch.Tensor:
    """(P,) pyramid level of each prior: centres rise within a level and restart at the next one."""
    centre = priors.reshape(-1)
    restarts = (centre[1:] < centre[:-1]).long()
    return torch.cat([restarts.new_zeros(1), restarts.cumsum(0)])


def coarse_targets(priors: torch.Tensor, targets: Sequence[torch.Tensor], clip_length: int,
                   scale_ranges: Sequence[Sequence[float]] | None = None) -> CoarseTargets:
    """Official ``MultiSegmentLoss`` matching (THUMOS): every point inside a GT (inclusive) is positive
    and takes the shortest such GT (first on ties); points inside none are background.

    ``scale_ranges`` (one ``(lo, hi)`` per level, clip frames) adds the ActivityNet head's rule
    (``AFSD/anet/multisegment_loss.py`` ``bounds``): a point is positive for a GT only when
    ``lo < max(left, right) <= hi``.

    ``priors`` (P,) or (P, 1) normalised centres; ``targets`` per sample (K, 3) = (s/L, e/L, class).
    """
    centre = priors.reshape(-1).float()
    truths, valid = pad_truths(targets, centre.device)  # (B, G, 3)
    left = (centre[None, :, None] - truths[:, None, :, 0]) * clip_length  # (B, P, G)
    right = (truths[:, None, :, 1] - centre[None, :, None]) * clip_length
    maxn = clip_length * 2
    area = left + right
    area = area.masked_fill((left < 0) | (right < 0), float(maxn))
    if scale_ranges is not None:
        bounds = torch.as_tensor(scale_ranges, dtype=left.dtype, device=left.device)[prior_levels(centre)]  # (P, 2)
        reach = torch.maximum(left, right)
        area = area.masked_fill((reach <= bounds[None, :, :1]) | (reach > bounds[None, :, 1:]), float(maxn))
    area = area.masked_fill(~valid[:, None, :], float("inf"))
    best_area, best = area.min(dim=2)  # first minimum on ties
    chosen = truths.gather(1, best[..., None].expand(-1, -1, 3))  # (B, P, 3)
    loc = torch.stack([(centre[None] - chosen[..., 0]) * clip_length, (chosen[..., 1] - centre[None]) * clip_length], -1)
    labels = chosen[..., 2].long().masked_fill(best_area >= maxn, 0)
    return CoarseTargets(loc, labels)


def refinement_targets(pre_loc: torch.Tensor, coarse: CoarseTargets, piou: float,
                       adaptive: bool = False) -> RefinementTargets:
    """Refinement targets from the coarse predictions ``pre_loc`` (B, P, 2) (detached here).

    ``adaptive`` (the ActivityNet head): a sample's threshold is ``min(piou, its best IoU among the
    coarse positives)``, so each sample with a positive has at least one refinement positive."""
    pre = pre_loc.detach()
    iou = distance_iou(pre, coarse.loc)
    threshold = torch.full_like(iou[:, :1], float(piou))
    if adaptive:
        best = iou.masked_fill(coarse.labels <= 0, float("-inf")).amax(dim=1, keepdim=True)
        threshold = torch.where(torch.isfinite(best), torch.minimum(threshold, best), threshold)
    labels = coarse.labels.masked_fill(iou < threshold, 0)
    half_w = 0.5 * (pre[..., 0] + pre[..., 1])
    offsets = torch.stack([(coarse.loc[..., 0] - pre[..., 0]) / half_w, (coarse.loc[..., 1] - pre[..., 1]) / half_w], -1)
    return RefinementTargets(offsets, labels)


__all__ = [
    "CoarseTargets",
    "RefinementTargets",
    "boundary_labels",
    "clip_targets",
    "coarse_targets",
    "pad_truths",
    "prior_levels",
    "refinement_targets",
]
