"""Degenerate predictions (end <= start) and predictions in the wrong time unit.

Both official evaluators score a prediction file that contains reversed or zero-length segments
(eval_detection.py: a false positive that never matches; TH14evalDet.m: ``[min, max]`` of the
interval, so a reversed detection counts as its swapped interval). tadkit must too, count them,
and refuse them only with ``strict``. Reversed ground truth stays an error.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import shared_path
from tadkit.cli import main
from tadkit.data.records import DetectionSet
from tadkit.errors import TadkitError
from tadkit.evaluation import evaluate, load_predictions, write_activitynet_json
from test_evaluation_reference import (
    gt_rows_of,
    make_dets,
    make_gt,
    perturb_gt,
    pred_rows_of,
    reference_activitynet,
    reference_thumos14,
)

THUMOS_TIOU = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
ANET_TIOU = [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]


def with_degenerate(gt, dets: DetectionSet, rng: np.random.Generator, share: float = 0.05) -> DetectionSet:
    """``dets`` plus reversed and zero-length predictions: reversed jittered copies of GT (they
    overlap their GT once swapped), zero-length points inside GT, reversed random ones; scores
    distinct from each other and from ``dets``."""
    rows = []
    segs = [(vid, s.start, s.end, s.label) for vid, ann in gt.videos.items() for s in ann.segments]
    pick = rng.choice(len(segs), size=max(3, int(share * len(segs))), replace=False)
    for k, i in enumerate(pick):
        vid, s, e, lab = segs[i]
        d = max(e - s, 0.1)
        if k % 3 == 0:  # reversed, near the GT: swapped it overlaps (matters for thumos14)
            a, b = s + rng.normal(0, 0.1) * d, e + rng.normal(0, 0.1) * d
            rows.append((vid, max(a, b) + 1e-3, min(a, b), lab))
        elif k % 3 == 1:  # zero length inside the GT
            t = s + rng.random() * d
            rows.append((vid, t, t, lab))
        else:  # reversed somewhere in the video
            t = rng.random() * 100
            rows.append((vid, t + rng.random() * 10 + 1e-3, t, lab))
    extra = make_dets([(v, a, b, lab, 0.0) for v, a, b, lab in rows])
    both = DetectionSet.concatenate([dets, extra])
    both.score = rng.permutation(len(both)) / len(both) + 1e-6  # distinct scores
    return both


@pytest.fixture(scope="module")
def thumos_test_gt():
    from tadkit.data.annotations import load_annotations

    return load_annotations(shared_path("data", "thumos14", "evalkit", "test"))


@pytest.fixture(scope="module")
def anet_val_gt():
    from tadkit.data.annotations import load_annotations

    return load_annotations(shared_path("data", "activitynet", "v1.3", "bsn", "anet_anno_action.json"),
                            subset="validation")


def max_diff(ours: dict, ref: dict) -> float:
    assert set(ours) == set(ref)
    return max(abs(a - b) for c in ref for a, b in zip(ours[c], ref[c]))


@pytest.mark.shared
def test_thumos14_real_gt_with_degenerate_predictions_equals_reference(thumos_test_gt):
    rng = np.random.default_rng(3)
    dets = with_degenerate(thumos_test_gt, perturb_gt(thumos_test_gt, rng, copies=(0, 3)), rng, share=0.1)
    n_rev, n_deg = int((dets.end < dets.start).sum()), int((dets.end <= dets.start).sum())
    assert n_rev > 100 and n_deg > n_rev
    gt_rows, amb = gt_rows_of(thumos_test_gt)
    ref = reference_thumos14(gt_rows, pred_rows_of(dets), amb, THUMOS_TIOU, classes=thumos_test_gt.classes)
    ours = evaluate(thumos_test_gt, dets, "thumos14", THUMOS_TIOU)
    assert max_diff(ours.per_class, ref) <= 1e-12
    assert ours.counts["reversed_preds"] == n_rev and ours.counts["degenerate_preds"] == n_deg
    # the evalkit swaps reversed intervals: the near-GT reversed ones are matched, so dropping
    # them changes the score (they are not plain false positives under this protocol)
    keep = ~(dets.end < dets.start)
    assert evaluate(thumos_test_gt, dets.select(keep), "thumos14", THUMOS_TIOU).mAP != ours.mAP
    swapped = DetectionSet(dets.video, np.minimum(dets.start, dets.end), np.maximum(dets.start, dets.end),
                           dets.label, dets.score)
    assert evaluate(thumos_test_gt, swapped, "thumos14", THUMOS_TIOU).per_class == ours.per_class


@pytest.mark.shared
def test_activitynet_real_gt_with_degenerate_predictions_equals_reference(anet_val_gt):
    rng = np.random.default_rng(4)
    dets = with_degenerate(anet_val_gt, perturb_gt(anet_val_gt, rng, copies=(0, 2), extra_fp=2000), rng)
    assert (dets.end < dets.start).sum() > 50
    gt_rows, _ = gt_rows_of(anet_val_gt)
    ref = reference_activitynet(gt_rows, pred_rows_of(dets), ANET_TIOU)
    ours = evaluate(anet_val_gt, dets, "activitynet")
    assert max_diff(ours.per_class, ref) <= 1e-12
    assert ours.counts["degenerate_preds"] == int((dets.end <= dets.start).sum())
    # under eval_detection.py a degenerate prediction is a false positive that never matches:
    # removing them can only raise AP (fewer FPs, the same TPs)
    clean = evaluate(anet_val_gt, dets.select(dets.end > dets.start), "activitynet")
    assert all(c >= o for c, o in zip(clean.mAP, ours.mAP)) and clean.average_mAP > ours.average_mAP


@pytest.mark.shared
def test_activitynet_protocol_on_thumos_with_degenerate_predictions(thumos_test_gt):
    rng = np.random.default_rng(5)
    dets = with_degenerate(thumos_test_gt, perturb_gt(thumos_test_gt, rng, copies=(0, 3)), rng, share=0.1)
    gt_rows, _ = gt_rows_of(thumos_test_gt)
    ref = reference_activitynet(gt_rows, pred_rows_of(dets), THUMOS_TIOU)
    assert max_diff(evaluate(thumos_test_gt, dets, "activitynet", THUMOS_TIOU).per_class, ref) <= 1e-12


def test_small_cases_by_hand():
    gt = make_gt({"a": [(0.0, 10.0, "x")]}, ambiguous={"a": [(50.0, 60.0)]})
    reversed_copy = make_dets([("a", 10.0, 0.5, "x", 0.9)])  # [0.5, 10] once swapped
    assert evaluate(gt, reversed_copy, "thumos14", [0.5]).mAP == [1.0]
    assert evaluate(gt, reversed_copy, "activitynet", [0.5]).mAP == [0.0]
    # reversed over the Ambiguous segment: removed under thumos14 (swapped it overlaps), FP otherwise
    dets = make_dets([("a", 0.0, 10.0, "x", 0.5), ("a", 58.0, 52.0, "x", 0.9)])
    assert evaluate(gt, dets, "thumos14", [0.5]).mAP == [1.0]
    assert evaluate(gt, dets, "activitynet", [0.5]).mAP == [pytest.approx(0.5)]
    # zero length inside the GT: never a match under either protocol
    point = make_dets([("a", 5.0, 5.0, "x", 0.9)])
    for protocol in ("thumos14", "activitynet"):
        res = evaluate(gt, point, protocol, [0.1])
        assert res.mAP == [0.0] and res.counts["degenerate_preds"] == 1 and res.counts["reversed_preds"] == 0


def test_documented_deviation_reversed_length_cancelling_a_gt_length():
    # [10, 0] against GT [0, 10]: union 10 + (-10) - 0 = 0; the official 0/0 = NaN would match
    gt = make_gt({"a": [(0.0, 10.0, "x")]})
    assert evaluate(gt, make_dets([("a", 10.0, 0.0, "x", 0.9)]), "activitynet", [0.5]).mAP == [0.0]


def test_strict_refuses_reversed_predictions_and_gt_is_always_checked(tmp_path):
    gt = make_gt({"a": [(0.0, 10.0, "x")]})
    dets = make_dets([("a", 0.0, 10.0, "x", 0.5), ("a", 8.0, 3.0, "x", 0.4)])
    with pytest.raises(TadkitError, match="end < start") as info:
        evaluate(gt, dets, "activitynet", strict=True)
    assert info.value.video == "a" and info.value.field == "segment"
    # zero-length predictions are not refused by strict (only reversed ones)
    assert evaluate(gt, make_dets([("a", 1.0, 1.0, "x", 0.5)]), "activitynet", strict=True).mAP[0] == 0.0
    bad_gt = make_gt({"a": [(10.0, 0.0, "x")]})
    for strict in (False, True):
        with pytest.raises(TadkitError, match="ground-truth segment") as info:
            evaluate(bad_gt, dets.select(dets.end >= dets.start), "activitynet", strict=strict)
        assert info.value.video == "a" and info.value.field == "segment"


def cli(capsys, *argv):
    code = main(["eval", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


GT_JSON = {"version": "t", "database": {
    "v1": {"subset": "validation", "duration": 100.0, "fps": 30.0,
           "annotations": [{"segment": [10, 20], "label": "a"}, {"segment": [40, 60], "label": "a"}]},
    "v2": {"subset": "validation", "duration": 50.0, "fps": 30.0,
           "annotations": [{"segment": [5, 15], "label": "a"}]}}}


def test_cli_reports_degenerate_predictions_and_strict_exits_2(tmp_path, capsys):
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps(GT_JSON))
    pred = tmp_path / "p.json"
    pred.write_text(json.dumps({"results": {
        "v1": [{"segment": [10, 20], "label": "a", "score": 0.9}, {"segment": [0.0, -0.00101], "label": "a",
                                                                    "score": 0.8}],
        "v2": [{"segment": [5, 15], "label": "a", "score": 0.7}, {"segment": [7, 7], "label": "a", "score": 0.6}]}}))
    base = ["--gt", gt, "--pred", pred, "--protocol", "activitynet", "--subset", "validation", "--tiou", "0.5"]
    code, out, err = cli(capsys, *base, "--format", "json")
    data = json.loads(out)
    assert code == 0 and data["counts"]["degenerate_preds"] == 2 and data["counts"]["reversed_preds"] == 1
    # TP, FP, TP, FP for 3 GT: precision at the TPs 1 and 2/3 -> AP (1 + 2/3) / 3
    assert data["mAP"] == [pytest.approx((1 + 2 / 3) / 3)]
    code, out, _ = cli(capsys, *base)
    assert code == 0 and "2 predictions with end <= start, 1 reversed" in out
    code, out, err = cli(capsys, *base, "--strict")
    assert code == 2 and "before its start" in err and "v1" in err and str(pred) in err


@pytest.mark.shared
def test_frames_instead_of_seconds_warns(anet_val_gt):
    dets = perturb_gt(anet_val_gt, np.random.default_rng(6), copies=(1, 2), extra_fp=0)
    ok = evaluate(anet_val_gt, dets, "activitynet")
    assert ok.warnings == [] and ok.counts["preds_beyond_duration"] < 0.01 * ok.counts["preds_with_known_duration"]
    frames = DetectionSet(dets.video, dets.start * 30, dets.end * 30, dets.label, dets.score)
    bad = evaluate(anet_val_gt, frames, "activitynet")
    assert bad.average_mAP < 0.02 * ok.average_mAP
    assert len(bad.warnings) == 1 and "frames" in bad.warnings[0] and "seconds" in bad.warnings[0]
    assert bad.counts["preds_beyond_duration"] > 0.5 * bad.counts["preds_with_known_duration"]
    assert bad.to_dict()["warnings"] == bad.warnings and "warning: " in bad.format_table()


def test_time_unit_warning_threshold_and_cli_stderr(tmp_path, capsys):
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps(GT_JSON))
    # 1 of 5 predictions beyond the video end (20 %): no warning; 2 of 5 (40 %): warning
    for beyond, warned in ((1, False), (2, True)):
        rows = [("v1", 10.0, 20.0, "a", 0.9), ("v1", 40.0, 60.0, "a", 0.8), ("v2", 5.0, 15.0, "a", 0.7)]
        rows += [("v1", 10.0, 20.0, "a", 0.5)] * (2 - beyond)
        rows += [("v2", 300.0 + k, 450.0, "a", 0.4 - k / 10) for k in range(beyond)]  # v2 lasts 50 s
        pred = tmp_path / f"p{beyond}.json"
        write_activitynet_json(make_dets(rows), pred)
        code, out, err = cli(capsys, "--gt", gt, "--pred", pred, "--protocol", "activitynet", "--subset",
                             "validation", "--format", "json")
        data = json.loads(out)
        assert code == 0 and data["counts"]["preds_beyond_duration"] == beyond
        assert bool(data["warnings"]) is warned and ("warning:" in err) is warned
        if warned:
            assert "frames" in err and "30 fps" in err and "40%" in err


def test_reader_and_evaluator_agree_on_reversed_rows(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("video_test_1 5.0 2.0 7 0.5\nvideo_test_1 1.0 2.0 7 0.4\n")
    dets = load_predictions(path)
    assert dets.start.tolist() == [5.0, 1.0] and dets.end.tolist() == [2.0, 2.0]
    with pytest.raises(TadkitError, match="line 1"):
        load_predictions(path, strict=True)


def test_data_stats_on_an_empty_database(tmp_path, capsys):
    path = tmp_path / "empty.json"
    path.write_text('{"version": "x", "database": {}}')
    assert main(["data", "stats", str(path)]) == 0
    out = capsys.readouterr().out
    assert "0 videos, 0 instances" in out and "no video in the file" in out
    assert main(["data", "stats", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["subsets"] == []
