"""Per-duration mAP (A2Net Table I) and the DETAD false-positive breakdown."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import shared_path
from tadkit.errors import TadkitError
from tadkit.evaluation import FP_TYPES, duration_breakdown, evaluate, false_positive_breakdown
from test_evaluation_reference import (
    gt_rows_of,
    make_dets,
    make_gt,
    matlab_overlap,
    perturb_gt,
    pred_rows_of,
    reference_thumos14,
)

# GT of one video: A (1 s, ES), B (3 s, M), C (8 s, EL, other class)
DURATION_GT = {"v": [(0, 1, "a"), (10, 13, "a"), (20, 28, "b")]}
DURATION_DETS = [
    ("v", 0, 1, "a", 0.9),  # TP of A
    ("v", 10, 13, "a", 0.8),  # TP of B
    ("v", 10, 11.2, "a", 0.95),  # tIoU 0.4 with B: FP in M, foreign elsewhere
    ("v", 50, 60, "a", 0.99),  # overlaps no GT (background)
    ("v", 20, 28, "a", 0.7),  # best overlap C (EL) with the wrong label
]


def test_duration_bins_by_hand():
    gt, dets = make_gt(DURATION_GT), make_dets(DURATION_DETS)
    result = duration_breakdown(gt, dets, protocol="thumos14", tiou_thresholds=[0.5])
    by_name = {b.name: b for b in result.bins}
    assert [b.name for b in result.bins] == ["ES", "S", "M", "L", "EL"]
    assert [b.num_gt for b in result.bins] == [1, 0, 1, 0, 1]
    assert by_name["ES"].mAP == [1.0]  # B's predictions and the background one are ignored
    assert by_name["M"].mAP == [0.5]  # 0.95 FP (its best GT is B) then the 0.8 TP
    assert by_name["EL"].mAP == [0.0] and by_name["EL"].per_class == {"b": [0.0]}
    assert by_name["S"].num_classes == 0 and by_name["EL"].high is None
    # background predictions kept as false positives (not what the A2Net release does)
    fp = {b.name: b for b in duration_breakdown(gt, dets, "thumos14", [0.5], background="fp").bins}
    assert fp["ES"].mAP == [0.5] and fp["M"].mAP[0] == pytest.approx(1 / 3)
    text = result.format_table()
    assert "ES" in text and "100.00" in text and "50.00" in text
    with pytest.raises(TadkitError):
        duration_breakdown(gt, dets, background="maybe")


def test_duration_bin_edges_use_rounded_durations():
    # 54.3 - 52.8 = 1.4999999999999964 in floats; rounded to 1 us it is 1.5 -> bin S, not ES
    gt = make_gt({"v": [(52.8, 54.3, "a")]})
    result = duration_breakdown(gt, make_dets([("v", 52.8, 54.3, "a", 0.9)]), tiou_thresholds=[0.5])
    assert [b.num_gt for b in result.bins] == [0, 1, 0, 0, 0]
    custom = duration_breakdown(gt, make_dets([]), tiou_thresholds=[0.5], bins=[("short", 0, 10), ("long", 10, np.inf)])
    assert [b.num_gt for b in custom.bins] == [1, 0]


@pytest.mark.shared
def test_duration_bins_match_reference_on_real_thumos():
    try:
        from tadkit.data.annotations import load_annotations
    except ImportError:
        pytest.skip("tadkit.data.annotations.load_annotations is not available")
    gt = load_annotations(shared_path("data", "thumos14", "evalkit", "test"))
    dets = perturb_gt(gt, np.random.default_rng(5), copies=(0, 3))
    result = duration_breakdown(gt, dets, protocol="thumos14", tiou_thresholds=[0.3, 0.5])
    gt_rows, amb = gt_rows_of(gt)
    preds = pred_rows_of(dets)
    bins = [(b.name, b.low, np.inf if b.high is None else b.high) for b in result.bins]

    def bin_of(row):
        d = round(row[3] - row[2], 6)
        return next((k for k, (_, lo, hi) in enumerate(bins) if d > 0 and lo <= d < hi), -1)

    # owner of each prediction: first GT (file order) of its video with the highest overlap > 0
    owner_bin = []
    for video, _, s, e, _ in preds:
        best, best_row = 0.0, None
        for row in gt_rows:
            if row[0] == video:
                ov = matlab_overlap(s, e, row[2], row[3])
                if ov > best:
                    best, best_row = ov, row
        owner_bin.append(None if best_row is None else bin_of(best_row))
    assert sum(b.num_gt for b in result.bins) == sum(1 for r in gt_rows if bin_of(r) >= 0)
    for k, b in enumerate(result.bins):
        rows_k = [r for r in gt_rows if bin_of(r) == k]
        classes = [c for c in gt.classes if any(r[1] == c for r in rows_k)]
        ignore = [ob is None or ob != k for ob in owner_bin]
        ref = reference_thumos14(rows_k, preds, amb, [0.3, 0.5], classes=classes, ignore_unmatched=ignore)
        assert set(b.per_class) == set(ref)
        for c in ref:
            assert b.per_class[c] == pytest.approx(ref[c], abs=1e-12)
    assert all(0.0 < b.mAP[1] < 1.0 for b in result.bins)  # every bin scored, none degenerate


def test_false_positive_types_by_hand():
    gt = make_gt({"v": [(0, 10, "a"), (20, 30, "b"), (40, 50, "a")]})
    rows = [
        ("v", 0, 10, "a", 0.9),  # TP of the first a
        ("v", 0, 10, "a", 0.8),  # double detection
        ("v", 20, 30, "a", 0.7),  # wrong label (tIoU 1 with b)
        ("v", 0, 3, "a", 0.6),  # localization (tIoU 0.3, same label)
        ("v", 20, 23, "a", 0.5),  # confusion (tIoU 0.3 with b)
        ("v", 70, 80, "a", 0.4),  # background
        ("nowhere", 0, 10, "a", 0.35),  # background (video without GT)
        ("v", 40, 50, "a", 0.3),  # TP of the second a
    ]
    dets = make_dets(rows)
    fpb = false_positive_breakdown(gt, dets, protocol="activitynet", tiou_thresholds=[0.5])
    assert fpb.true_positives == [2]
    assert {t: fpb.counts[t][0] for t in FP_TYPES} == {
        "double_detection": 1, "wrong_label": 1, "localization": 1, "confusion": 1, "background": 2}
    assert fpb.fractions()["background"] == [pytest.approx(2 / 6)]
    base = evaluate(gt, dets, "activitynet", [0.5]).average_mAP
    assert fpb.average_mAP == pytest.approx(base, abs=1e-15)
    # the gain of a type = mAP with those predictions deleted from the file, minus the mAP
    by_type = {"double_detection": [1], "wrong_label": [2], "localization": [3], "confusion": [4], "background": [5, 6]}
    for name, idx in by_type.items():
        without = make_dets([r for i, r in enumerate(rows) if i not in idx])
        expected = evaluate(gt, without, "activitynet", [0.5]).average_mAP - base
        assert fpb.mAP_gain[name] == pytest.approx(expected, abs=1e-12)
        assert expected > 0
    assert "double_detection" in fpb.format_table()


def test_false_positive_breakdown_thumos_is_strict_and_respects_ambiguous():
    gt = make_gt({"v": [(0, 10, "a")]}, ambiguous={"v": [(60, 70)]})
    rows = [("v", 0, 10, "a", 0.9), ("v", 0, 5, "a", 0.8), ("v", 65, 75, "a", 0.7)]
    fpb = false_positive_breakdown(gt, make_dets(rows), protocol="thumos14", tiou_thresholds=[0.5])
    # second detection: tIoU exactly 0.5 is not "above" under thumos14 -> localization
    assert fpb.counts["localization"] == [1] and fpb.counts["double_detection"] == [0]
    assert fpb.removed == [1]  # the Ambiguous-overlapping one is neither TP nor FP
    assert fpb.counts["background"] == [0]


def test_limit_factor_keeps_top_predictions_per_class():
    gt = make_gt({"v": [(0, 10, "a")]})
    rows = [("v", 0, 10, "a", 0.9)] + [("v", 100 + i, 101 + i, "a", 0.5 - i / 100) for i in range(20)]
    full = false_positive_breakdown(gt, make_dets(rows), tiou_thresholds=[0.5])
    top = false_positive_breakdown(gt, make_dets(rows), tiou_thresholds=[0.5], limit_factor=10)
    assert full.num_predictions == 21 and top.num_predictions == 10
    assert top.counts["background"] == [9] and top.true_positives == [1]


# ----------------------------------------------------------------------------------------------
# DETAD (HumamAlwassel/DETAD src/action_detector_diagnosis.py), restated as loops
# ----------------------------------------------------------------------------------------------
def detad_reference(gt_rows, pred_rows, thresholds, limit_factor=10, min_tiou=0.1):
    """(counts {type: [per tIoU]}, true positives per tIoU, average-mAP_N, gains) of DETAD's
    false_positive_analysis.py settings (limit 10G, normalize_ap, min tIoU 0.1)."""
    from test_evaluation_reference import interpolated_prec_rec, segment_iou_scalar

    labels = list(dict.fromkeys(r[1] for r in gt_rows))
    n_avg = len(gt_rows) / len(labels)
    npos = {lab: sum(1 for g in gt_rows if g[1] == lab) for lab in labels}
    preds = []  # _limit_prediction: per class, nlargest(int(N_j * 10)) (stable on ties)
    for lab in labels:
        cls = sorted([r for r in pred_rows if r[1] == lab], key=lambda r: -r[4])
        preds += cls[: int(npos[lab] * limit_factor)]
    gt_idx = {lab: [i for i, g in enumerate(gt_rows) if g[1] == lab] for lab in labels}
    matched = [[None] * len(preds) for _ in thresholds]
    order_of = {}
    for lab in labels:
        order = sorted([i for i, r in enumerate(preds) if r[1] == lab], key=lambda i: -preds[i][4])
        order_of[lab] = order
        for t, thr in enumerate(thresholds):
            locked = set()
            for i in order:
                cands = [(segment_iou_scalar(preds[i][2], preds[i][3], gt_rows[g][2], gt_rows[g][3]), g)
                         for g in gt_idx[lab] if gt_rows[g][0] == preds[i][0]]
                for v, g in sorted(cands, key=lambda c: (-c[0], -c[1])):  # argsort()[::-1]: later GT on ties
                    if v < thr:
                        break
                    if g in locked:
                        continue
                    locked.add(g)
                    matched[t][i] = g
                    break
    types = [[None] * len(preds) for _ in thresholds]
    for t, thr in enumerate(thresholds):
        for i, r in enumerate(preds):
            if matched[t][i] is not None:
                continue
            best_v, best_g = -1.0, None
            for g, row in enumerate(gt_rows):  # argmax: first maximum, GT of any class in the video
                if row[0] == r[0]:
                    v = segment_iou_scalar(r[2], r[3], row[2], row[3])
                    if v > best_v:
                        best_v, best_g = v, g
            same = best_g is not None and gt_rows[best_g][1] == r[1]
            if best_v >= thr:
                types[t][i] = "double_detection" if same else "wrong_label"
            elif best_v >= min_tiou:
                types[t][i] = "localization" if same else "confusion"
            else:
                types[t][i] = "background"

    def mean_ap(removed_type=None):
        aps = []
        for lab in labels:
            for t in range(len(thresholds)):
                tp = fp = 0
                prec, rec = [], []
                for i in order_of[lab]:
                    if removed_type is not None and types[t][i] == removed_type:
                        continue
                    if matched[t][i] is not None:
                        tp += 1
                    else:
                        fp += 1
                    r = tp / npos[lab]
                    rec.append(r)
                    prec.append(r * n_avg / (r * n_avg + fp))
                aps.append(interpolated_prec_rec(prec, rec) if prec else 0.0)
        return float(np.mean(aps))

    counts = {k: [sum(1 for x in types[t] if x == k) for t in range(len(thresholds))] for k in FP_TYPES}
    tps = [sum(1 for m in matched[t] if m is not None) for t in range(len(thresholds))]
    average = mean_ap()
    return counts, tps, average, {k: mean_ap(k) - average for k in FP_TYPES}, len(preds)


@pytest.mark.shared
def test_detad_settings_match_official_restatement():
    from tadkit.data.annotations import load_annotations
    from tadkit.evaluation.analysis import detad_breakdown

    full = load_annotations(shared_path("data", "activitynet", "v1.3", "bsn", "anet_anno_action.json"),
                            subset="validation")
    gt = full.with_videos(dict(list(full.videos.items())[:120]))
    dets = perturb_gt(gt, np.random.default_rng(4), copies=(0, 6), wrong_label=0.3, extra_fp=150,
                      unknown_video=False)
    thresholds = [0.5, 0.75, 0.95]
    ours = detad_breakdown(gt, dets, tiou_thresholds=thresholds)
    gt_rows, _ = gt_rows_of(gt)
    counts, tps, average, gains, n = detad_reference(gt_rows, pred_rows_of(dets), thresholds)
    print("DETAD restatement:", counts, "avg-mAP_N", round(100 * average, 3),
          {k: round(100 * v, 3) for k, v in gains.items()})
    assert ours.num_predictions == n < len(dets)  # the top-10G limit removed some
    assert ours.counts == counts and ours.true_positives == tps
    assert ours.average_mAP == pytest.approx(average, abs=1e-12)
    for k in FP_TYPES:
        assert ours.mAP_gain[k] == pytest.approx(gains[k], abs=1e-12)
    assert sum(ours.detad_profile()[k][0] for k in ("true_positive",) + FP_TYPES) == pytest.approx(1.0)
