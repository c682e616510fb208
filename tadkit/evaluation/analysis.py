"""Error analysis on top of the official protocols.

* :func:`duration_breakdown`: mAP per GT-duration bin, as in A2Net (TIP 2020) Table I. The bin's
  GT is scored alone; a prediction whose best-overlapping GT (any class, same video) lies in
  another bin is ignored when it is not matched, instead of counting as a false positive.
  Predictions overlapping no GT at all are ignored too by default (``background="ignore"``), which
  is what the A2Net release does (its ``pre_None.txt`` is never scored); ``"fp"`` keeps them.
  Bins are [low, high) on durations rounded to 1 us (so 54.3 - 52.8 counts as 1.5 s); zero-length
  instances fall in no bin, as in the annotation statistics. This is the ``seconds`` preset.
* :func:`a2net_table1_breakdown` (preset ``a2net-table1``): the A2Net authors' Table I analysis
  code exactly (equal-count quintiles by rank, one bin per prediction, ``%.3f``/``%.4f`` rounding);
  :func:`duration_bins` picks a preset by name.
* :func:`false_positive_breakdown`: DETAD's false-positive types (Alwassel et al., ECCV 2018):
  each unmatched prediction is typed from its best-overlapping GT (any class, same video):
  tIoU >= threshold -> double detection (same label) / wrong label (other label);
  ``min_tiou`` <= tIoU < threshold -> localization (same) / confusion (other); else background.
  Also the average-mAP gain when each type is removed, as DETAD reports it. Under ``thumos14``
  "above the threshold" is strict (>), as that protocol's matching is. :func:`detad_breakdown`
  uses DETAD's own settings (top-10G, normalized AP); its deviations from the official DETAD code
  are listed in docs/evaluation.md ("False positives vs the official DETAD").
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
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
from tadkit.evaluation.matching import (
    pairs_by_key,
    segmented_cumsum,
    segmented_suffix_max,
    tiou_activitynet,
    tiou_thumos,
)
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
    preset: str = "seconds"  # key of DURATION_BIN_PRESETS
    counts: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def format_table(self) -> str:
        if self.preset == "a2net-table1":
            title = (f"mAP per GT duration, preset a2net-table1 (official A2Net Table I analysis: equal-count "
                     f"quintiles, predictions routed to their best-overlap GT's bin; {self.protocol})")
            span_head = "duration (s)"
        else:
            title = (f"mAP per GT duration, preset {self.preset} ({self.protocol}; predictions overlapping "
                     f"no GT: {self.background})")
            span_head = "seconds"
        lines = [title, f"{'bin':<5} {span_head:<13} {'#GT':>5} {'#cls':>5} "
                 + " ".join(f"{'@' + format(t, 'g'):>8}" for t in self.tiou)]
        for b in self.bins:
            if self.preset == "a2net-table1":
                span = f"{b.low:g}-{b.high:g}" if b.num_gt else "-"
            else:
                span = f"[{b.low:g}, {'inf' if b.high is None else format(b.high, 'g')})"
            vals = " ".join(f"{100 * m:>8.2f}" if b.num_gt else f"{'-':>8}" for m in b.mAP)
            lines.append(f"{b.name:<5} {span:<13} {b.num_gt:>5} {b.num_classes:>5} {vals}")
        if self.counts.get("preds_without_bin"):
            lines.append(f"note: {self.counts['preds_without_bin']} predictions overlap no GT (dropped, as the "
                         "official analysis never scores its pre_None.txt)")
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
# A2Net Table I, exactly as the authors' analysis code computes it
# ----------------------------------------------------------------------------------------------
A2NET_TABLE1_BINS = ("ES", "S", "M", "L", "EL")
A2NET_TABLE1_QUANTILES = (0.2, 0.4, 0.6, 0.8)
DURATION_BIN_PRESETS = {
    "seconds": "fixed second ranges ES (0,1.5) S [1.5,2.5) M [2.5,4.2) L [4.2,6.9) EL [6.9,inf); tadkit's rule",
    "a2net-table1": "A2Net Table I analysis code (LeYangNwpu/A2Net@3d8186d, Ablation-Comparison-Experiments/"
                    "Table1-analysis): equal-count quintiles by rank, predictions routed to one bin",
}


def _printf_round(values: np.ndarray, decimals: int) -> np.ndarray:
    """float(f"{v:.{decimals}f}"): what a file written with ``%.Nf`` reads back as (correctly
    rounded, unlike ``np.round``, which scales first)."""
    return np.array([float(f"{v:.{decimals}f}") for v in values.tolist()], dtype=np.float64)


def a2net_table1_order(p: EvalProblem) -> np.ndarray:
    """GT rows in the order of the official ``action`` list after its duration sort.

    ``GT_sort_by_action_duration.py`` reads the class files in detclasslist order, line by line,
    into a dict per video (videos in first-appearance order), sorts each video's list by start
    (stable), concatenates and stable-sorts by the raw ``end - start``. With class files listing
    videos in name order (the evalkit's), a video first appears in the first class that has it,
    at its name's rank; inside a video the pre-sort order is class order, then line order.
    """
    n_v = p.num_gt_videos
    first_class = np.full(n_v, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first_class, p.gt_video, p.gt_class)
    name_rank = p.video_name_rank()
    row = np.arange(len(p.gt_video))
    duration = p.gt_end - p.gt_start
    return np.lexsort((row, p.gt_class, p.gt_start, name_rank[p.gt_video], first_class[p.gt_video], duration))


def a2net_table1_routing(p: EvalProblem, order: np.ndarray) -> np.ndarray:
    """(P,) position in ``order`` of each prediction's GT: the highest tIoU (> 0) GT of any class
    in its video, the earlier one in ``order`` on ties; -1 when it overlaps no GT."""
    n_p = len(p.pred_video)
    owner = np.full(n_p, -1, dtype=np.int64)
    if n_p == 0 or len(order) == 0:
        return owner
    pos = np.empty(len(order), dtype=np.int64)
    pos[order] = np.arange(len(order))
    pi, gi = pairs_by_key(p.pred_video, p.gt_video)
    iou = tiou_thumos(p.pred_start[pi], p.pred_end[pi], p.gt_start[gi], p.gt_end[gi])  # inter / hull, as the script
    s = np.lexsort((pos[gi], -iou, pi))
    pi, gi, iou = pi[s], gi[s], iou[s]
    first = np.r_[True, pi[1:] != pi[:-1]] & (iou > 0)
    owner[pi[first]] = pos[gi[first]]
    return owner


def a2net_table1_breakdown(
    gt: AnnotationSet,
    pred: DetectionSet,
    tiou_thresholds: str | Sequence[float] = (0.5,),
    subset: str | Iterable[str] | None = None,
    blocked: str | os.PathLike | Iterable[str] | None = None,
    official_rounding: bool = True,
) -> DurationBreakdown:
    """mAP per duration bin exactly as the A2Net authors' Table I analysis computes it.

    1. The non-Ambiguous GT, in :func:`a2net_table1_order`, is cut into five equal-count bins at
       ``int(q * n)`` for q = 0.2, 0.4, 0.6, 0.8 (ties at a cut split between bins).
    2. Each prediction goes to the bin of its best-overlap GT (:func:`a2net_table1_routing`, any
       class); predictions overlapping no GT are dropped (``pre_None.txt`` is never scored).
    3. Each bin is scored with ``TH14evalDet`` on its own GT (class files in the sorted order, which
       is the matching order), the full Ambiguous list and its own predictions, over the classes with
       GT in the bin (the README's edited ``detclasslist.txt``); other classes' predictions are
       ignored.
    ``official_rounding``: the scripts write GT and prediction times with ``%.3f`` and scores with
    ``%.4f`` before scoring; the binning uses the raw values. False scores the raw values.
    """
    thresholds = parse_tiou(tiou_thresholds)
    p = prepare(gt, pred, subset=subset, blocked=blocked, unknown_videos="drop")
    order = a2net_table1_order(p)
    n = len(order)
    cuts = [0] + [int(n * q) for q in A2NET_TABLE1_QUANTILES] + [n]
    pos_bin = np.searchsorted(np.asarray(cuts[1:-1]), np.arange(n), side="right")  # bin of each sorted position
    owner = a2net_table1_routing(p, order)
    pred_bin = np.where(owner >= 0, pos_bin[np.maximum(owner, 0)], -1)
    # the per-bin GT files list instances in sorted order: permute GT rows into that order
    ps = replace(p, gt_video=p.gt_video[order], gt_class=p.gt_class[order],
                 gt_start=p.gt_start[order], gt_end=p.gt_end[order])
    if official_rounding:
        ps = replace(ps, gt_start=_printf_round(ps.gt_start, 3), gt_end=_printf_round(ps.gt_end, 3),
                     pred_start=_printf_round(ps.pred_start, 3), pred_end=_printf_round(ps.pred_end, 3),
                     pred_score=_printf_round(ps.pred_score, 4))
    duration = (p.gt_end - p.gt_start)[order]
    out = []
    for k, name in enumerate(A2NET_TABLE1_BINS):
        in_bin = pos_bin == k
        if in_bin.any():
            sub, _ = restrict(ps, gt_mask=in_bin, pred_mask=pred_bin == k)
            ap = score_problem(sub, "thumos14", thresholds).ap
            m_ap = [float(v) for v in ap.mean(axis=1)]
            per_class = {c: [float(v) for v in ap[:, i]] for i, c in enumerate(sub.classes)}
            low, high = float(duration[in_bin].min()), float(duration[in_bin].max())
        else:
            m_ap, per_class, low, high = [0.0] * len(thresholds), {}, 0.0, 0.0
        out.append(DurationBinResult(name=name, low=low, high=high, num_gt=int(in_bin.sum()),
                                     num_classes=len(per_class), mAP=m_ap, per_class=per_class))
    counts = {"preds_per_bin": {name: int((pred_bin == k).sum()) for k, name in enumerate(A2NET_TABLE1_BINS)},
              "preds_without_bin": int((pred_bin < 0).sum()), "cuts": cuts,
              "official_rounding": official_rounding}
    return DurationBreakdown(protocol="thumos14", tiou=[float(t) for t in thresholds], background="drop",
                             bins=out, video_list=p.video_list, preset="a2net-table1", counts=counts)


def duration_bins(
    gt: AnnotationSet,
    pred: DetectionSet,
    preset: str = "seconds",
    protocol: str = "thumos14",
    tiou_thresholds: str | Sequence[float] = (0.5,),
    subset: str | Iterable[str] | None = None,
    blocked: str | os.PathLike | Iterable[str] | None = None,
    unknown_videos: str = "fp",
) -> DurationBreakdown:
    """Per-duration mAP under a named rule: ``seconds`` (:func:`duration_breakdown`) or
    ``a2net-table1`` (:func:`a2net_table1_breakdown`, always the thumos14 protocol)."""
    if preset == "seconds":
        return duration_breakdown(gt, pred, protocol=protocol, tiou_thresholds=tiou_thresholds, subset=subset,
                                  blocked=blocked, unknown_videos=unknown_videos)
    if preset == "a2net-table1":
        return a2net_table1_breakdown(gt, pred, tiou_thresholds=tiou_thresholds, subset=subset, blocked=blocked)
    raise TadkitError(f"unknown duration-bin preset {preset!r}; choose one of {', '.join(DURATION_BIN_PRESETS)}",
                      field="duration_bins")


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
    normalize_ap: bool = False  # DETAD's AP_N (precision with the average #GT per class)

    def detad_profile(self) -> dict[str, list[float]]:
        """DETAD's "false positive profile" shares: count / all analysed predictions, true
        positives included (``fp_error_types_precentage_df``), per tIoU."""
        n = float(self.num_predictions) or 1.0
        out = {"true_positive": [tp / n for tp in self.true_positives]}
        out.update({t: [c / n for c in self.counts[t]] for t in FP_TYPES})
        return out

    def fractions(self) -> dict[str, list[float]]:
        """Share of each FP type among all false positives, per tIoU."""
        totals = np.sum([self.counts[t] for t in FP_TYPES], axis=0).astype(float)
        return {t: [float(c / n) if n else 0.0 for c, n in zip(self.counts[t], totals)] for t in FP_TYPES}

    def to_dict(self) -> dict:
        out = asdict(self)
        out["fractions"] = self.fractions()
        out["detad_profile"] = self.detad_profile()
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
    normalize_ap: bool = False,
) -> FalsePositiveBreakdown:
    """DETAD error types of the false positives. ``limit_factor=k`` keeps, per class, the top
    ``int(k * #GT)`` predictions by score first (DETAD analyses the top-10G).
    ``normalize_ap=True`` (activitynet only): AP and gains use DETAD's normalized precision
    ``rec * N / (rec * N + fp)``, N = #GT / #classes (its ``normalize_ap=True`` run); see
    :func:`detad_breakdown` for DETAD's settings in one call."""
    check_protocol(protocol)
    if normalize_ap and protocol != "activitynet":
        raise TadkitError("normalize_ap is DETAD's ActivityNet-style AP: use protocol 'activitynet'",
                          field="normalize_ap")
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
    if normalize_ap:
        n_avg = float(p.npos.sum()) / len(p.classes)
        average = float(_normalized_ap(p, scored.tp, ~scored.removed, n_avg).mean())
        gain = {name: float(_normalized_ap(p, scored.tp, ~(scored.removed | (mask & ~scored.tp)), n_avg).mean())
                - average for name, mask in kinds.items()}
    else:
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
        normalize_ap=normalize_ap,
    )


def _normalized_ap(p: EvalProblem, tp: np.ndarray, keep: np.ndarray, n_avg: float) -> np.ndarray:
    """(T, C) interpolated AP with DETAD's normalized precision rec*N/(rec*N + fp), over the
    kept predictions in ActivityNet ranking order (``tp``/``keep`` in problem order)."""
    order = activitynet_order(p)
    pc = p.pred_class[order]
    tp, keep = (tp & keep)[:, order], keep[:, order]
    n_t, n_c = tp.shape[0], len(p.npos)
    if tp.shape[1] == 0:
        return np.zeros((n_t, n_c))
    tp_cum = segmented_cumsum(tp.astype(np.int64), pc)
    fp_cum = segmented_cumsum((keep & ~tp).astype(np.int64), pc)
    t_idx, k = np.nonzero(tp)  # normalized precision also only falls between TPs
    c = pc[k]
    rec = tp_cum[t_idx, k] / p.npos[c]
    prec = rec * n_avg / (rec * n_avg + fp_cum[t_idx, k])
    best = segmented_suffix_max(prec, t_idx * n_c + c)
    cnt = tp_cum[t_idx, k]
    step = cnt / p.npos[c] - (cnt - 1) / p.npos[c]
    return np.bincount(t_idx * n_c + c, weights=step * best, minlength=n_t * n_c).reshape(n_t, n_c)


def detad_breakdown(
    gt: AnnotationSet,
    pred: DetectionSet,
    tiou_thresholds: str | Sequence[float] | None = None,
    subset: str | Iterable[str] | None = None,
    blocked: str | os.PathLike | Iterable[str] | None = None,
) -> FalsePositiveBreakdown:
    """The false-positive analysis with the settings of DETAD's ``false_positive_analysis.py``:
    activitynet matching, top-10G per class, min tIoU 0.1, normalized AP (see docs/evaluation.md
    for the remaining, documented deviations)."""
    return false_positive_breakdown(gt, pred, protocol="activitynet", tiou_thresholds=tiou_thresholds,
                                    min_tiou=0.1, limit_factor=10, subset=subset, blocked=blocked,
                                    unknown_videos="fp", normalize_ap=True)
