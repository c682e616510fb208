"""Class-agnostic proposal metrics: AR@AN and the AUC of the AR-AN curve.

Semantics of Evaluation/eval_proposal.py (activitynet/ActivityNet), including its quirks:

* AN is an *average* number of proposals per video: every GT video keeps its top
  ``int(n_v * ratio)`` proposals, ``ratio = max_avg_nr_proposals * num_videos / num_proposals``,
  where ``num_proposals`` counts every proposal read (also those of videos without GT);
* the curve has 100 points: at point j a video keeps ``int(width * pcn_j)`` of its kept proposals,
  ``pcn_j = j/100 * max_avg_nr_proposals * num_videos / total_kept``;
* a GT instance is recalled at tIoU t when one of those proposals has tIoU >= t; AR averages the
  recall over the tIoU thresholds; AUC = trapezoid area under AR vs AN, reported in percent of the
  largest AN (what the official script prints);
* videos are those with at least one GT instance; a GT video without proposals counts as one
  proposal of tIoU 0, exactly as the official code pads it.

Proposals are ranked per video by score descending, input order on ties (the official
``argsort()[::-1]`` leaves ties in an arbitrary order).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Iterable, Sequence

import numpy as np

from tadkit.data.records import AnnotationSet, DetectionSet, Segment, VideoAnnotation
from tadkit.errors import TadkitError
from tadkit.evaluation.detection import parse_tiou
from tadkit.evaluation.matching import pairs_by_key, segment_starts, tiou_activitynet
from tadkit.evaluation.problem import prepare

DEFAULT_PROPOSAL_TIOU = "0.5:0.95:0.05"
REPORTED_AN = (1, 5, 10, 50, 100)


@dataclass
class ProposalResult:
    """AR-AN curve (100 points) and its summaries; recalls are fractions, ``auc`` is in percent."""

    subset: str | None
    tiou: list[float]
    average_nr_proposals: list[float]
    average_recall: list[float]
    recall: list[list[float]]  # [tIoU][point]
    auc: float
    area: float
    ar_at: dict[int, float]
    counts: dict = field(default_factory=dict)
    video_list: str = ""

    def to_dict(self) -> dict:
        out = asdict(self)
        out["ar_at"] = {str(k): v for k, v in self.ar_at.items()}
        return out

    def format_table(self) -> str:
        lines = [f"proposals  subset {self.subset or 'all'}  videos: {self.video_list}"]
        lines.append("  ".join(f"AR@{an}={100 * ar:.2f}" for an, ar in self.ar_at.items()) + f"  AUC={self.auc:.2f}")
        c = self.counts
        lines.append(f"{c.get('num_videos', 0)} videos, {c.get('num_gt', 0)} GT instances, "
                     f"{c.get('num_preds', 0)} proposals ({c.get('num_kept', 0)} within the AN budget)")
        return "\n".join(lines)


def _class_agnostic(gt: AnnotationSet, pred: DetectionSet) -> tuple[AnnotationSet, DetectionSet]:
    """Copies with every label replaced by one, so the detection preparation can be reused."""
    videos = {
        vid: VideoAnnotation(
            video_id=ann.video_id,
            subset=ann.subset,
            duration=ann.duration,
            segments=[Segment(s.start, s.end, "proposal") for s in ann.segments],
        )
        for vid, ann in gt.videos.items()
    }
    agnostic = AnnotationSet(videos, ["proposal"], source=gt.source, format=gt.format)
    labels = np.full(len(pred), "proposal", dtype=object)
    return agnostic, DetectionSet(pred.video, pred.start, pred.end, labels, pred.score)


def evaluate_proposals(
    gt: AnnotationSet,
    pred: DetectionSet,
    tiou_thresholds: str | Sequence[float] | None = None,
    max_avg_nr_proposals: float | None = 100,
    subset: str | Iterable[str] | None = None,
    blocked: str | os.PathLike | Iterable[str] | None = None,
) -> ProposalResult:
    """AR@AN for AN = 1..``max_avg_nr_proposals`` (100 points) and AUC; labels are ignored.

    ``max_avg_nr_proposals=None`` uses the file's own average, as the official code does.
    """
    thresholds = np.asarray(parse_tiou(DEFAULT_PROPOSAL_TIOU if tiou_thresholds is None else tiou_thresholds))
    gt_a, pred_a = _class_agnostic(gt, pred)
    p = prepare(gt_a, pred_a, subset=subset, blocked=blocked, unknown_videos="fp")
    total = int(p.counts["num_preds"] - p.counts["blocked_preds_dropped"])  # every proposal read
    if total == 0:
        raise TadkitError("no proposals to evaluate", field="pred")
    gt_videos, n_gt_per_video = np.unique(p.gt_video, return_counts=True)  # videos with >= 1 GT
    n_videos = len(gt_videos)
    if max_avg_nr_proposals is None or max_avg_nr_proposals == 0:
        max_avg_nr_proposals = float(total) / n_videos
    if not max_avg_nr_proposals > 0:
        raise TadkitError("max_avg_nr_proposals must be > 0", field="max_avg_nr_proposals")
    ratio = max_avg_nr_proposals * float(n_videos) / total

    # rank proposals inside each video (score desc, input order on ties), keep int(n_v * ratio)
    order = np.lexsort((p.pred_index, -p.pred_score, p.pred_video))
    pv = p.pred_video[order]
    rank = np.arange(len(order)) - segment_starts(pv)
    vids, n_per_video = np.unique(pv, return_counts=True)
    budget = np.zeros(p.num_videos, dtype=np.int64)
    budget[vids] = np.minimum((n_per_video * ratio).astype(np.int64), n_per_video)
    kept = rank < budget[pv]
    total_kept = int(budget[gt_videos].sum())
    if total_kept == 0:
        raise TadkitError("no proposal survives the AN budget (too few proposals per video)", field="pred")

    # width of each GT video's tIoU matrix: kept proposals, or 1 (zero padding) when it had none
    has_props = np.zeros(p.num_videos, dtype=bool)
    has_props[vids] = True
    width = np.where(has_props, budget, 1)[gt_videos]
    pcn = np.arange(1, 101) / 100.0 * (max_avg_nr_proposals * float(n_videos) / total_kept)
    cut = np.minimum((width[:, None] * pcn[None, :]).astype(np.int64), width[:, None])  # (V, 100)

    # first kept proposal (by rank) reaching each threshold, per GT instance
    k_order, k_rank = order[kept], rank[kept]
    gi, ki = pairs_by_key(p.gt_video, p.pred_video[k_order])
    tiou = tiou_activitynet(
        p.pred_start[k_order][ki], p.pred_end[k_order][ki], p.gt_start[gi], p.gt_end[gi]
    )
    r = k_rank[ki]
    s = np.lexsort((r, gi))
    gi, r, tiou = gi[s], r[s], tiou[s]
    n_gt = len(p.gt_video)
    first_hit = np.full((len(thresholds), n_gt), np.iinfo(np.int64).max, dtype=np.int64)
    for t, thr in enumerate(thresholds):  # one pass per threshold, vectorized over all pairs
        hit = tiou >= thr
        g_hit, r_hit = gi[hit], r[hit]
        first = np.r_[True, g_hit[1:] != g_hit[:-1]] if len(g_hit) else np.zeros(0, bool)
        first_hit[t, g_hit[first]] = r_hit[first]
        if thr <= 0:  # the zero padding of proposal-less videos has tIoU 0 >= thr
            pad = ~has_props[p.gt_video]
            first_hit[t, pad] = 0
    video_row = np.searchsorted(gt_videos, p.gt_video)
    recalled = (first_hit[:, :, None] < cut[video_row][None, :, :]).sum(axis=1)  # (T, 100)
    recall = recalled / float(n_gt_per_video.sum())
    avg_recall = recall.mean(axis=0)
    an = pcn * (float(total_kept) / n_videos)
    area = float(np.trapezoid(avg_recall, an))
    ar_at = {a: float(avg_recall[int(np.argmin(np.abs(an - a)))]) for a in REPORTED_AN if a <= an[-1] + 1e-9}
    counts = dict(p.counts)
    counts.update(num_videos=n_videos, num_kept=total_kept, num_gt=n_gt, max_avg_nr_proposals=max_avg_nr_proposals)
    return ProposalResult(
        subset=p.subset,
        tiou=[float(t) for t in thresholds],
        average_nr_proposals=[float(v) for v in an],
        average_recall=[float(v) for v in avg_recall],
        recall=[[float(v) for v in row] for row in recall],
        auc=100.0 * area / float(an[-1]),
        area=area,
        ar_at=ar_at,
        counts=counts,
        video_list=p.video_list,
    )
