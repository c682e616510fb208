"""AFSD losses (spec ``methods/afsd.md`` §4; official ``MultiSegmentLoss``, ``calc_bce_loss`` and the
triplet term of ``train.py``).

``detection_losses`` returns the unweighted terms (``loc``, ``conf``, ``prop_loc``, ``prop_conf``,
``center``) normalised by the number of coarse (N) / refinement (PN) positives of the whole batch;
``boundary_losses`` the ``start`` / ``end`` BCE terms (frame level + 0.1 x both level-0 branches);
``triplet_loss`` the boundary-contrastive term; ``weighted_total`` combines them as the official
training loop does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Sequence

import torch
from torch.nn import functional as F

from tadkit.methods.afsd.targets import coarse_targets, refinement_targets
from tadkit.models.losses import background_alpha, distance_giou_loss, distance_iou, smooth_l1, softmax_focal_loss

if TYPE_CHECKING:  # model.py imports this module
    from tadkit.methods.afsd.model import AFSDConfig


def detection_losses(
    outputs: Mapping[str, torch.Tensor], targets: Sequence[torch.Tensor], config: AFSDConfig
) -> dict[str, torch.Tensor]:
    """Coarse / refinement / quality terms. ``targets`` per sample (K, 3) = (s/L, e/L, class 1..C)."""
    loc, conf = outputs["loc"], outputs["conf"]
    prop_loc, prop_conf, center = outputs["prop_loc"], outputs["prop_conf"], outputs["center"]
    priors = outputs["priors"][0, :, 0]
    coarse = coarse_targets(priors, targets, config.clip_length, config.scale_ranges)
    refine = refinement_targets(loc, coarse, config.piou, adaptive=config.adaptive_piou)
    alpha = background_alpha(config.num_outputs, config.focal_alpha).to(loc.device)
    if config.per_sample_normalisation:
        return _per_sample_losses(outputs, coarse, refine, alpha, config)

    pos = coarse.labels > 0
    prop_pos = refine.labels > 0
    n = pos.sum().clamp(min=1)
    pn = prop_pos.sum().clamp(min=1)

    loss_loc = distance_giou_loss(loc[pos], coarse.loc[pos], reduction="sum")
    diff = prop_loc[prop_pos] - refine.offsets[prop_pos]
    if config.prop_loc_loss == "l1":
        loss_prop_loc = diff.abs().sum()
    else:
        loss_prop_loc = smooth_l1(diff).sum()

    pre = loc[pos]
    pre_w = (pre[:, 0] + pre[:, 1]).unsqueeze(-1)
    refined = 0.5 * pre_w * prop_loc[pos] + pre
    iou_target = distance_iou(refined, coarse.loc[pos]).clamp(min=0)
    if config.detach_center_target:
        iou_target = iou_target.detach()
    loss_center = F.binary_cross_entropy_with_logits(center[pos][:, 0], iou_target, reduction="sum")

    loss_conf = softmax_focal_loss(conf, coarse.labels, alpha, config.focal_gamma)
    loss_prop_conf = softmax_focal_loss(prop_conf, refine.labels, alpha, config.focal_gamma)
    return {
        "loc": loss_loc / n,
        "conf": loss_conf / n,
        "prop_loc": loss_prop_loc / pn,
        "prop_conf": loss_prop_conf / pn,
        "center": loss_center / n,
    }


def _per_sample_losses(outputs: Mapping[str, torch.Tensor], coarse, refine, alpha: torch.Tensor,
                       config: AFSDConfig) -> dict[str, torch.Tensor]:
    """The ActivityNet head's reduction (``AFSD/anet/multisegment_loss.py``): every term summed over
    one sample and divided by that sample's positives (at least 1), then averaged over the batch."""
    loc, prop_loc, center = outputs["loc"], outputs["prop_loc"], outputs["center"]
    pos, prop_pos = coarse.labels > 0, refine.labels > 0
    n = pos.sum(1).clamp(min=1)
    pn = prop_pos.sum(1).clamp(min=1)
    zero = loc.new_zeros(())
    loss_loc = torch.where(pos, distance_giou_loss(loc, coarse.loc), zero).sum(1)
    diff = prop_loc - refine.offsets
    per_prop = diff.abs().sum(-1) if config.prop_loc_loss == "l1" else smooth_l1(diff).sum(-1)
    loss_prop_loc = torch.where(prop_pos, per_prop, zero).sum(1)
    pre_w = (loc[..., 0] + loc[..., 1]).unsqueeze(-1)
    refined = 0.5 * pre_w * prop_loc + loc
    iou_target = distance_iou(refined, coarse.loc).clamp(min=0)
    if config.detach_center_target:
        iou_target = iou_target.detach()
    iou_target = torch.where(pos, iou_target, zero)  # only positives enter the sum
    per_center = F.binary_cross_entropy_with_logits(center[..., 0], iou_target, reduction="none")
    loss_center = torch.where(pos, per_center, zero).sum(1)
    batch = loc.shape[0]
    loss_conf = softmax_focal_loss(outputs["conf"], coarse.labels, alpha, config.focal_gamma, reduction="none")
    loss_prop_conf = softmax_focal_loss(outputs["prop_conf"], refine.labels, alpha, config.focal_gamma,
                                        reduction="none")
    return {
        "loc": (loss_loc / n).mean(),
        "conf": (loss_conf.view(batch, -1).sum(1) / n).mean(),
        "prop_loc": (loss_prop_loc / pn).mean(),
        "prop_conf": (loss_prop_conf.view(batch, -1).sum(1) / pn).mean(),
        "center": (loss_center / n).mean(),
    }


def boundary_bce(start: torch.Tensor, end: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Official ``calc_bce_loss``: probability = mean over channels of tanh(feature) per frame;
    ``start``/``end`` (B, T, C), ``labels`` (B, 2, T)."""
    p_start = torch.tanh(start).mean(-1)
    p_end = torch.tanh(end).mean(-1)
    loss_start = F.binary_cross_entropy(p_start.reshape(-1), labels[:, 0].reshape(-1).to(p_start), reduction="mean")
    loss_end = F.binary_cross_entropy(p_end.reshape(-1), labels[:, 1].reshape(-1).to(p_end), reduction="mean")
    return loss_start, loss_end


def boundary_losses(
    outputs: Mapping[str, torch.Tensor], labels: torch.Tensor, aux_weight: float = 0.1
) -> dict[str, torch.Tensor]:
    """Frame-level BCE plus ``aux_weight`` x the level-0 branch BCEs against the labels nearest-
    downsampled to the level-0 length (official: ``F.interpolate(scores, scale_factor=1/4)``)."""
    labels = labels.to(outputs["start"])
    loss_start, loss_end = boundary_bce(outputs["start"], outputs["end"], labels)
    level0 = outputs["start_loc_prop"].shape[1]
    scale = level0 / labels.shape[-1]
    small = F.interpolate(labels, scale_factor=scale) if labels.shape[-1] * scale == level0 else F.interpolate(labels, size=level0)
    ls_loc, le_loc = boundary_bce(outputs["start_loc_prop"], outputs["end_loc_prop"], small)
    ls_conf, le_conf = boundary_bce(outputs["start_conf_prop"], outputs["end_conf_prop"], small)
    return {
        "start": loss_start + aux_weight * (ls_loc + ls_conf),
        "end": loss_end + aux_weight * (le_loc + le_conf),
    }


def triplet_loss(
    anchors: Sequence[torch.Tensor],
    positives: Sequence[torch.Tensor],
    negatives: Sequence[torch.Tensor],
    weights: Sequence[float] = (1.0, 0.1, 0.1),
    margin: float = 1.0,
) -> torch.Tensor:
    """Boundary-contrastive loss: per clip ``sum_i w_i * TripletMargin(a_i, p_i, n_i)`` (L2, margin 1),
    averaged over the clips (rows) given — the official loop's per-clip sum divided by the SSL count."""
    per_clip = torch.stack(
        [
            w * F.triplet_margin_loss(a, p, n, margin=margin, p=2.0, reduction="none")
            for a, p, n, w in zip(anchors, positives, negatives, weights)
        ]
    ).sum(0)
    return per_clip.mean()


def weighted_total(terms: Mapping[str, torch.Tensor], config: AFSDConfig) -> torch.Tensor:
    """``lw (loc + prop_loc) + cw (conf + prop_conf + center) + start + end [+ ssl * triplet]``."""
    total = (
        terms["loc"] * config.loc_weight
        + terms["conf"] * config.cls_weight
        + terms["prop_loc"] * config.loc_weight
        + terms["prop_conf"] * config.cls_weight
        + terms["center"] * config.cls_weight
        + terms["start"]
        + terms["end"]
    )
    if "triplet" in terms:
        total = total + terms["triplet"] * config.ssl_weight
    return total


__all__ = ["boundary_bce", "boundary_losses", "detection_losses", "triplet_loss", "weighted_total"]
