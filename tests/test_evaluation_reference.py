"""Loop-based reference evaluators: plain restatements of the official algorithms.

They are deliberately naive (one Python loop per prediction / GT, scalar tIoU, explicit VOC
interpolation) so that they can be read side by side with the official sources:

* ``reference_activitynet``: activitynet/ActivityNet Evaluation/eval_detection.py
  (compute_average_precision_detection + utils.interpolated_prec_rec + utils.segment_iou);
* ``reference_thumos14``: THUMOS14 evalkit TH14evalDet.m / TH14eventdetpr
  (intervaloverlapvalseconds, GT-driven greedy, Ambiguous removal, non-interpolated prap);
* ``reference_proposals``: Evaluation/eval_proposal.py (average_recall_vs_avg_nr_proposals).

Where the official code leaves ties to an unstable sort, these use the tie-breaks tadkit documents
(score ties: input order; equal tIoU for ActivityNet: the later GT). The vectorized evaluator is
compared against them in test_evaluation.py, and benchmarks/eval_speed.py times them.
Inputs are plain lists, so nothing of tadkit's own data handling is reused.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pytest

# rows: gt = (video, label, start, end) in file order; pred = (video, label, start, end, score);
# ambiguous = {video: [(start, end), ...]}


def segment_iou_scalar(ps: float, pe: float, gs: float, ge: float, same_point: float = 0.0) -> float:
    """utils.segment_iou for one pair: inter / (len_gt + len_pred - inter).

    The official 0/0 (two zero-length segments) is NaN; detection matching treats the same-instant
    case as a match (``same_point=1.0``, tadkit's documented rule), proposals never match it.
    """
    inter = max(0.0, min(pe, ge) - max(ps, gs))
    union = (ge - gs) + (pe - ps) - inter
    if union > 0:
        return inter / union
    return same_point if (ps == gs and pe == ge) else 0.0


def matlab_overlap(s1: float, e1: float, s2: float, e2: float) -> float:
    """intervalsingleoverlapvalseconds with normtype 0: iw / hull when iw > 0."""
    a0, a1 = min(s1, e1), max(s1, e1)
    b0, b1 = min(s2, e2), max(s2, e2)
    iw = min(a1, b1) - max(a0, b0)
    if iw > 0:
        return iw / (max(a1, b1) - min(a0, b0))
    return 0.0


def interpolated_prec_rec(prec: list[float], rec: list[float]) -> float:
    """VOC 2011 all-point interpolation, loop for loop."""
    mprec = [0.0] + list(prec) + [0.0]
    mrec = [0.0] + list(rec) + [1.0]
    for i in range(len(mprec) - 2, -1, -1):
        mprec[i] = max(mprec[i], mprec[i + 1])
    ap = 0.0
    for i in range(1, len(mrec)):
        if mrec[i] != mrec[i - 1]:
            ap += (mrec[i] - mrec[i - 1]) * mprec[i]
    return ap


def reference_activitynet(gt_rows, pred_rows, thresholds, ignore_unmatched=None):
    """{label: [AP per threshold]} for every label with GT (official eval_detection semantics).

    ``ignore_unmatched`` (optional, aligned with ``pred_rows``): such predictions are left out of
    the ranking when they are false positives (tadkit's analysis tools use this).
    """
    ignore_unmatched = ignore_unmatched or [False] * len(pred_rows)
    labels = list(dict.fromkeys(r[1] for r in gt_rows))
    out = {}
    for label in labels:
        gts = [(i, r) for i, r in enumerate(gt_rows) if r[1] == label]
        npos = float(len(gts))
        gt_by_video = defaultdict(list)
        for gid, (_, r) in enumerate(gts):
            gt_by_video[r[0]].append((gid, r[2], r[3]))
        preds = [r for r in pred_rows if r[1] == label]
        ignored = [ig for r, ig in zip(pred_rows, ignore_unmatched) if r[1] == label]
        order = sorted(range(len(preds)), key=lambda k: -preds[k][4])  # stable: input order on ties
        lock = [[False] * len(gts) for _ in thresholds]
        tp = [[0] * len(preds) for _ in thresholds]
        fp = [[0] * len(preds) for _ in thresholds]
        for idx, k in enumerate(order):
            video, _, ps, pe, _ = preds[k]
            cands = gt_by_video.get(video, [])
            if not cands:
                for t in range(len(thresholds)):
                    fp[t][idx] = 1
                continue
            ious = [segment_iou_scalar(ps, pe, gs, ge, same_point=1.0) for _, gs, ge in cands]
            cand_order = sorted(range(len(cands)), key=lambda j: (-ious[j], -j))
            for t, thr in enumerate(thresholds):
                for j in cand_order:
                    if ious[j] < thr:
                        fp[t][idx] = 1
                        break
                    gid = cands[j][0]
                    if lock[t][gid]:
                        continue
                    tp[t][idx] = 1
                    lock[t][gid] = True
                    break
                if not tp[t][idx] and not fp[t][idx]:
                    fp[t][idx] = 1
        aps = []
        for t in range(len(thresholds)):
            if not preds:
                aps.append(0.0)
                continue
            tps = fps = 0.0
            prec, rec = [], []
            for idx in range(len(preds)):
                if fp[t][idx] and ignored[order[idx]]:
                    continue
                tps += tp[t][idx]
                fps += fp[t][idx]
                rec.append(tps / npos)
                prec.append(tps / (tps + fps))
            aps.append(interpolated_prec_rec(prec, rec))
        out[label] = aps
    return out


def reference_thumos14(gt_rows, pred_rows, ambiguous, thresholds, classes=None, ignore_unmatched=None):
    """{label: [AP per threshold]} (TH14evalDet.m semantics, one threshold at a time).

    ``ignore_unmatched``: as for :func:`reference_activitynet` (acts like an Ambiguous overlap).
    """
    ignore_unmatched = ignore_unmatched or [False] * len(pred_rows)
    classes = classes or list(dict.fromkeys(r[1] for r in gt_rows))
    videos = sorted({r[0] for r in gt_rows} | set(ambiguous) | {r[0] for r in pred_rows})
    gt_of = defaultdict(list)  # (video, label) -> GT intervals in file order
    for r in gt_rows:
        gt_of[(r[0], r[1])].append((r[2], r[3]))
    det_of = defaultdict(list)  # (video, label) -> detections in file order, with the ignore flag
    for r, ig in zip(pred_rows, ignore_unmatched):
        det_of[(r[0], r[1])].append(tuple(r) + (ig,))
    out = {}
    for label in classes:
        npos = sum(1 for r in gt_rows if r[1] == label)
        if npos == 0:
            continue
        has_dets = any(r[1] == label for r in pred_rows)
        aps = []
        for thr in thresholds:
            if not has_dets:
                aps.append(0.0)
                continue
            conf_all, flag_all = [], []
            for video in videos:
                gt = gt_of.get((video, label), [])
                amb = ambiguous.get(video, [])
                det = det_of.get((video, label), [])
                if not det:
                    continue
                det = sorted(det, key=lambda r: -r[4])  # MATLAB sort is stable
                indfree = [1] * len(det)
                for gs, ge in gt:
                    free = [i for i in range(len(det)) if indfree[i]]
                    if not free:
                        continue
                    best_i, best_v = None, -1.0
                    for i in free:  # max() returns the first maximum
                        v = matlab_overlap(gs, ge, det[i][2], det[i][3])
                        if v > best_v:
                            best_i, best_v = i, v
                    if best_v > thr:
                        indfree[best_i] = 0
                for i, d in enumerate(det):
                    in_amb = sum(matlab_overlap(a0, a1, d[2], d[3]) for a0, a1 in amb) > 0
                    if indfree[i] == 0:
                        conf_all.append(d[4])
                        flag_all.append(1)
                    elif not in_amb and not d[5]:
                        conf_all.append(d[4])
                        flag_all.append(2)
            order = sorted(range(len(conf_all)), key=lambda k: -conf_all[k])
            tp = fp = 0
            ap = 0.0
            for k in order:
                if flag_all[k] == 1:
                    tp += 1
                    ap += tp / (tp + fp)
                else:
                    fp += 1
            aps.append(ap / npos)
        out[label] = aps
    return out


def reference_proposals(gt_rows, prop_rows, max_avg_nr_proposals, thresholds):
    """(recall (T, 100), average recall (100,), proposals per video (100,)) of eval_proposal.py.

    ``prop_rows`` are (video, start, end, score); ``gt_rows`` (video, label, start, end).
    """
    video_lst = list(dict.fromkeys(r[0] for r in gt_rows))
    total_props = len(prop_rows)
    if not max_avg_nr_proposals:
        max_avg_nr_proposals = total_props / len(video_lst)
    ratio = max_avg_nr_proposals * float(len(video_lst)) / total_props
    props_by_video = defaultdict(list)
    for r in prop_rows:
        props_by_video[r[0]].append(r)
    score_lst = []
    total_nr = 0
    for video in video_lst:
        gts = [(r[2], r[3]) for r in gt_rows if r[0] == video]
        props = props_by_video.get(video, [])
        if not props:
            score_lst.append([[0.0] for _ in gts])
            continue
        props = sorted(props, key=lambda r: -r[3])
        nr = min(int(len(props) * ratio), len(props))
        total_nr += nr
        props = props[:nr]
        score_lst.append([[segment_iou_scalar(p[1], p[2], gs, ge) for p in props] for gs, ge in gts])
    pcn = np.arange(1, 101) / 100.0 * (max_avg_nr_proposals * float(len(video_lst)) / total_nr)
    recall = np.empty((len(thresholds), len(pcn)))
    positives = sum(len(s) for s in score_lst)
    for t, thr in enumerate(thresholds):
        matches = np.zeros(len(pcn))
        for score in score_lst:
            width = len(score[0]) if score else 0
            counts = np.minimum((width * pcn).astype(int), width)
            for j, nr in enumerate(counts):
                matches[j] += sum(1 for row in score if any(v >= thr for v in row[:nr]))
        recall[t] = matches / positives
    avg = recall.mean(axis=0)
    return recall, avg, pcn * (float(total_nr) / len(video_lst))


# ---------------------------------------------------------------------------------------------
# the references against hand-computed numbers (so a broken reference cannot hide a broken port)
# ---------------------------------------------------------------------------------------------


def test_reference_activitynet_by_hand():
    gt = [("a", "x", 0.0, 10.0), ("a", "x", 20.0, 30.0), ("a", "x", 40.0, 50.0)]
    # TP FP FP TP TP -> precisions 1, 1/2, 1/3, 1/2, 3/5; interpolated: (1 + 3/5 + 3/5) / 3
    preds = [("a", "x", 0, 10, 0.9), ("a", "x", 100, 110, 0.8), ("a", "x", 200, 210, 0.7),
             ("a", "x", 20, 30, 0.6), ("a", "x", 40, 50, 0.5)]
    assert reference_activitynet(gt, preds, [0.5])["x"][0] == pytest.approx(2.2 / 3, abs=1e-12)


def test_reference_thumos14_by_hand():
    gt = [("a", "x", 0.0, 10.0), ("a", "x", 20.0, 30.0), ("a", "x", 40.0, 50.0)]
    preds = [("a", "x", 0, 10, 0.9), ("a", "x", 100, 110, 0.8), ("a", "x", 200, 210, 0.7),
             ("a", "x", 20, 30, 0.6), ("a", "x", 40, 50, 0.5)]
    # non-interpolated: (1 + 1/2 + 3/5) / 3; with [99, 101] Ambiguous the 0.8 FP leaves the list
    assert reference_thumos14(gt, preds, {}, [0.5])["x"][0] == pytest.approx(2.1 / 3, abs=1e-12)
    got = reference_thumos14(gt, preds, {"a": [(99.0, 101.0)]}, [0.5])["x"][0]
    assert got == pytest.approx((1 + 2 / 3 + 3 / 4) / 3, abs=1e-12)


def test_reference_proposals_by_hand():
    gt = [("a", "x", 0.0, 10.0), ("b", "x", 0.0, 10.0)]
    # one proposal per video allowed: a's best proposal hits, b's does not
    props = [("a", 0.0, 10.0, 0.9), ("a", 50.0, 60.0, 0.1), ("b", 50.0, 60.0, 0.8), ("b", 0.0, 10.0, 0.2)]
    recall, avg, an = reference_proposals(gt, props, 2, np.array([0.5]))
    assert an[49] == pytest.approx(1.0) and avg[49] == pytest.approx(0.5)
    assert an[-1] == pytest.approx(2.0) and avg[-1] == pytest.approx(1.0)
    assert math.isclose(recall[0, 0], 0.0)


# ---------------------------------------------------------------------------------------------
# small builders shared by the evaluation tests and benchmarks/eval_speed.py
# ---------------------------------------------------------------------------------------------


def make_gt(videos, classes=None, ambiguous=None, subset="test"):
    """AnnotationSet from {video: [(start, end, label), ...]} (+ {video: [(s, e)]} Ambiguous)."""
    from tadkit.data.records import AnnotationSet, Segment, VideoAnnotation

    ambiguous = ambiguous or {}
    vids = {}
    for vid in list(videos) + [v for v in ambiguous if v not in videos]:
        segs = [Segment(float(s), float(e), lab) for s, e, lab in videos.get(vid, [])]
        vids[vid] = VideoAnnotation(vid, subset, segments=segs, ambiguous=list(ambiguous.get(vid, [])))
    if classes is None:
        classes = sorted({lab for segs in videos.values() for _, _, lab in segs})
    return AnnotationSet(vids, list(classes))


def make_dets(rows):
    """DetectionSet from [(video, start, end, label, score), ...]."""
    from tadkit.data.records import DetectionSet

    if not rows:
        return DetectionSet.empty()
    video, start, end, label, score = zip(*rows)
    v = np.empty(len(rows), dtype=object)
    v[:] = list(video)
    lab = np.empty(len(rows), dtype=object)
    lab[:] = list(label)
    return DetectionSet(v, np.asarray(start, float), np.asarray(end, float), lab, np.asarray(score, float))


def gt_rows_of(gt):
    """(video, label, start, end) rows in AnnotationSet order, and {video: ambiguous}."""
    rows = [(vid, s.label, s.start, s.end) for vid, ann in gt.videos.items() for s in ann.segments]
    amb = {vid: list(ann.ambiguous) for vid, ann in gt.videos.items() if ann.ambiguous}
    return rows, amb


def pred_rows_of(dets):
    return list(zip(dets.video.tolist(), dets.label.tolist(), dets.start.tolist(), dets.end.tolist(),
                    dets.score.tolist()))


def perturb_gt(gt, rng, copies=(0, 4), wrong_label=0.15, duplicate=0.1, extra_fp=300, unknown_video=True,
               score_decimals=None):
    """Predictions made from real GT: jittered copies, wrong labels, exact duplicates, random
    false positives (also on Ambiguous-only videos) and one prediction on an unknown video."""
    rows = []
    vids = list(gt.videos)
    for vid, ann in gt.videos.items():
        for seg in ann.segments:
            d = max(seg.end - seg.start, 0.1)
            for _ in range(rng.integers(*copies)):
                s = seg.start + rng.normal(0, 0.2) * d
                e = seg.end + rng.normal(0, 0.2) * d
                s, e = min(s, e), max(s, e)
                lab = seg.label if rng.random() > wrong_label else gt.classes[rng.integers(len(gt.classes))]
                rows.append((vid, s, e, lab))
            if rng.random() < duplicate:
                rows.append((vid, seg.start, seg.end, seg.label))
    for _ in range(extra_fp):
        vid = vids[rng.integers(len(vids))]
        s = rng.random() * 150
        rows.append((vid, s, s + rng.random() * 20, gt.classes[rng.integers(len(gt.classes))]))
    if unknown_video:
        rows.append(("video_not_in_gt", 1.0, 5.0, gt.classes[0]))
    scores = rng.random(len(rows))
    if score_decimals is not None:
        scores = np.round(scores, score_decimals)
    return make_dets([(v, s, e, lab, sc) for (v, s, e, lab), sc in zip(rows, scores)])
