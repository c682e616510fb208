"""A2Net: anchor-free + anchor-based temporal action localization (Yang et al., IEEE TIP 2020).

Follows ``methods/a2net.md`` (the behaviour of the authors' THUMOS14 code, LeYangNwpu/A2Net @ 3d8186d),
top to bottom: config, modules, default anchors and anchor-free points, targets, losses, decoding.

Coordinates used here:

* window steps: 0..``window`` (128 features = 512 frames); what :class:`WindowDetections` and the
  targets handed to :meth:`A2Net.loss` use;
* normalized window coordinates: [0, 1] (anchor-based branch; = window steps / window);
* AL1 units: 0..``window // 2`` (anchor-free branch; 1 unit = 2 window steps = 8 frames).

Deviations from the official code and reconstructed parts (each is also in docs/a2net.md):

1. Anchor-free labels are RECONSTRUCTED (the authors' label script is not public): a GT of duration
   d (AL1 units) goes to level 1 if d < 2, to level i if 2^(i-1) <= d < 2^i, to the last level if it
   is longer; a point p of that level is foreground iff t_s <= p <= t_e; if several GTs of the level
   contain p, the first in annotation order wins (``af_multi_gt="first"``, as the released
   ActivityNet code) or the shortest (``"shortest"``, FCOS-like).
2. Empty selections: the official losses average over empty sets and return NaN when a batch has no
   foreground AF point or no selected anchor; we return 0 for that term (still in the graph).
3. Decoding clips both ends of every segment into the window. The official code clips only the start
   from below and the end from above; the two differ only for boxes lying outside the window.
4. Branch merge weight λ (paper Table V: λ·s_ab + (1-λ)·s_af): AB scores are multiplied by 2λ and AF
   scores by 2(1-λ), so the default λ = 0.5 reproduces the official scores exactly (the code applies
   no weight) and any λ ranks detections as the paper does (λ = 1: anchor-based only).
5. Target segments are clipped to the window (the official windows store clipped GTs).
6. AB matching: the official sequential "running max" update is computed in one shot as the first
   arg-max over GTs, kept when above the threshold; the two rules give identical matches.
7. The shared anchor-free head runs once on all levels packed side by side with a zero column between
   levels (re-zeroed after every layer); this equals the per-level loop up to float rounding.
8. ``af.scale6`` exists and is unused, as in the official module (levels use scale0..scale5), so
   official checkpoints load with ``strict=True``; it is frozen (requires_grad=False) so that DDP
   does not trip over a parameter without gradient.
9. As in the official code the overlap loss is NOT detached from the matched tIoU, so it also sends
   gradient into r_x / r_w through the decoded boxes; ``detach_match_scores=True`` turns that off.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping, NamedTuple, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from tadkit.errors import TadkitError, reject_unknown_fields
from tadkit.models.losses import smooth_l1 as elementwise_smooth_l1
from tadkit.ops import tiou_pairwise
from tadkit.models.base import WindowDetections, strip_ddp_prefix
from tadkit.models.blocks import (
    ConvPyramid,
    LevelConvs,
    PredTower,
    Scale,
    conv1d,
    init_conv_kaiming_uniform,
    pack_levels,
    run_tower_packed,
)

BRANCHES = ("both", "af", "ab")
AF_MULTI_GT_RULES = ("first", "shortest")


# --------------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------------


@dataclass
class A2NetConfig:
    """A2Net hyper-parameters; defaults are the official THUMOS14 ones."""

    in_dim: int = 2048  # I3D RGB (1024) + flow (1024), RGB first
    base_dim: int = 512
    pyramid_dims: tuple[int, ...] = (512, 1024, 1024, 2048, 2048, 4096)  # AL1..AL6
    reduce_dim: int = 512  # per-level 1x1 conv in front of the shared AF head
    head_dim: int = 512  # width of the shared AF towers
    num_classes: int = 20  # action classes, background excluded
    anchor_ratios: tuple[float, ...] = (0.5, 0.75, 1.0, 1.5, 2.0)
    window: int = 128  # features per window
    branches: str = "both"  # "both" | "af" | "ab" (paper Table III)
    merge_lambda: float = 0.5  # paper Table V: AB x lambda, AF x (1 - lambda) at decode; 0.5 == code
    ab_background_filter: float = 0.98  # drop anchors with background prob >= this
    anchor_rx_scale: float = 0.1
    anchor_rw_scale: float = 0.1
    match_threshold: float = 0.5
    neg_ratio: float = 1.0
    af_multi_gt: str = "first"  # "first" | "shortest" (reconstructed rule, see module docstring)
    detach_match_scores: bool = False  # official: overlap loss back-propagates through the tIoU
    weight_af_cls: float = 30.0
    weight_af_reg: float = 1.0
    weight_ab_cls: float = 1.0
    weight_ab_overlap: float = 10.0
    weight_ab_loc: float = 10.0

    def __post_init__(self) -> None:
        self.pyramid_dims = tuple(int(d) for d in self.pyramid_dims)
        self.anchor_ratios = tuple(float(r) for r in self.anchor_ratios)
        for name in ("in_dim", "base_dim", "reduce_dim", "head_dim", "num_classes", "window"):
            if int(getattr(self, name)) < 1:
                raise TadkitError(f"must be a positive integer, got {getattr(self, name)!r}", field=name)
        if not self.pyramid_dims or min(self.pyramid_dims) < 1:
            raise TadkitError(f"needs at least one positive width, got {self.pyramid_dims!r}", field="pyramid_dims")
        if not self.anchor_ratios or min(self.anchor_ratios) <= 0:
            raise TadkitError(f"needs positive ratios, got {self.anchor_ratios!r}", field="anchor_ratios")
        # every level halves the length after the stride-2 max-pool: window / 2^L must be an integer
        if self.window % (2 ** self.num_levels) != 0:
            raise TadkitError(
                f"window {self.window} must be divisible by 2^{self.num_levels} for {self.num_levels} levels",
                field="window",
            )
        if self.branches not in BRANCHES:
            raise TadkitError(f"must be one of {BRANCHES}, got {self.branches!r}", field="branches")
        if self.af_multi_gt not in AF_MULTI_GT_RULES:
            raise TadkitError(f"must be one of {AF_MULTI_GT_RULES}, got {self.af_multi_gt!r}", field="af_multi_gt")
        if not 0.0 <= self.merge_lambda <= 1.0:
            raise TadkitError(f"must be in [0, 1], got {self.merge_lambda}", field="merge_lambda")

    @property
    def num_levels(self) -> int:
        return len(self.pyramid_dims)

    @property
    def af_units(self) -> int:
        """Window length in AL1 units (the AL1 level has one position per unit)."""
        return self.window // 2

    @property
    def level_lengths(self) -> list[int]:
        return [self.af_units // 2**i for i in range(self.num_levels)]

    @property
    def anchors_per_position(self) -> int:
        return len(self.anchor_ratios)

    @property
    def use_af(self) -> bool:
        return self.branches in ("both", "af")

    @property
    def use_ab(self) -> bool:
        return self.branches in ("both", "ab")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["pyramid_dims"] = list(self.pyramid_dims)
        out["anchor_ratios"] = list(self.anchor_ratios)
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "A2NetConfig":
        reject_unknown_fields(cls, values, "A2Net config key(s)")
        return cls(**dict(values))


# --------------------------------------------------------------------------------------------------
# Default anchors, anchor-free points (spec 2.2, 2.4)
# --------------------------------------------------------------------------------------------------


def default_anchors(level_lengths: Sequence[int], ratios: Sequence[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Centres and widths (normalized window coords) of all anchors, levels concatenated,
    time-major, ratio-minor: c = (i + 0.5) / L, w = ratio / L."""
    centers, widths = [], []
    ratios_t = torch.tensor(list(ratios), dtype=torch.float32)
    for length in level_lengths:
        c = (torch.arange(length, dtype=torch.float32) + 0.5) / length
        centers.append(c.repeat_interleave(len(ratios)))
        widths.append((ratios_t / length).repeat(length))
    return torch.cat(centers), torch.cat(widths)


def af_point_locations(level_lengths: Sequence[int]) -> torch.Tensor:
    """AF point locations in AL1 units, levels concatenated: p = j * s + floor(s / 2), s = 2^level."""
    points = []
    for level, length in enumerate(level_lengths):
        stride = 2**level
        points.append(torch.arange(length, dtype=torch.float32) * stride + stride // 2)
    return torch.cat(points)


def af_point_levels(level_lengths: Sequence[int]) -> torch.Tensor:
    """0-based level index of every AF point."""
    return torch.cat([torch.full((n,), i, dtype=torch.long) for i, n in enumerate(level_lengths)])


def af_level_of_duration(durations: torch.Tensor, num_levels: int) -> torch.Tensor:
    """0-based level for GT durations (AL1 units): [0,2) -> 0, [2^i, 2^(i+1)) -> i, longer -> last."""
    upper = [2.0 ** (i + 1) for i in range(num_levels - 1)]
    bounds = torch.tensor(upper, dtype=durations.dtype, device=durations.device)
    return torch.bucketize(durations, bounds, right=True)


# --------------------------------------------------------------------------------------------------
# Modules (spec 2.1 - 2.3)
# --------------------------------------------------------------------------------------------------


class BaseFeatureNet(nn.Module):
    """conv k1 + ReLU, conv k9 + ReLU, max-pool 2: (B, in_dim, T) -> (B, base_dim, T/2)."""

    def __init__(self, in_dim: int, base_dim: int) -> None:
        super().__init__()
        self.conv1 = conv1d(in_dim, base_dim, 1)
        self.conv2 = conv1d(base_dim, base_dim, 9)
        self.max_pooling = nn.MaxPool1d(kernel_size=2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.max_pooling(F.relu(self.conv2(F.relu(self.conv1(x)))))


class HierarchicalFeatureModule(ConvPyramid):
    """Base features then the pyramid conv1 (stride 1) .. convL (stride 2): levels AL1..ALL."""

    def __init__(self, in_dim: int, base_dim: int, pyramid_dims: Sequence[int]) -> None:
        super().__init__(base_dim, pyramid_dims, strides=[1] + [2] * (len(pyramid_dims) - 1))
        self.base_feature_net = BaseFeatureNet(in_dim, base_dim)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return super().forward(self.base_feature_net(x))


class AnchorBasedHead(LevelConvs):
    """One k3 conv per level to A x (C+1+3) channels, reshaped to (B, L*A, C+4), time-major."""

    def __init__(self, pyramid_dims: Sequence[int], num_outputs: int, anchors_per_position: int) -> None:
        super().__init__(pyramid_dims, anchors_per_position * num_outputs, kernel_size=3, relu=False, prefix="pred")
        self.num_outputs = num_outputs

    def forward(self, levels: Sequence[torch.Tensor]) -> torch.Tensor:
        outs = []
        for y in super().forward(levels):
            batch, _, length = y.shape
            # channel a * V + v -> (anchor a, value v); then positions major, anchors minor
            y = y.view(batch, -1, self.num_outputs, length).permute(0, 3, 1, 2)
            outs.append(y.reshape(batch, -1, self.num_outputs))
        return torch.cat(outs, dim=1)


class AnchorFreePredHead(nn.Module):
    """The FCOS-style head shared by all levels: a classification and a regression tower."""

    def __init__(self, in_dim: int, head_dim: int, num_logits: int) -> None:
        super().__init__()
        self.cls_branch = PredTower(in_dim, head_dim, num_logits)
        self.reg_branch = PredTower(in_dim, head_dim, 2)


class AnchorFreeModule(nn.Module):
    """Per-level 1x1 reduction + ReLU, shared towers, per-level Scale on the (linear) regression."""

    def __init__(self, pyramid_dims: Sequence[int], reduce_dim: int, head_dim: int, num_logits: int) -> None:
        super().__init__()
        self.num_levels = len(pyramid_dims)
        self.reduce_channels = LevelConvs(pyramid_dims, reduce_dim, kernel_size=1, relu=True, prefix="conv")
        self.pred = AnchorFreePredHead(reduce_dim, head_dim, num_logits)
        # one Scale more than levels, as the official module; the last one is never used, so it is
        # frozen (DDP without find_unused_parameters rejects parameters that never get a gradient)
        for i in range(self.num_levels + 1):
            self.add_module(f"scale{i}", Scale(1.0))
        getattr(self, f"scale{self.num_levels}").scale.requires_grad_(False)
        self.packed = True  # False: run the head level by level (reference path, benchmarks)

    def forward(self, levels: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        reduced = self.reduce_channels(levels)
        if not self.packed:
            cls_out, reg_out = [], []
            for i, x in enumerate(reduced):
                cls_out.append(self.pred.cls_branch(x))
                reg_out.append(getattr(self, f"scale{i}")(self.pred.reg_branch(x)))
            cls, reg = torch.cat(cls_out, dim=-1), torch.cat(reg_out, dim=-1)
        else:
            packed, keep, gap_mask = pack_levels(reduced)
            cls = run_tower_packed(self.pred.cls_branch, packed, gap_mask)[..., keep]
            reg = run_tower_packed(self.pred.reg_branch, packed, gap_mask)[..., keep]
            scales = torch.cat(
                [getattr(self, f"scale{i}").scale.expand(x.shape[-1]) for i, x in enumerate(reduced)]
            )
            reg = reg * scales
        return cls.transpose(1, 2).contiguous(), reg.transpose(1, 2).contiguous()


# --------------------------------------------------------------------------------------------------
# Targets (spec 3)
# --------------------------------------------------------------------------------------------------


class PaddedTargets(NamedTuple):
    segments: torch.Tensor  # (B, N, 2) normalized window coords, clipped to [0, 1]
    labels: torch.Tensor  # (B, N) int64, 1-based (0 = background)
    valid: torch.Tensor  # (B, N) bool


def pad_targets(
    targets: Sequence[Mapping[str, torch.Tensor]], window: int, num_classes: int, device: torch.device | str = "cpu"
) -> PaddedTargets:
    """Stack per-window targets (segments in window steps, 0-based labels) into padded tensors."""
    batch = len(targets)
    max_n = max([int(t["segments"].shape[0]) for t in targets] + [1])
    segments = torch.zeros(batch, max_n, 2, device=device)
    labels = torch.zeros(batch, max_n, dtype=torch.long, device=device)
    valid = torch.zeros(batch, max_n, dtype=torch.bool, device=device)
    for i, target in enumerate(targets):
        seg = torch.as_tensor(target["segments"], dtype=torch.float32, device=device).reshape(-1, 2)
        lab = torch.as_tensor(target["labels"], dtype=torch.long, device=device).reshape(-1)
        if seg.shape[0] != lab.shape[0]:
            raise TadkitError(f"window {i}: {seg.shape[0]} segments but {lab.shape[0]} labels", field="labels")
        if seg.numel() and bool((seg[:, 1] < seg[:, 0]).any()):
            raise TadkitError(f"window {i}: a segment ends before it starts", field="segments")
        if lab.numel() and (int(lab.min()) < 0 or int(lab.max()) >= num_classes):
            raise TadkitError(f"window {i}: labels must be in [0, {num_classes}), got {lab.tolist()}", field="labels")
        n = seg.shape[0]
        segments[i, :n] = seg.clamp(0.0, float(window)) / window
        labels[i, :n] = lab + 1
        valid[i, :n] = True
    return PaddedTargets(segments, labels, valid)


def af_targets(
    segments_al1: torch.Tensor,
    labels: torch.Tensor,
    valid: torch.Tensor,
    points: torch.Tensor,
    point_levels: torch.Tensor,
    num_levels: int,
    multi_gt: str = "first",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Anchor-free targets (reconstructed, spec 3.2).

    segments_al1 (B, N, 2) in AL1 units, labels (B, N) 1-based, valid (B, N); points/point_levels (P,).
    Returns class per point (B, P) int64 (0 = background) and distances (B, P, 2) = (p - t_s, t_e - p).
    """
    starts, ends = segments_al1[..., 0], segments_al1[..., 1]  # (B, N)
    gt_level = af_level_of_duration(ends - starts, num_levels)  # (B, N)
    p = points.view(1, -1, 1)
    contains = (
        (starts.unsqueeze(1) <= p)
        & (p <= ends.unsqueeze(1))
        & (gt_level.unsqueeze(1) == point_levels.view(1, -1, 1))
        & valid.unsqueeze(1)
    )  # (B, P, N)
    if multi_gt == "first":
        rank = torch.arange(contains.shape[-1], device=contains.device, dtype=segments_al1.dtype).expand_as(contains)
    elif multi_gt == "shortest":
        rank = (ends - starts).unsqueeze(1).expand_as(contains)
    else:
        raise ValueError(f"unknown multi_gt rule {multi_gt!r}")
    # smallest rank among containing GTs; argmin returns the first index on ties (annotation order)
    chosen = torch.where(contains, rank, torch.full_like(rank, math.inf)).argmin(dim=-1)  # (B, P)
    foreground = contains.any(dim=-1)
    cate = torch.where(foreground, labels.gather(1, chosen), torch.zeros_like(chosen))
    t_s, t_e = starts.gather(1, chosen), ends.gather(1, chosen)
    reg = torch.stack([points - t_s, t_e - points], dim=-1) * foreground.unsqueeze(-1)
    return cate, reg


def decode_anchors(
    rx: torch.Tensor, rw: torch.Tensor, centers: torch.Tensor, widths: torch.Tensor, rx_scale: float, rw_scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Regressed anchors: c = c_d + rx_scale * r_x * w_d, w = w_d * exp(rw_scale * r_w)."""
    return centers + rx_scale * rx * widths, widths * torch.exp(rw_scale * rw)


def batched_tiou(boxes: torch.Tensor, gts: torch.Tensor) -> torch.Tensor:
    """tIoU of (B, A, 2) boxes against (B, N, 2) GTs -> (B, A, N) (:func:`tadkit.ops.tiou_pairwise`)."""
    return tiou_pairwise(boxes, gts)


class AnchorMatch(NamedTuple):
    gt_start: torch.Tensor  # (B, A) matched GT start (0 where unmatched)
    gt_end: torch.Tensor  # (B, A)
    scores: torch.Tensor  # (B, A) max tIoU over the window's GTs (differentiable)
    labels: torch.Tensor  # (B, A) int64, matched class (1-based) or 0


def match_anchors(
    anchor_x: torch.Tensor,
    anchor_w: torch.Tensor,
    gt_segments: torch.Tensor,
    gt_labels: torch.Tensor,
    gt_valid: torch.Tensor,
    threshold: float,
) -> AnchorMatch:
    """SSAD-style matching of decoded anchors (B, A) to GTs (B, N, 2) in normalized coords (spec 3.1).

    The official loop walks the GTs in order and lets an anchor take GT j iff its tIoU beats the
    running max of GTs 0..j-1 (start 0) and the threshold. The last GT taken that way is the first
    arg-max over all GTs, and it is taken iff the max exceeds the threshold, which is what we compute.
    """
    boxes = torch.stack([anchor_x - anchor_w / 2, anchor_x + anchor_w / 2], dim=-1)
    iou = batched_tiou(boxes, gt_segments)  # (B, A, N)
    iou = torch.where(gt_valid.unsqueeze(1), iou, torch.zeros_like(iou))  # padding never matches
    scores, best = iou.max(dim=-1)  # first index among ties
    matched = scores > threshold
    zeros = torch.zeros_like(scores)
    return AnchorMatch(
        gt_start=torch.where(matched, gt_segments[..., 0].gather(1, best), zeros),
        gt_end=torch.where(matched, gt_segments[..., 1].gather(1, best), zeros),
        scores=scores,
        labels=torch.where(matched, gt_labels.gather(1, best), torch.zeros_like(best)),
    )


class SampleMasks(NamedTuple):
    positive: torch.Tensor  # bool, same shape as the match scores
    hard_negative: torch.Tensor
    random_negative: torch.Tensor


def select_ab_samples(
    match_scores: torch.Tensor,
    raw_overlap: torch.Tensor,
    threshold: float,
    neg_ratio: float,
    generator: torch.Generator | None = None,
) -> SampleMasks:
    """Positives, hard negatives and random negatives over the whole batch (spec 3.1).

    Random negatives are drawn with ``generator`` (None: the global torch RNG), so seeded runs repeat.
    """
    positive = match_scores > threshold
    hard = (~positive) & (raw_overlap > threshold)
    num_pos = int(positive.sum())
    num_hard = int(hard.sum())
    total = match_scores.numel()
    if num_pos > 0 and total > num_pos + num_hard:
        rate = neg_ratio * num_pos / (total - num_pos - num_hard)
    else:
        rate = 0.5  # official: no positive -> keep half of the remaining anchors
    rate = min(rate, 1.0)
    draw = torch.rand(match_scores.shape, generator=generator, dtype=torch.float32, device="cpu")
    draw = draw.to(match_scores.device)
    random_neg = (draw > 1.0 - rate) & ~positive & ~hard
    return SampleMasks(positive, hard, random_neg)


# --------------------------------------------------------------------------------------------------
# Losses (spec 4)
# --------------------------------------------------------------------------------------------------


def smooth_l1(diff: torch.Tensor) -> torch.Tensor:
    """Mean smooth-L1 (beta = 1, :func:`tadkit.models.losses.smooth_l1`); 0 (kept in the graph) for an empty input."""
    if diff.numel() == 0:
        return diff.sum()
    return elementwise_smooth_l1(diff).mean()


def af_losses(
    cls_logits: torch.Tensor, reg: torch.Tensor, cate: torch.Tensor, reg_target: torch.Tensor
) -> dict[str, torch.Tensor]:
    """CE over every point; smooth-L1 on both distances over foreground points (AL1 units)."""
    af_cls = F.cross_entropy(cls_logits.reshape(-1, cls_logits.shape[-1]), cate.reshape(-1))
    fg = cate > 0
    pred, target = reg[fg], reg_target[fg]
    af_reg = smooth_l1(pred[:, 0] - target[:, 0]) + smooth_l1(pred[:, 1] - target[:, 1])
    return {"af_cls": af_cls, "af_reg": af_reg}


def ab_losses(
    cls_logits: torch.Tensor,
    raw_overlap: torch.Tensor,
    anchor_x: torch.Tensor,
    anchor_w: torch.Tensor,
    match: AnchorMatch,
    masks: SampleMasks,
    detach_match_scores: bool = False,
) -> dict[str, torch.Tensor]:
    """CE and overlap smooth-L1 over P ∪ H ∪ N; (xmin, xmax) smooth-L1 over P (normalized coords)."""
    keep = masks.positive | masks.hard_negative | masks.random_negative
    if bool(keep.any()):
        ab_cls = F.cross_entropy(cls_logits[keep], match.labels[keep])
    else:
        ab_cls = cls_logits.sum() * 0.0
    scores = match.scores.detach() if detach_match_scores else match.scores
    ab_overlap = smooth_l1(scores[keep] - raw_overlap[keep])
    pos = masks.positive
    xmin, xmax = anchor_x - anchor_w / 2, anchor_x + anchor_w / 2
    ab_loc = smooth_l1(xmin[pos] - match.gt_start[pos]) + smooth_l1(xmax[pos] - match.gt_end[pos])
    return {"ab_cls": ab_cls, "ab_overlap": ab_overlap, "ab_loc": ab_loc}


# --------------------------------------------------------------------------------------------------
# Decoding (spec 6.1, 6.2)
# --------------------------------------------------------------------------------------------------


class Candidates(NamedTuple):
    segments: torch.Tensor  # (B, K, 2) window steps
    scores: torch.Tensor  # (B, K)
    labels: torch.Tensor  # (B, K) 0-based
    keep: torch.Tensor  # (B, K) bool


def decode_ab(
    ab: torch.Tensor,
    centers: torch.Tensor,
    widths: torch.Tensor,
    num_classes: int,
    window: int,
    rx_scale: float,
    rw_scale: float,
    background_filter: float,
) -> Candidates:
    """AB candidates: score_k = softmax_k * sigmoid(raw overlap); drop background prob >= filter."""
    probs = ab[..., : num_classes + 1].softmax(dim=-1)
    overlap = torch.sigmoid(ab[..., num_classes + 1])
    x, w = decode_anchors(ab[..., num_classes + 2], ab[..., num_classes + 3], centers, widths, rx_scale, rw_scale)
    scores, labels = (probs[..., 1:] * overlap.unsqueeze(-1)).max(dim=-1)
    segments = torch.stack([x - w / 2, x + w / 2], dim=-1).clamp(0.0, 1.0) * window
    return Candidates(segments, scores, labels, probs[..., 0] < background_filter)


def decode_af(
    cls_logits: torch.Tensor, reg: torch.Tensor, points: torch.Tensor, af_units: int, window: int
) -> Candidates:
    """AF candidates: conf = max softmax over actions; [p - r_s, p + r_e] clipped to the window."""
    scores, labels = cls_logits.softmax(dim=-1)[..., 1:].max(dim=-1)
    segments = torch.stack([points - reg[..., 0], points + reg[..., 1]], dim=-1).clamp(0.0, float(af_units))
    segments = segments * (window / af_units)
    return Candidates(segments, scores, labels, torch.ones_like(scores, dtype=torch.bool))


# --------------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------------


class A2Net(nn.Module):
    """A2Net implementing :class:`tadkit.models.base.LocalizationModel`.

    ``state_dict()`` keys are exactly the official ones (``features.*``, ``af.*``, ``ab.*``).
    """

    def __init__(self, config: A2NetConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or A2NetConfig()
        num_logits = config.num_classes + 1
        self.features = HierarchicalFeatureModule(config.in_dim, config.base_dim, config.pyramid_dims)
        self.af = (
            AnchorFreeModule(config.pyramid_dims, config.reduce_dim, config.head_dim, num_logits)
            if config.use_af
            else None
        )
        self.ab = (
            AnchorBasedHead(config.pyramid_dims, num_logits + 3, config.anchors_per_position)
            if config.use_ab
            else None
        )
        centers, widths = default_anchors(config.level_lengths, config.anchor_ratios)
        # geometry is derived from the config: non-persistent, so state_dict keys stay official
        self.register_buffer("anchor_centers", centers, persistent=False)
        self.register_buffer("anchor_widths", widths, persistent=False)
        self.register_buffer("af_points", af_point_locations(config.level_lengths), persistent=False)
        self.register_buffer("af_levels", af_point_levels(config.level_lengths), persistent=False)
        self.sampling_generator: torch.Generator | None = None  # random negatives; None = global RNG
        self.apply(init_conv_kaiming_uniform)

    # ---- protocol -------------------------------------------------------------------------------

    def forward(self, batch: Mapping[str, Any] | torch.Tensor) -> dict[str, torch.Tensor]:
        """``batch["features"]`` (B, in_dim, window) -> raw outputs (a bare tensor is accepted too)."""
        return self.raw_outputs(batch["features"] if isinstance(batch, Mapping) else batch)

    def raw_outputs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Official-layout outputs: af_cls (B, P, C+1), af_reg (B, P, 2), ab (B, A, C+4)."""
        cfg = self.config
        if x.dim() != 3 or x.shape[1] != cfg.in_dim or x.shape[2] != cfg.window:
            raise TadkitError(
                f"A2Net expects features of shape (batch, {cfg.in_dim}, {cfg.window}), got {tuple(x.shape)}",
                field="features",
            )
        levels = self.features(x)
        out: dict[str, torch.Tensor] = {}
        if self.af is not None:
            out["af_cls"], out["af_reg"] = self.af(levels)
        if self.ab is not None:
            out["ab"] = self.ab(levels)
        return out

    def loss(
        self, outputs: dict[str, torch.Tensor], batch: Mapping[str, Any] | Sequence[Mapping[str, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        """Loss terms of the present branches and ``total`` = weighted sum (30/1/1/10/10 by default).

        ``batch["targets"]`` (or the target list itself): per window ``segments`` (N, 2) in window
        steps and 0-based ``labels`` (N,).
        """
        cfg = self.config
        targets = batch["targets"] if isinstance(batch, Mapping) else batch
        some = next(iter(outputs.values()))
        padded = pad_targets(targets, cfg.window, cfg.num_classes, device=some.device)
        terms: dict[str, torch.Tensor] = {}
        if cfg.use_af:
            cate, reg_target = af_targets(
                padded.segments * cfg.af_units,
                padded.labels,
                padded.valid,
                self.af_points,
                self.af_levels,
                cfg.num_levels,
                cfg.af_multi_gt,
            )
            terms.update(af_losses(outputs["af_cls"], outputs["af_reg"], cate, reg_target))
        if cfg.use_ab:
            ab = outputs["ab"]
            c1 = cfg.num_classes + 1
            raw_overlap = ab[..., c1]
            rx, rw = ab[..., c1 + 1], ab[..., c1 + 2]
            anchor_x, anchor_w = decode_anchors(
                rx, rw, self.anchor_centers, self.anchor_widths, cfg.anchor_rx_scale, cfg.anchor_rw_scale
            )
            match = match_anchors(
                anchor_x, anchor_w, padded.segments, padded.labels, padded.valid, cfg.match_threshold
            )
            masks = select_ab_samples(
                match.scores.detach(), raw_overlap.detach(), cfg.match_threshold, cfg.neg_ratio, self.sampling_generator
            )
            terms.update(
                ab_losses(ab[..., :c1], raw_overlap, anchor_x, anchor_w, match, masks, cfg.detach_match_scores)
            )
        weights = {
            "af_cls": cfg.weight_af_cls,
            "af_reg": cfg.weight_af_reg,
            "ab_cls": cfg.weight_ab_cls,
            "ab_overlap": cfg.weight_ab_overlap,
            "ab_loc": cfg.weight_ab_loc,
        }
        terms["total"] = sum(weights[name] * value for name, value in terms.items())
        return terms

    @torch.no_grad()
    def decode(self, outputs: dict[str, torch.Tensor], batch: Mapping[str, Any] | None = None) -> list[WindowDetections]:
        """Per-window candidates (window steps, 0-based labels), AB first then AF, before NMS."""
        cfg = self.config
        parts: list[Candidates] = []
        both = cfg.use_ab and cfg.use_af
        if cfg.use_ab:
            cand = decode_ab(
                outputs["ab"],
                self.anchor_centers,
                self.anchor_widths,
                cfg.num_classes,
                cfg.window,
                cfg.anchor_rx_scale,
                cfg.anchor_rw_scale,
                cfg.ab_background_filter,
            )
            if both:
                cand = cand._replace(scores=cand.scores * (2.0 * cfg.merge_lambda))
            parts.append(cand)
        if cfg.use_af:
            cand = decode_af(outputs["af_cls"], outputs["af_reg"], self.af_points, cfg.af_units, cfg.window)
            if both:
                cand = cand._replace(scores=cand.scores * (2.0 * (1.0 - cfg.merge_lambda)))
            parts.append(cand)
        segments = torch.cat([p.segments for p in parts], dim=1)
        scores = torch.cat([p.scores for p in parts], dim=1)
        labels = torch.cat([p.labels for p in parts], dim=1)
        keep = torch.cat([p.keep for p in parts], dim=1)
        return [
            WindowDetections(segments=segments[i][keep[i]], scores=scores[i][keep[i]], labels=labels[i][keep[i]])
            for i in range(segments.shape[0])
        ]

    def config_dict(self) -> dict[str, Any]:
        return self.config.to_dict()

    # ---- official checkpoints -------------------------------------------------------------------

    @classmethod
    def from_official_state_dict(
        cls, state_dict: Mapping[str, Any], source: str | None = None, **overrides: Any
    ) -> "A2Net":
        """See :func:`tadkit.methods.a2net.official.from_official_state_dict`."""
        from tadkit.methods.a2net.official import from_official_state_dict

        return from_official_state_dict(state_dict, source=source, **overrides)


def strip_module_prefix(key: str) -> str:
    """Drop the ``module.`` prefix DataParallel/DDP add to a key (kept for callers of issue 3's API)."""
    return next(iter(strip_ddp_prefix({key: None})))  # one key: stripped when it has the prefix


def build_a2net(**kwargs: Any) -> A2Net:
    """Registry builder: ``build_model("a2net", **config_dict)``."""
    return A2Net(A2NetConfig.from_dict(kwargs))
