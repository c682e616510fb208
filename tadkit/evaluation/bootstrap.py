"""Confidence intervals and paired tests for detection mAP by resampling videos (bootstrap).

A bootstrap replicate draws the ground-truth videos of the subset with replacement (as many as
there are) and scores the predictions on that multiset of videos with the same protocol.
Matching never crosses videos, so whether a prediction is a true positive does not change when its
video is drawn k times: each copy matches exactly as the original did. A replicate is therefore
the original ranked list of every class with each prediction (and each GT instance) weighted by
its video's count k. tadkit computes the matching once, then each replicate only re-weights:

* ``npos`` per class = GT instances weighted by their video's count;
* cumulative TP and prediction counts are weighted cumulative sums along the ranked list;
* ``activitynet`` (interpolated AP): the k copies of a TP are adjacent in the ranking (equal
  scores) and precision rises inside such a block, so the interpolated precision of every copy is
  the one after the block; AP = sum over TP entries of (k / npos) x that precision (the official
  recall step arithmetic is kept, so a replicate with every count 1 gives the plain AP bit for bit);
* ``thumos14`` (plain AP): the copies add ``sum_{j=1..k} (tp_before + j) / (n_before + j)``.

Predictions on videos without GT (false positives under ``unknown_videos="fp"``) are not part of
the video population: they keep weight 1 in every replicate. Classes left without GT in a
replicate do not enter its mAP, as in a plain evaluation. Score ties keep tadkit's documented
order; copies of one prediction are adjacent.

Intervals: the 2.5 % and 97.5 % percentiles (``confidence=0.95``) of the replicates, shifted by
the bootstrap bias estimate (mean of the replicates - point estimate) and clamped to [0, 1] (the
shift alone can put a bound below 0 % at a tIoU where almost nothing matches); the raw percentiles
and the bias are reported too. The shift matters for ``activitynet``: a drawn-twice video puts its TPs in
adjacent runs, and the interpolated AP (a running max of precision) rewards such runs, so its
replicates sit above the point estimate (about +1.5 points of mAP@0.5 on ActivityNet v1.3
validation); THUMOS14's plain AP shows almost no such bias. The paired test of B against A uses
the same replicates for both files; the two-sided p-value is
``min(1, 2 * min(P(d <= 0), P(d >= 0)))`` over the replicate differences d = mAP_B - mAP_A.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Iterable, Sequence

import numpy as np

from tadkit.data.records import AnnotationSet, DetectionSet
from tadkit.errors import TadkitError
from tadkit.evaluation.detection import (
    EvalResult,
    activitynet_order,
    check_protocol,
    default_tiou,
    parse_tiou,
    result_from_ap,
    score_problem,
    thumos_order,
)
from tadkit.evaluation.matching import segmented_cumsum, segmented_suffix_max
from tadkit.evaluation.problem import EvalProblem, prepare

CHUNK_ELEMENTS = 4_000_000  # replicate x prediction entries processed at once (bounds memory)


@dataclass
class RankedTables:
    """What every replicate re-weights: per threshold, the ranked list of each class."""

    protocol: str
    classes: list[str]
    num_gt_videos: int
    num_videos: int
    pred_video: np.ndarray  # (P,) video code, ranked order (class, then rank)
    pred_class: np.ndarray  # (P,) sorted
    keep: np.ndarray  # (T, P) bool: in the ranking (not removed by an Ambiguous overlap)
    tp: np.ndarray  # (T, P) bool
    gt_per_video_class: np.ndarray  # (num_gt_videos, C) GT instances

    @classmethod
    def build(cls, p: EvalProblem, protocol: str, thresholds: Sequence[float]) -> "RankedTables":
        scored = score_problem(p, protocol, thresholds)
        order = activitynet_order(p) if protocol == "activitynet" else thumos_order(p)[1]
        counts = np.zeros((p.num_gt_videos, len(p.classes)), dtype=np.float64)
        np.add.at(counts, (p.gt_video, p.gt_class), 1.0)
        return cls(protocol=protocol, classes=list(p.classes), num_gt_videos=p.num_gt_videos,
                   num_videos=p.num_videos, pred_video=p.pred_video[order], pred_class=p.pred_class[order],
                   keep=~scored.removed[:, order], tp=scored.tp[:, order], gt_per_video_class=counts)

    def ap(self, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``counts`` (B, num_gt_videos) draws per video -> (AP (B, T, C), npos (B, C))."""
        counts = np.asarray(counts, dtype=np.float64)
        n_b, n_c = counts.shape[0], len(self.classes)
        n_t, n_p = self.tp.shape
        npos = counts @ self.gt_per_video_class  # exact: integer-valued sums
        ap = np.zeros((n_b, n_t, n_c))
        if n_p == 0:
            return ap, npos
        weight = np.ones((n_b, self.num_videos))
        weight[:, : self.num_gt_videos] = counts
        wp = weight[:, self.pred_video]  # (B, P)
        same_keep = bool(np.all(self.keep == self.keep[:1]))
        cum_n = segmented_cumsum(wp * self.keep[0], self.pred_class) if same_keep else None
        with np.errstate(divide="ignore", invalid="ignore"):
            for t in range(n_t):
                if not same_keep:
                    cum_n = segmented_cumsum(wp * self.keep[t], self.pred_class)
                idx = np.flatnonzero(self.tp[t] & self.keep[t])
                if len(idx) == 0:
                    continue
                cls_ = self.pred_class[idx]
                w = wp[:, idx]  # (B, K) copies of each TP entry
                cum_tp = segmented_cumsum(w, cls_)
                cn = cum_n[:, idx]
                present = w > 0
                c_np = npos[:, cls_]
                if self.protocol == "activitynet":
                    prec = np.where(present, cum_tp / cn, 0.0)
                    best = segmented_suffix_max(prec, cls_)
                    step = np.where(present, cum_tp / c_np - (cum_tp - w) / c_np, 0.0)
                    contrib = step * best
                else:
                    before_tp, before_n = cum_tp - w, cn - w
                    contrib = np.zeros_like(w)
                    for j in range(1, int(w.max()) + 1):
                        contrib += np.where(w >= j, (before_tp + j) / (before_n + j), 0.0)
                flat = (np.arange(n_b)[:, None] * n_c + cls_[None, :]).ravel()
                total = np.bincount(flat, weights=contrib.ravel(), minlength=n_b * n_c).reshape(n_b, n_c)
                ap[:, t, :] = total if self.protocol == "activitynet" else np.where(npos > 0, total / npos, 0.0)
        return ap, npos

    def map(self, counts: np.ndarray) -> np.ndarray:
        """(B, T) mAP: mean AP over the classes with GT in each replicate."""
        ap, npos = self.ap(counts)
        present = npos > 0  # (B, C)
        ap = np.where(present[:, None, :], ap, 0.0)
        n_present = present.sum(axis=1)[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n_present > 0, ap.sum(axis=2) / np.maximum(n_present, 1), np.nan)

    def replicate_maps(self, draws: np.ndarray) -> np.ndarray:
        """(N, T) mAP of the replicates, in chunks that keep memory bounded."""
        n = draws.shape[0]
        chunk = max(1, CHUNK_ELEMENTS // max(1, len(self.pred_video)))
        return np.concatenate([self.map(draws[i: i + chunk]) for i in range(0, n, chunk)] or
                              [np.zeros((0, self.tp.shape[0]))])


def draw_counts(num_videos: int, n_resamples: int, seed: int) -> np.ndarray:
    """(N, V) int32: how often each video is drawn in each replicate (V draws with replacement)."""
    rng = np.random.default_rng(seed)
    out = np.empty((n_resamples, num_videos), dtype=np.int32)
    for i in range(n_resamples):  # one row at a time: the stream does not depend on any chunking
        out[i] = np.bincount(rng.integers(0, num_videos, num_videos), minlength=num_videos)
    return out


def _interval(values: np.ndarray, confidence: float) -> list[list[float]]:
    """Percentile interval along axis 0 for each column: [[low, high], ...]."""
    alpha = (1.0 - confidence) / 2.0
    low = np.nanquantile(values, alpha, axis=0)
    high = np.nanquantile(values, 1.0 - alpha, axis=0)
    return [[float(a), float(b)] for a, b in zip(np.atleast_1d(low), np.atleast_1d(high))]


def _bias_corrected(raw: list[float], bias: float) -> list[float]:
    """The percentile interval shifted by -bias, clamped to mAP's range [0, 1]: the shift can push
    a bound below 0 (or above 1) where every replicate sits at the edge, and an mAP cannot."""
    return [min(max(bound - bias, 0.0), 1.0) for bound in raw]


@dataclass
class BootstrapResult:
    """95 % (``confidence``) percentile intervals of every mAP. Fractions, like EvalResult."""

    n_resamples: int
    seed: int
    confidence: float
    unit: str  # "video"
    mAP_ci: list[list[float]]  # per tIoU: [low, high], percentile interval shifted by -bias
    average_mAP_ci: list[float]
    mAP_std: list[float]
    average_mAP_std: float
    mAP_bias: list[float] = field(default_factory=list)  # mean of the replicates - point estimate
    average_mAP_bias: float = 0.0
    mAP_ci_percentile: list[list[float]] = field(default_factory=list)  # raw percentile interval
    average_mAP_ci_percentile: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def format_table(self, tiou: Sequence[float]) -> str:
        pct = int(round(100 * self.confidence))
        lo = " ".join(f"{100 * c[0]:>6.2f}" for c in self.mAP_ci) + f"  {100 * self.average_mAP_ci[0]:>6.2f}"
        hi = " ".join(f"{100 * c[1]:>6.2f}" for c in self.mAP_ci) + f"  {100 * self.average_mAP_ci[1]:>6.2f}"
        return (f"{pct}% CI, {self.n_resamples} bootstrap resamples of the videos (seed {self.seed}):\n"
                f"low%  {lo}\nhigh% {hi}")


@dataclass
class CompareResult:
    """Paired bootstrap of B - A (same replicates for both files)."""

    n_resamples: int
    seed: int
    confidence: float
    tiou: list[float]
    mAP_a: list[float]
    mAP_b: list[float]
    difference: list[float]  # B - A per tIoU (point estimate)
    difference_ci: list[list[float]]
    p_value: list[float]  # two-sided, per tIoU
    p_b_not_better: list[float]  # one-sided: share of replicates with B - A <= 0
    average_difference: float
    average_difference_ci: list[float]
    average_p_value: float
    average_p_b_not_better: float
    pred_a: str = ""
    pred_b: str = ""
    counts_a: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def format_p(self, p: float) -> str:
        """A p-value as the resampling can resolve it: 0 of N replicates on one side reads ``<1/N``,
        never ``0.0000`` (the test cannot tell p below 1/N)."""
        return f"<1/{self.n_resamples}" if p < 1.0 / self.n_resamples else f"{p:.4f}"

    def format_table(self) -> str:
        pct = int(round(100 * self.confidence))
        width = max(7, len(f"<1/{self.n_resamples}"))
        head = "tIoU        " + " ".join(f"{t:>{width}.2f}" for t in self.tiou) + f"  {'avg':>{width}}"
        numbers = [
            ("A mAP%", [100 * v for v in self.mAP_a], 100 * float(np.mean(self.mAP_a)), "{:.2f}"),
            ("B mAP%", [100 * v for v in self.mAP_b], 100 * float(np.mean(self.mAP_b)), "{:.2f}"),
            ("B-A", [100 * v for v in self.difference], 100 * self.average_difference, "{:+.2f}"),
            (f"{pct}% low", [100 * c[0] for c in self.difference_ci], 100 * self.average_difference_ci[0], "{:+.2f}"),
            (f"{pct}% high", [100 * c[1] for c in self.difference_ci], 100 * self.average_difference_ci[1], "{:+.2f}"),
        ]
        rows = [(name, [fmt.format(v) for v in vals], fmt.format(avg)) for name, vals, avg, fmt in numbers]
        rows.append(("p (2-sided)", [self.format_p(v) for v in self.p_value], self.format_p(self.average_p_value)))
        lines = [f"paired bootstrap, {self.n_resamples} resamples of the videos (seed {self.seed}); "
                 f"A = {self.pred_a}, B = {self.pred_b}", head]
        for name, cells, avg in rows:
            lines.append(f"{name:<11} " + " ".join(f"{c:>{width}}" for c in cells) + f"  {avg:>{width}}")
        return "\n".join(lines)


def _check_args(n_resamples: int, confidence: float) -> None:
    if not isinstance(n_resamples, (int, np.integer)) or n_resamples < 1:
        raise TadkitError(f"--bootstrap needs a number of resamples >= 1, got {n_resamples!r}", field="bootstrap")
    if not 0.0 < confidence < 1.0:
        raise TadkitError(f"confidence must lie in (0, 1), got {confidence!r}", field="confidence")


def bootstrap_replicates(
    gt: AnnotationSet,
    pred: DetectionSet,
    protocol: str,
    n_resamples: int = 1000,
    seed: int = 0,
    tiou_thresholds: str | Sequence[float] | None = None,
    subset: str | Iterable[str] | None = None,
    blocked: str | os.PathLike | Iterable[str] | None = None,
    strict: bool = False,
    unknown_videos: str = "fp",
) -> tuple[EvalResult, np.ndarray]:
    """The plain result and the (n_resamples, T) mAP of the replicates (video draws fixed by ``seed``:
    two prediction sets on the same GT get the same draws)."""
    check_protocol(protocol)
    _check_args(n_resamples, 0.5)
    thresholds = default_tiou(protocol) if tiou_thresholds is None else parse_tiou(tiou_thresholds)
    problem = prepare(gt, pred, subset=subset, blocked=blocked, strict=strict, unknown_videos=unknown_videos)
    tables = RankedTables.build(problem, protocol, thresholds)
    ones = np.ones((1, problem.num_gt_videos))
    result = result_from_ap(problem, protocol, thresholds, tables.ap(ones)[0][0])
    return result, tables.replicate_maps(draw_counts(problem.num_gt_videos, n_resamples, seed))


def bootstrap(
    gt: AnnotationSet,
    pred: DetectionSet,
    protocol: str,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    tiou_thresholds: str | Sequence[float] | None = None,
    subset: str | Iterable[str] | None = None,
    blocked: str | os.PathLike | Iterable[str] | None = None,
    strict: bool = False,
    unknown_videos: str = "fp",
) -> tuple[EvalResult, BootstrapResult]:
    """The plain :func:`~tadkit.evaluation.evaluate` result and percentile intervals of its mAPs."""
    _check_args(n_resamples, confidence)
    result, maps = bootstrap_replicates(gt, pred, protocol, n_resamples, seed, tiou_thresholds, subset, blocked,
                                        strict, unknown_videos)
    avg = maps.mean(axis=1)
    bias = np.nanmean(maps, axis=0) - np.asarray(result.mAP)
    avg_bias = float(np.nanmean(avg) - result.average_mAP)
    raw, raw_avg = _interval(maps, confidence), _interval(avg[:, None], confidence)[0]
    return result, BootstrapResult(
        n_resamples=int(n_resamples), seed=int(seed), confidence=float(confidence), unit="video",
        mAP_ci=[_bias_corrected(bounds, b) for bounds, b in zip(raw, bias.tolist())],
        average_mAP_ci=_bias_corrected(raw_avg, avg_bias),
        mAP_std=[float(v) for v in np.nanstd(maps, axis=0)], average_mAP_std=float(np.nanstd(avg)),
        mAP_bias=[float(v) for v in bias], average_mAP_bias=avg_bias,
        mAP_ci_percentile=raw, average_mAP_ci_percentile=raw_avg,
    )


def _p_values(diff: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    le = np.mean(diff <= 0, axis=0)
    ge = np.mean(diff >= 0, axis=0)
    return np.minimum(1.0, 2.0 * np.minimum(le, ge)), le


def compare(
    gt: AnnotationSet,
    pred_a: DetectionSet,
    pred_b: DetectionSet,
    protocol: str,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    tiou_thresholds: str | Sequence[float] | None = None,
    subset: str | Iterable[str] | None = None,
    blocked: str | os.PathLike | Iterable[str] | None = None,
    strict: bool = False,
    unknown_videos: str = "fp",
    names: tuple[str, str] = ("A", "B"),
) -> tuple[EvalResult, EvalResult, CompareResult]:
    """Paired bootstrap of B against A: both scored on the same video replicates."""
    check_protocol(protocol)
    _check_args(n_resamples, confidence)
    thresholds = default_tiou(protocol) if tiou_thresholds is None else parse_tiou(tiou_thresholds)
    kw = dict(subset=subset, blocked=blocked, strict=strict, unknown_videos=unknown_videos)
    pa, pb = prepare(gt, pred_a, **kw), prepare(gt, pred_b, **kw)
    assert pa.video_names[: pa.num_gt_videos] == pb.video_names[: pb.num_gt_videos]  # same GT list
    ta, tb = RankedTables.build(pa, protocol, thresholds), RankedTables.build(pb, protocol, thresholds)
    ones = np.ones((1, pa.num_gt_videos))
    ra = result_from_ap(pa, protocol, thresholds, ta.ap(ones)[0][0])
    rb = result_from_ap(pb, protocol, thresholds, tb.ap(ones)[0][0])
    draws = draw_counts(pa.num_gt_videos, n_resamples, seed)
    diff = tb.replicate_maps(draws) - ta.replicate_maps(draws)
    avg = diff.mean(axis=1)
    p, p_le = _p_values(diff)
    p_avg, p_avg_le = _p_values(avg[:, None])
    point = np.asarray(rb.mAP) - np.asarray(ra.mAP)
    return ra, rb, CompareResult(
        n_resamples=int(n_resamples), seed=int(seed), confidence=float(confidence), tiou=list(ra.tiou),
        mAP_a=list(ra.mAP), mAP_b=list(rb.mAP), difference=[float(v) for v in point],
        difference_ci=_interval(diff, confidence), p_value=[float(v) for v in p],
        p_b_not_better=[float(v) for v in p_le], average_difference=float(rb.average_mAP - ra.average_mAP),
        average_difference_ci=_interval(avg[:, None], confidence)[0], average_p_value=float(p_avg[0]),
        average_p_b_not_better=float(p_avg_le[0]), pred_a=names[0], pred_b=names[1], counts_a=dict(ra.counts),
    )
