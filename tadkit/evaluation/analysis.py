"""Error analysis on top of the official protocols.

* :func:`duration_breakdown`: mAP per GT-duration bin, as in A2Net (TIP 2020) Table I. The bin's
  GT is scored alone; a prediction whose best-overlapping GT (any class, same video) lies in
  another bin is ignored when it is not matched, instead of counting as a false positive.
  Predictions overlapping no GT at all are ignored too by default (``background="ignore"``), which
  is what the A2Net release does (its ``pre_None.txt`` is never scored); ``"fp"`` keeps them.
  Bins are [low, high) on durations rounded to 1 us (so 54.3 - 52.8 counts as 1.5 s); zero-length
  instances fall in no bin, as in the annotation statistics.
* :func:`false_positive_breakdown`: DETAD's false-positive types (Alwassel et al., ECCV 2018):
  each unmatched prediction is typed from its best-overlapping GT (any class, same video):
  tIoU >= threshold -> double detection (same label) / wrong label (other label);
  ``min_tiou`` <= tIoU < threshold -> localization (same) / confusion (other); else background.
  Also the average-mAP gain when each type is removed, as DETAD reports it. Under ``thumos14``
  "above the threshold" is strict (>), as that protocol's matching is.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

import numpy as np

from tadkit.data.records import AnnotationSet, DetectionSet
from tadkit.errors import TadkitError
from tadkit.evaluation.detection import (
    activitynet_order,
    check_protocol,
    default_tiou,
    parse_tiou,
    score_problem,
)
from tadkit.evaluation.matching import pairs_by_key, tiou_activitynet, tiou_thumos
from tadkit.evaluation.problem import EvalProblem, prepare, restrict

FP_TYPES = ("double_detection", "wrong_label", "localization", "confusion", "background")


def a2net_duration_bins() -> list[tuple[str, float, float]]:
    """A2Net Table I bins (name, low, high) in seconds: ES (0,1.5) S [1.5,2.5) M [2.5,4.2) L [4.2,6.9) EL >= 6.9."""
    from tadkit.data.annotations import A2NET_DURATION_BINS

    return [(b.name, float(b.low), float(b.high)) for b in A2NET_DURATION_BINS]


def best_overlap(p: EvalProblem, protocol: str) -> tuple[np.ndarray, np.ndarray]:
    """For each prediction: (index of its best-tIoU GT of any class in its video or -1, that tIoU).

    Ties go to the GT listed first; a prediction overlapping nothing gets -1 and 0.
    """
    n_p = len(p.pred_video)
    best_gt = np.full(n_p, -1, dtype=np.int64)
    best_iou = np.zeros(n_p)
    if n_p == 0 or len(p.gt_video) == 0:
        return best_gt, best_iou
    pi, gi = pairs_by_key(p.pred_video, p.gt_video)
    fn = tiou_thumos if protocol == "thumos14" else tiou_activitynet
    iou = fn(p.pred_start[pi], p.pred_end[pi], p.gt_start[gi], p.gt_end[gi])
    s = np.lexsort((gi, -iou, pi))
    pi, gi, iou = pi[s], gi[s], iou[s]
    first = np.r_[True, pi[1:] != pi[:-1]] & (iou > 0)
    best_gt[pi[first]] = gi[first]
    best_iou[pi[first]] = iou[first]
    return best_gt, best_iou


# ----------------------------------------------------------------------------------------------
# per-duration mAP (A2Net Table I)
# ----------------------------------------------------------------------------------------------
@dataclass
class DurationBinResult:
    name: str
    low: float
    high: float | None  # None = open ended
    num_gt: int
    num_classes: int
    mAP: list[float]  # per tIoU (fractions)
    per_class: dict[str, list[float]]


@dataclass
class DurationBreakdown:
    protocol: str
    tiou: list[float]
    background: str
    bins: list[DurationBinResult]
    video_list: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    def format_table(self) -> str:
        lines = [f"mAP per GT duration ({self.protocol}; predictions overlapping no GT: {self.background})",
                 f"{'bin':<5} {'seconds':<13} {'#GT':>5} {'#cls':>5} "
                 + " ".join(f"{'@' + format(t, 'g'):>8}" for t in self.tiou)]
        for b in self.bins:
            span = f"[{b.low:g}, {'inf' if b.high is None else format(b.high, 'g')})"
            vals = " ".join(f"{100 * m:>8.2f}" if b.num_gt else f"{'-':>8}" for m in b.mAP)
            lines.append(f"{b.name:<5} {span:<13} {b.num_gt:>5} {b.num_classes:>5} {vals}")
        return "\n".join(lines)


def duration_breakdown(
    gt: AnnotationSet,
    pred: DetectionSet,
    protocol: str = "thumos14",
    tiou_thresholds: str | Sequence[float] = (0.5,),
    bins: Sequence[tuple[str, float, float]] | None = None,
    subset: str | Iterable[str] | None = None,
    blocked: str | os.PathLike | Iterable[str] | None = None,
    background: str = "ignore",
    unknown_videos: str = "fp",
) -> DurationBreakdown:
    """mAP per GT-duration bin (default: A2Net Table I bins at tIoU 0.5). See the module doc."""
    check_protocol(protocol)
    if background not in ("ignore", "fp"):
        raise TadkitError("background must be 'ignore' or 'fp'", field="background")
    thresholds = parse_tiou(tiou_thresholds)
    bins = a2net_duration_bins() if bins is None else [(str(n), float(lo), float(hi)) for n, lo, hi in bins]
    p = prepare(gt, pred, subset=subset, blocked=blocked, unknown_videos=unknown_videos)
    duration = np.round(p.gt_end - p.gt_start, 6)
    gt_bin = np.full(len(duration), -1, dtype=np.int64)
    for k, (_, lo, hi) in enumerate(bins):
        gt_bin[(duration > 0) & (duration >= lo) & (duration < hi)] = k
    owner, _ = best_overlap(p, protocol)
    owner_bin = np.where(owner >= 0, gt_bin[np.maximum(owner, 0)], -2)  # -2: overlaps no GT
    out = []
    for k, (name, lo, hi) in enumerate(bins):
        in_bin = gt_bin == k
        foreign = (owner_bin != k) & (owner_bin != -2)
        if background == "ignore":
            foreign |= owner_bin == -2
        if in_bin.any():
            sub, kept = restrict(p, gt_mask=in_bin)
            ap = score_problem(sub, protocol, thresholds, ignore_unmatched=foreign[kept]).ap
            m_ap = [float(v) for v in ap.mean(axis=1)]
            per_class = {c: [float(v) for v in ap[:, i]] for i, c in enumerate(sub.classes)}
        else:
            m_ap, per_class = [0.0] * len(thresholds), {}
        out.append(DurationBinResult(
            name=name, low=lo, high=None if np.isinf(hi) else hi, num_gt=int(in_bin.sum()),
            num_classes=len(per_class), mAP=m_ap, per_class=per_class,
        ))
    return DurationBreakdown(protocol=protocol, tiou=[float(t) for t in thresholds], background=background,
                             bins=out, video_list=p.video_list)


# ----------------------------------------------------------------------------------------------
# DETAD false-positive breakdown
# ----------------------------------------------------------------------------------------------
@dataclass
class FalsePositiveBreakdown:
    protocol: str
    tiou: list[float]
    min_tiou: float
    limit_factor: float | None
    num_predictions: int  # predictions analysed (after the optional top-k limit)
    true_positives: list[int]  # per tIoU
    counts: dict[str, list[int]]  # FP type -> count per tIoU
    removed: list[int]  # per tIoU: left out by the protocol (THUMOS14 Ambiguous overlap)
    average_mAP: float
    mAP_gain: dict[str, float]  # FP type -> average-mAP gain when those predictions are removed
    video_list: str = ""

    def fractions(self) -> dict[str, list[float]]:
        """Share of each FP type among all false positives, per tIoU."""
        totals = np.sum([self.counts[t] for t in FP_TYPES], axis=0).astype(float)
        return {t: [float(c / n) if n else 0.0 for c, n in zip(self.counts[t], totals)] for t in FP_TYPES}

    def to_dict(self) -> dict:
        out = asdict(self)
        out["fractions"] = self.fractions()
        return out

    def format_table(self) -> str:
        frac = self.fractions()
        lines = [f"false-positive breakdown ({self.protocol}, {self.num_predictions} predictions"
                 + (f", top {self.limit_factor:g}x#GT per class" if self.limit_factor else "") + ")",
                 "type               " + " ".join(f"@{t:<6g}" for t in self.tiou) + "  avg-mAP gain"]
        for name in FP_TYPES:
            row = " ".join(f"{100 * f:>6.1f}%" for f in frac[name])
            lines.append(f"{name:<18} {row}  {100 * self.mAP_gain[name]:+.2f}")
        lines.append(f"{'true positives':<18} " + " ".join(f"{n:>7d}" for n in self.true_positives))
        return "\n".join(lines)


def false_positive_breakdown(
    gt: AnnotationSet,
    pred: DetectionSet,
    protocol: str = "activitynet",
    tiou_thresholds: str | Sequence[float] | None = None,
    min_tiou: float = 0.1,
    limit_factor: float | None = None,
    subset: str | Iterable[str] | None = None,
    blocked: str | os.PathLike | Iterable[str] | None = None,
    unknown_videos: str = "fp",
) -> FalsePositiveBreakdown:
    """DETAD error types of the false positives. ``limit_factor=k`` keeps, per class, the top
    ``int(k * #GT)`` predictions by score first (DETAD analyses the top-10G)."""
    check_protocol(protocol)
    thresholds = default_tiou(protocol) if tiou_thresholds is None else parse_tiou(tiou_thresholds)
    p = prepare(gt, pred, subset=subset, blocked=blocked, unknown_videos=unknown_videos)
    if limit_factor is not None:
        if not limit_factor > 0:
            raise TadkitError("limit_factor must be > 0", field="limit_factor")
        order = activitynet_order(p)  # class, score desc, input row
        sorted_class = p.pred_class[order]
        rank = np.arange(len(order)) - np.searchsorted(sorted_class, sorted_class, side="left")
        top = np.zeros(len(order), dtype=bool)
        top[order] = rank < (p.npos[sorted_class] * limit_factor).astype(np.int64)
        p, _ = restrict(p, pred_mask=top)
    thr = np.asarray(thresholds)
    scored = score_problem(p, protocol, thresholds)
    best_gt, best_iou = best_overlap(p, protocol)
    same = (best_gt >= 0) & (p.gt_class[np.maximum(best_gt, 0)] == p.pred_class)
    above = best_iou[None, :] > thr[:, None] if protocol == "thumos14" else best_iou[None, :] >= thr[:, None]
    near = (best_iou >= min_tiou)[None, :] & ~above
    fp = ~scored.tp & ~scored.removed
    kinds = {
        "double_detection": fp & above & same,
        "wrong_label": fp & above & ~same,
        "localization": fp & near & same,
        "confusion": fp & near & ~same,
    }
    kinds["background"] = fp & ~(kinds["double_detection"] | kinds["wrong_label"] | kinds["localization"]
                                 | kinds["confusion"])
    average = float(scored.ap.mean())
    gain = {name: float(score_problem(p, protocol, thresholds, ignore_unmatched=mask).ap.mean()) - average
            for name, mask in kinds.items()}
    return FalsePositiveBreakdown(
        protocol=protocol,
        tiou=[float(t) for t in thresholds],
        min_tiou=float(min_tiou),
        limit_factor=limit_factor,
        num_predictions=len(p.pred_video),
        true_positives=[int(v) for v in scored.tp.sum(axis=1)],
        counts={name: [int(v) for v in mask.sum(axis=1)] for name, mask in kinds.items()},
        removed=[int(v) for v in scored.removed.sum(axis=1)],
        average_mAP=average,
        mAP_gain=gain,
        video_list=p.video_list,
    )
