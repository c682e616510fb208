"""Detection mAP under the two official protocols, vectorized and exact.

``activitynet``  Evaluation/eval_detection.py of activitynet/ActivityNet.
``thumos14``     TH14evalDet.m of the THUMOS14 evalkit (2015-09-30 version, non-interpolated AP).

Tie-breaks (the official code leaves some of them to an unstable sort; ours are fixed):

* activitynet, score ties: higher score first, then the earlier prediction (DetectionSet row).
* activitynet, tIoU ties between GT instances of one prediction: the GT listed *later* wins. This
  is what the official ``tiou_arr.argsort()[::-1]`` gives for up to 16 GT per video and class
  (NumPy sorts such short arrays stably); beyond that the official order is platform dependent.
* thumos14: MATLAB's stable ``sort`` and first-index ``max``, exactly: per video, detections by
  score then file row; a GT takes the highest-tIoU free detection, the earliest on ties; after
  pooling, score ties keep video-name order, then file row.

Degenerate predictions (end <= start; a model's regression can emit them) are read, counted
(``counts.degenerate_preds`` / ``reversed_preds``) and scored as the official codes score them;
``strict=True`` makes a reversed one an error. Reversed *ground truth* is always an error.

* activitynet: ``segment_iou`` gives a reversed prediction an intersection clipped to 0, so its
  tIoU with every GT is 0 (or -0.0): a false positive that can never match at a threshold > 0.
  One official accident is not reproduced: when the reversed length exactly cancels a GT's
  length the union is 0, the official 0/0 = NaN passes the threshold test and the prediction
  matches. tadkit gives tIoU 0 there (as for zero-length pairs, see ``tiou_activitynet``).
* thumos14: ``intervalsingleoverlapvalseconds`` first rewrites every interval as
  ``[min, max]``, so a reversed detection ``[s, e]`` with e < s is scored as ``[e, s]`` (it can
  match, and it is removed by an Ambiguous segment it overlaps). tadkit does the same. A
  zero-length detection never overlaps anything (intersection > 0 is required): a false positive.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from typing import Iterable, Sequence

import numpy as np

from tadkit.data.records import AnnotationSet, DetectionSet
from tadkit.errors import TadkitError
from tadkit.evaluation.matching import (
    greedy_first_free,
    pairs_by_key,
    segmented_cumsum,
    segmented_suffix_max,
    tiou_activitynet,
    tiou_thumos,
)
from tadkit.evaluation.problem import EvalProblem, prepare

from tadkit.data.choices import PROTOCOLS  # noqa: E402
DEFAULT_TIOU = {"activitynet": "0.5:0.95:0.05", "thumos14": "0.1:0.7:0.1"}


# ----------------------------------------------------------------------------------------------
# thresholds
# ----------------------------------------------------------------------------------------------
def parse_tiou(spec: str | float | Sequence[float]) -> list[float]:
    """``"0.5:0.95:0.05"`` (start:end:step, end inclusive) or ``"0.3,0.5,0.7"`` or floats.

    Range values are rounded to 10 decimals so 0.1:0.7:0.1 gives 0.3, not 0.30000000000000004.
    """
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        values = [float(spec)]
    elif isinstance(spec, str):
        text = spec.strip()
        try:
            if ":" in text:
                parts = [float(p) for p in text.split(":")]
                if len(parts) != 3:
                    raise ValueError
                start, end, step = parts
                if not step > 0 or end < start:
                    raise TadkitError(f"bad tIoU range {spec!r}: need start <= end and step > 0", field="tiou")
                count = int(math.floor((end - start) / step + 1e-9)) + 1
                values = [round(start + k * step, 10) for k in range(count)]
            else:
                values = [float(p) for p in text.split(",") if p.strip()]
        except ValueError:
            raise TadkitError(
                f"bad tIoU thresholds {spec!r}: use start:end:step (e.g. 0.5:0.95:0.05) or a comma list",
                field="tiou",
            ) from None
    else:
        try:
            values = [float(v) for v in spec]
        except (TypeError, ValueError):
            raise TadkitError(f"bad tIoU thresholds {spec!r}", field="tiou") from None
    if not values:
        raise TadkitError("no tIoU threshold given", field="tiou")
    if not all(0.0 <= v <= 1.0 for v in values):  # also rejects NaN
        raise TadkitError(f"tIoU thresholds must lie in [0, 1], got {values}", field="tiou")
    return values


def default_tiou(protocol: str) -> list[float]:
    return parse_tiou(DEFAULT_TIOU[check_protocol(protocol)])


#: The tIoU range every tadkit summary line averages over, one per dataset kind: what the papers of
#: that kind report as "average mAP" (THUMOS14: 0.1:0.7; ActivityNet: 0.5:0.95). A config may score
#: more thresholds (ECM's official THUMOS14 run adds 0.8 and 0.9); its table shows them, its summary
#: does not, so two methods' summaries always average the same thresholds.
SUMMARY_TIOU = {"thumos": "0.1:0.7:0.1", "activitynet": "0.5:0.95:0.05"}


def dataset_kind(thresholds: Sequence[float]) -> str:
    """``activitynet`` when the thresholds start at 0.5 or above (ActivityNet's 0.5:0.95 family),
    else ``thumos`` (THUMOS-style lists start at 0.1-0.3, whichever evaluator scores them)."""
    return "activitynet" if min(parse_tiou(thresholds)) >= 0.5 - 1e-9 else "thumos"


def summary_tiou(thresholds: Sequence[float]) -> list[float]:
    """The summary range of the dataset kind ``thresholds`` belong to (:data:`SUMMARY_TIOU`)."""
    return parse_tiou(SUMMARY_TIOU[dataset_kind(thresholds)])


def tiou_range_text(thresholds: Sequence[float]) -> str:
    """``0.1:0.7`` for an evenly spaced list (its step is implied by the printed columns), else a comma list."""
    values = parse_tiou(thresholds)
    steps = np.diff(values)
    if len(values) > 2 and np.allclose(steps, steps[0]) and steps[0] > 0:
        return f"{values[0]:g}:{values[-1]:g}"
    return ",".join(f"{v:g}" for v in values)


def check_protocol(protocol: str) -> str:
    if protocol not in PROTOCOLS:
        raise TadkitError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}", field="protocol")
    return protocol


# ----------------------------------------------------------------------------------------------
# result
# ----------------------------------------------------------------------------------------------
@dataclass
class EvalResult:
    """Scores of one evaluation. mAP/AP are fractions in [0, 1]."""

    protocol: str
    subset: str | None
    tiou: list[float]
    mAP: list[float]
    average_mAP: float
    per_class: dict[str, list[float]]
    counts: dict = field(default_factory=dict)
    video_list: str = ""
    warnings: list[str] = field(default_factory=list)  # e.g. "times probably in frames" (also on stderr)

    def to_dict(self) -> dict:
        return asdict(self)

    def format_table(self) -> str:
        """Human-readable report: mAP per tIoU in percent, the average, and the counts."""
        lines = [f"protocol {self.protocol}  subset {self.subset or 'all'}  videos: {self.video_list}"]
        head = "tIoU  " + " ".join(f"{t:>6.2f}" for t in self.tiou) + "     avg"
        body = "mAP%  " + " ".join(f"{100 * m:>6.2f}" for m in self.mAP) + f"  {100 * self.average_mAP:>6.2f}"
        lines += [head, body]
        c = self.counts
        lines.append(
            f"{c.get('num_videos', 0)} videos, {c.get('num_gt', 0)} GT instances, {c.get('num_classes', 0)} classes, "
            f"{c.get('num_preds', 0)} predictions ({c.get('num_preds_evaluated', 0)} scored)"
        )
        notes = []
        for key, text in (
            ("unknown_label_preds", "with labels not in the GT (ignored)"),
            ("unknown_video_preds", "on videos not in the GT ("
             + ("false positives" if c.get("unknown_video_policy") == "fp" else "ignored") + ")"),
            ("preds_of_classes_without_gt", "of classes without GT in this subset (ignored)"),
            ("blocked_preds_dropped", "on blocked videos (dropped)"),
        ):
            if c.get(key):
                notes.append(f"{c[key]} predictions {text}")
        if c.get("degenerate_preds"):
            how = ("false positives, as in eval_detection.py" if self.protocol == "activitynet" else
                   "reversed ones scored as [end, start], as TH14evalDet.m does")
            notes.append(f"{c['degenerate_preds']} predictions with end <= start, {c.get('reversed_preds', 0)} "
                         f"reversed ({how}; --strict refuses reversed ones)")
        if c.get("negative_time_preds"):
            notes.append(f"{c['negative_time_preds']} predictions with a negative start or end (before the video "
                         "begins; scored as given)")
        if c.get("blocked_videos_dropped"):
            notes.append(f"{c['blocked_videos_dropped']} blocked GT videos dropped")
        if c.get("num_ambiguous"):
            notes.append(f"{c['num_ambiguous']} Ambiguous segments" + (
                " (used)" if self.protocol == "thumos14" else " (not used by this protocol)"))
        lines += [f"note: {n}" for n in notes]
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# protocol cores: every function returns flags in a documented prediction order
# ----------------------------------------------------------------------------------------------
def activitynet_order(p: EvalProblem) -> np.ndarray:
    """Prediction order the AP is computed in: class, then score descending, then input row."""
    return np.lexsort((p.pred_index, -p.pred_score, p.pred_class))


def activitynet_tp(p: EvalProblem, thresholds: np.ndarray, order: np.ndarray) -> np.ndarray:
    """(T, P) bool: prediction ``order[k]`` is a TP at threshold t (official greedy matching)."""
    return activitynet_matches(p, thresholds, order)[0] >= 0


def activitynet_matches(p: EvalProblem, thresholds: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T, P) GT index each prediction ``order[k]`` matched (-1: none) and (T, G) the ``order``
    position of the prediction each GT was matched by (-1: missed), official greedy matching."""
    n_t, n_p, n_g = len(thresholds), len(order), len(p.gt_video)
    if n_p == 0 or n_g == 0:
        return np.full((n_t, n_p), -1, dtype=np.int64), np.full((n_t, n_g), -1, dtype=np.int64)
    pv, pc = p.pred_video[order], p.pred_class[order]
    nv = np.int64(p.num_videos)
    p_key = pc * nv + pv
    g_key = p.gt_class * nv + p.gt_video
    pi, gi = pairs_by_key(p_key, g_key)
    tiou = tiou_activitynet(
        p.pred_start[order][pi], p.pred_end[order][pi], p.gt_start[gi], p.gt_end[gi], same_point_matches=True
    )
    live = tiou >= thresholds.min()
    pi, gi, tiou = pi[live], gi[live], tiou[live]
    group = p_key[pi]
    # candidates per prediction by decreasing tIoU, later GT first on ties (see module doc)
    s = np.lexsort((-gi, -tiou, pi, group))
    pi, gi, tiou, group = pi[s], gi[s], tiou[s], group[s]
    t_idx, k = np.nonzero(tiou[None, :] >= thresholds[:, None])
    n_groups = np.int64(len(p.classes)) * nv
    agent_item, item_agent = greedy_first_free(
        t_idx * n_groups + group[k], t_idx * n_p + pi[k], t_idx * n_g + gi[k], n_t * n_p, n_t * n_g
    )
    return _local(agent_item, n_t, n_g), _local(item_agent, n_t, n_p)


def _local(flat: np.ndarray, n_t: int, width: int) -> np.ndarray:
    """Per-threshold matches of :func:`greedy_first_free` (ids ``t * width + i``) -> (T, N) of ``i`` or -1."""
    out = flat.reshape(n_t, -1)
    return np.where(out >= 0, out % max(width, 1), -1)


def thumos_order(p: EvalProblem) -> tuple[np.ndarray, np.ndarray]:
    """(per-video order, pooled order) of predictions, as TH14evalDet.m visits them.

    Per video and class: score descending, file row on ties (MATLAB's stable sort). Pooled per
    class: score descending, ties in video-name order, then the per-video order.
    """
    rank = p.video_name_rank()[p.pred_video] if len(p.pred_video) else np.zeros(0, np.int64)
    per_video = np.lexsort((p.pred_index, -p.pred_score, p.pred_video, p.pred_class))
    pooled = np.lexsort((p.pred_index, rank, -p.pred_score, p.pred_class))
    return per_video, pooled


def thumos_tp(p: EvalProblem, thresholds: np.ndarray, per_video: np.ndarray) -> np.ndarray:
    """(T, P) bool over ``per_video`` order: GT-driven greedy matching, TP iff tIoU > threshold."""
    return thumos_matches(p, thresholds, per_video)[0] >= 0


def thumos_matches(p: EvalProblem, thresholds: np.ndarray, per_video: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T, P) GT index each prediction ``per_video[k]`` matched (-1: none) and (T, G) the
    ``per_video`` position of each GT's detection (-1: missed); TH14evalDet.m's matching."""
    n_t, n_p, n_g = len(thresholds), len(per_video), len(p.gt_video)
    if n_p == 0 or n_g == 0:
        return np.full((n_t, n_p), -1, dtype=np.int64), np.full((n_t, n_g), -1, dtype=np.int64)
    nv = np.int64(p.num_videos)
    d_key = p.pred_class[per_video] * nv + p.pred_video[per_video]
    g_key = p.gt_class * nv + p.gt_video
    gi, di = pairs_by_key(g_key, d_key)
    d_start, d_end = thumos_intervals(p)
    tiou = tiou_thumos(p.gt_start[gi], p.gt_end[gi], d_start[per_video][di], d_end[per_video][di])
    live = tiou > thresholds.min()
    gi, di, tiou = gi[live], di[live], tiou[live]
    group = g_key[gi]
    # GT in file order; each takes the max-tIoU free detection, the first in score order on ties
    s = np.lexsort((di, -tiou, gi, group))
    gi, di, tiou, group = gi[s], di[s], tiou[s], group[s]
    t_idx, k = np.nonzero(tiou[None, :] > thresholds[:, None])
    n_groups = np.int64(len(p.classes)) * nv
    agent_item, item_agent = greedy_first_free(
        t_idx * n_groups + group[k], t_idx * n_g + gi[k], t_idx * n_p + di[k], n_t * n_g, n_t * n_p
    )
    return _local(item_agent, n_t, n_g), _local(agent_item, n_t, n_p)


def thumos_intervals(p: EvalProblem) -> tuple[np.ndarray, np.ndarray]:
    """Prediction (start, end) as the evalkit sees them: ``[min, max]`` (a reversed one is swapped)."""
    return np.minimum(p.pred_start, p.pred_end), np.maximum(p.pred_start, p.pred_end)


def ambiguous_overlap(p: EvalProblem) -> np.ndarray:
    """(P,) bool in problem order: the prediction intersects (> 0 s) an Ambiguous segment
    (TH14evalDet.m semantics: a reversed prediction is taken as ``[end, start]``)."""
    hit = np.zeros(len(p.pred_video), dtype=bool)
    if len(p.amb_video) and len(p.pred_video):
        di, ai = pairs_by_key(p.pred_video, p.amb_video)
        d_start, d_end = thumos_intervals(p)
        inter = np.minimum(d_end[di], p.amb_end[ai]) - np.maximum(d_start[di], p.amb_start[ai])
        hit[di[inter > 0]] = True
    return hit


def interpolated_ap(tp: np.ndarray, keep: np.ndarray, pred_class: np.ndarray, npos: np.ndarray) -> np.ndarray:
    """(T, C) VOC all-point interpolated AP (official ``interpolated_prec_rec``).

    ``tp``/``keep`` are (T, P) over predictions sorted by class then rank; ``pred_class`` (P,) is
    sorted. Removed predictions (keep False) take no part, as if absent from the list.
    """
    n_t, n_c = tp.shape[0], len(npos)
    if tp.shape[1] == 0:
        return np.zeros((n_t, n_c))
    tp = tp & keep
    tp_cum = segmented_cumsum(tp.astype(np.int64), pred_class)
    n_cum = segmented_cumsum(keep.astype(np.int64), pred_class)
    # Between two TPs precision only falls, so the right-to-left running max of precision, read at
    # a TP, is the max over the TPs from there to the end of the class: work on TP entries only.
    t_idx, k = np.nonzero(tp)
    c = pred_class[k]
    cnt = tp_cum[t_idx, k]
    prec = cnt / n_cum[t_idx, k]
    best = segmented_suffix_max(prec, t_idx * n_c + c)  # nonzero() lists (t, class) runs in order
    step = cnt / npos[c] - (cnt - 1) / npos[c]  # recall jump, computed as the official code does
    return np.bincount(t_idx * n_c + c, weights=step * best, minlength=n_t * n_c).reshape(n_t, n_c)


def thumos_ap(tp: np.ndarray, keep: np.ndarray, pred_class: np.ndarray, npos: np.ndarray) -> np.ndarray:
    """(T, C) non-interpolated AP of TH14evalDet.m: sum of precision at each TP / npos."""
    n_t, n_c = tp.shape[0], len(npos)
    if tp.shape[1] == 0:
        return np.zeros((n_t, n_c))
    tp = tp & keep
    tp_cum = segmented_cumsum(tp.astype(np.int64), pred_class)
    n_cum = segmented_cumsum(keep.astype(np.int64), pred_class)
    t_idx, k = np.nonzero(tp)
    prec = tp_cum[t_idx, k] / n_cum[t_idx, k]
    total = np.bincount(t_idx * n_c + pred_class[k], weights=prec, minlength=n_t * n_c).reshape(n_t, n_c)
    return total / npos[None, :]


@dataclass
class Scored:
    """Per-threshold, per-prediction outcome of one protocol (problem order, i.e. unsorted)."""

    ap: np.ndarray  # (T, C)
    tp: np.ndarray  # (T, P) matched
    removed: np.ndarray  # (T, P) removed from the ranking (Ambiguous overlap or caller's ignore)


def score_problem(
    p: EvalProblem, protocol: str, thresholds: Sequence[float], ignore_unmatched: np.ndarray | None = None
) -> Scored:
    """Run one protocol on a prepared problem.

    ``ignore_unmatched``: (P,) or (T, P) bool; such predictions, when not matched, leave the
    ranking instead of counting as false positives (used by the analysis tools).
    """
    check_protocol(protocol)
    thr = np.asarray(thresholds, dtype=np.float64)
    n_t, n_p = len(thr), len(p.pred_video)
    ignore = np.zeros((1, n_p), dtype=bool) if ignore_unmatched is None else np.asarray(ignore_unmatched, bool)
    ignore = np.broadcast_to(ignore[None, :] if ignore.ndim == 1 else ignore, (n_t, n_p))
    tp = np.zeros((n_t, n_p), dtype=bool)
    if protocol == "activitynet":
        order = activitynet_order(p)
        tp[:, order] = activitynet_tp(p, thr, order)
        keep = tp | ~ignore
        ap = interpolated_ap(tp[:, order], keep[:, order], p.pred_class[order], p.npos)
    else:
        per_video, pooled = thumos_order(p)
        tp[:, per_video] = thumos_tp(p, thr, per_video)
        # unmatched detections touching an Ambiguous segment are removed (neither TP nor FP)
        keep = tp | ~(ambiguous_overlap(p)[None, :] | ignore)
        ap = thumos_ap(tp[:, pooled], keep[:, pooled], p.pred_class[pooled], p.npos)
    return Scored(ap=ap, tp=tp, removed=~keep)


def match_detections(p: EvalProblem, protocol: str, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """The protocol's one-to-one matching at one tIoU threshold, for drawing or listing it:
    ``(pred_gt, gt_pred)`` = the GT row each prediction (problem order) matched, -1 for a false
    positive, and the prediction each GT row was matched by, -1 for a missed GT."""
    check_protocol(protocol)
    thr = np.asarray([threshold], dtype=np.float64)
    n_p, n_g = len(p.pred_video), len(p.gt_video)
    order = activitynet_order(p) if protocol == "activitynet" else thumos_order(p)[0]
    match = activitynet_matches if protocol == "activitynet" else thumos_matches
    by_order, gt_pos = match(p, thr, order)
    pred_gt = np.full(n_p, -1, dtype=np.int64)
    pred_gt[order] = by_order[0] if n_p else pred_gt[order]
    gt_pred = np.where(gt_pos[0] >= 0, order[np.maximum(gt_pos[0], 0)], -1) if n_p and n_g else np.full(n_g, -1)
    return pred_gt, gt_pred


def result_from_ap(p: EvalProblem, protocol: str, thresholds: Sequence[float], ap: np.ndarray) -> EvalResult:
    m_ap = ap.mean(axis=1)
    return EvalResult(
        protocol=protocol,
        subset=p.subset,
        tiou=[float(t) for t in thresholds],
        mAP=[float(v) for v in m_ap],
        average_mAP=float(m_ap.mean()),
        per_class={c: [float(v) for v in ap[:, i]] for i, c in enumerate(p.classes)},
        counts=dict(p.counts),
        video_list=p.video_list,
        warnings=list(p.warnings),
    )


def evaluate(
    gt: AnnotationSet,
    pred: DetectionSet,
    protocol: str,
    tiou_thresholds: str | Sequence[float] | None = None,
    subset: str | Iterable[str] | None = None,
    blocked: str | os.PathLike | Iterable[str] | None = None,
    strict: bool = False,
    unknown_videos: str = "fp",
) -> EvalResult:
    """Score ``pred`` against ``gt`` with the official ``protocol`` (``activitynet`` or ``thumos14``).

    * ``tiou_thresholds``: floats or a spec for :func:`parse_tiou`; default 0.5:0.95:0.05
      (activitynet) or 0.1:0.7:0.1 (thumos14).
    * ``subset``: GT subset name(s) (case-insensitive); None = every video of ``gt``.
    * ``blocked``: ids or a JSON-list file; GT and predictions of those videos are dropped.
    * Predictions with labels absent from the GT are ignored and counted (``strict`` raises).
      Predictions on videos without GT are false positives, as in both official codes
      (``unknown_videos="drop"`` ignores them instead); counted either way, ``strict`` raises.
    * mAP averages the classes with at least one GT instance in the evaluated videos.
    * Degenerate predictions (end <= start) are scored as the official code does (module doc) and
      counted; ``strict`` makes reversed ones an error.
    * ``warnings`` says when many predictions start after their video's end (time unit check).
    """
    check_protocol(protocol)
    thresholds = default_tiou(protocol) if tiou_thresholds is None else parse_tiou(tiou_thresholds)
    problem = prepare(gt, pred, subset=subset, blocked=blocked, strict=strict, unknown_videos=unknown_videos)
    scored = score_problem(problem, protocol, thresholds)
    return result_from_ap(problem, protocol, thresholds, scored.ap)
