"""Loss functions shared by the temporal detectors (A2Net, AFSD, ...).

Segments in *distance form* are (left, right) distances from a common reference point (an anchor-free
point): the segment is ``[p - left, p + right]``. All functions return per-element values unless a
``reduction`` is given, so a method can normalise as its official code does.
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
from torch.nn import functional as F

Reduction = Literal["none", "sum", "mean"]


def _reduce(loss: torch.Tensor, reduction: Reduction) -> torch.Tensor:
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean()
    if reduction == "none":
        return loss
    raise ValueError(f"unknown reduction {reduction!r}")


def distance_iou(pred: torch.Tensor, target: torch.Tensor, eps: float | None = None) -> torch.Tensor:
    """IoU of (..., 2) distance-form segments around the same point: ``inter / max(union, eps)`` with
    ``inter = min(l, l*) + min(r, r*)`` (negative when the segments are disjoint, as in AFSD's code).
    ``eps`` defaults to float32 machine epsilon."""
    eps = torch.finfo(torch.float32).eps if eps is None else eps
    pl, pr = pred[..., 0], pred[..., 1]
    tl, tr = target[..., 0], target[..., 1]
    inter = torch.minimum(pl, tl) + torch.minimum(pr, tr)
    union = (tl + tr) + (pl + pr) - inter
    return inter / union.clamp(min=eps)


def distance_giou_loss(
    pred: torch.Tensor, target: torch.Tensor, reduction: Reduction = "none", eps: float | None = None
) -> torch.Tensor:
    """``1 - GIoU`` of distance-form segments; the enclosing length is ``max(l, l*) + max(r, r*)``."""
    eps = torch.finfo(torch.float32).eps if eps is None else eps
    pl, pr = pred[..., 0], pred[..., 1]
    tl, tr = target[..., 0], target[..., 1]
    inter = torch.minimum(pl, tl) + torch.minimum(pr, tr)
    union = (tl + tr) + (pl + pr) - inter
    iou = inter / union.clamp(min=eps)
    enclosing = torch.maximum(pl, tl) + torch.maximum(pr, tr)
    giou = iou - (enclosing - union) / enclosing.clamp(min=eps)
    return _reduce(1.0 - giou, reduction)


def softmax_focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    alpha: torch.Tensor | Sequence[float],
    gamma: float = 2.0,
    eps: float = 1e-6,
    reduction: Reduction = "sum",
) -> torch.Tensor:
    """Softmax focal loss with a per-class alpha: ``-alpha[y] (1 - p_y)^gamma log(p_y)``, where
    ``p_y = softmax(logits)[y] + eps`` (the eps enters both factors, as in AFSD's ``FocalLoss_Ori``).

    ``logits`` (..., C), ``target`` (...) int64 class indices, ``alpha`` (C,).
    """
    num_classes = logits.shape[-1]
    probs = F.softmax(logits.reshape(-1, num_classes), dim=1)
    target = target.reshape(-1, 1).long()
    pt = probs.gather(1, target).view(-1) + eps
    alpha_t = torch.as_tensor(alpha, dtype=probs.dtype, device=probs.device).gather(0, target.view(-1))
    loss = -1.0 * torch.pow(1.0 - pt, gamma) * (alpha_t * pt.log())
    return _reduce(loss, reduction)


def background_alpha(num_classes: int, background_alpha: float = 0.25) -> torch.Tensor:
    """Per-class alpha: ``background_alpha`` for class 0, ``1 - background_alpha`` for the others."""
    alpha = torch.full((num_classes,), 1.0 - background_alpha)
    alpha[0] = background_alpha
    return alpha


def smooth_l1(diff: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """Element-wise smooth-L1 of a difference (``0.5 d^2 / beta`` below ``beta``, ``|d| - 0.5 beta`` above)."""
    absdiff = diff.abs()
    return torch.where(absdiff < beta, 0.5 * absdiff * absdiff / beta, absdiff - 0.5 * beta)


def generalized_cross_entropy(aas: torch.Tensor, pseudo: torch.Tensor, q: float = 0.7, eps: float = 1e-8) -> torch.Tensor:
    """Generalized cross-entropy (Zhang & Sabuncu 2018), binary, on (B, T, 1) scores and (B, T) 0/1
    pseudo-labels: ``(1 - p^q) / q`` averaged over positives and over negatives per video, summed
    (ACRNet's actionness loss, q = 0.7; noise-robust between MAE (q = 1) and CE (q -> 0))."""
    a = aas.squeeze(-1)
    pos_num = torch.clamp_min(pseudo.sum(dim=1), 1.0)
    neg_num = torch.clamp_min((1.0 - pseudo).sum(dim=1), 1.0)
    pos = ((((1.0 - torch.clamp_min(a, eps) ** q) / q) * pseudo).sum(dim=-1) / pos_num).mean()
    neg = ((((1.0 - torch.clamp_min(1.0 - a, eps) ** q) / q) * (1.0 - pseudo)).sum(dim=-1) / neg_num).mean()
    return pos + neg


def sigmoid_focal_loss(
    logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0,
    reduction: Reduction = "none",
) -> torch.Tensor:
    """Sigmoid focal loss (Lin et al. 2017, RetinaNet) on logits and 0..1 targets of the same shape:
    ``alpha_t (1 - p_t)^gamma BCE(logits, target)``, with ``p_t = p y + (1 - p)(1 - y)`` and
    ``alpha_t = alpha y + (1 - alpha)(1 - y)`` (no alpha weighting when ``alpha < 0``). Computed in
    float32 at least (ActionFormer's ``.float()``), so soft targets (label smoothing) are fine."""
    logits = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    target = target.to(logits.dtype)
    prob = torch.sigmoid(logits)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = prob * target + (1 - prob) * (1 - target)
    loss = bce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * target + (1 - alpha) * (1 - target)) * loss
    return _reduce(loss, reduction)


def centre_diou_loss(
    pred: torch.Tensor, target: torch.Tensor, reduction: Reduction = "none", eps: float = 1e-8
) -> torch.Tensor:
    """``1 - DIoU`` (Zheng et al. 2020) of non-negative (..., 2) distance-form segments around the
    same point: ``1 - inter / union + (centre distance / enclosing length)^2``, where the centre
    distance is ``(r - l - r* + l*) / 2`` and the enclosing length ``max(l, l*) + max(r, r*)``; both
    denominators are clamped at ``eps`` (ActionFormer's ``ctr_diou_loss_1d``)."""
    pl, pr = pred[..., 0], pred[..., 1]
    tl, tr = target[..., 0], target[..., 1]
    iou = distance_iou(pred, target, eps)
    enclosing = torch.maximum(pl, tl) + torch.maximum(pr, tr)
    centre_distance = 0.5 * (pr - pl - tr + tl)
    return _reduce(1.0 - iou + torch.square(centre_distance / enclosing.clamp(min=eps)), reduction)


__all__ = [
    "Reduction",
    "generalized_cross_entropy",
    "background_alpha",
    "centre_diou_loss",
    "distance_giou_loss",
    "distance_iou",
    "sigmoid_focal_loss",
    "smooth_l1",
    "softmax_focal_loss",
]
