"""Detection mAP: hand-computed cases, documented tie-breaks, and exact agreement with the
loop-based restatements of the official code (tests/test_evaluation_reference.py) on real GT."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import shared_path
from tadkit.errors import TadkitError
from tadkit.evaluation import evaluate, parse_tiou
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


def load_annotations_or_skip():
    try:
        from tadkit.data.annotations import load_annotations
    except ImportError:  # the annotation readers land separately
        pytest.skip("tadkit.data.annotations.load_annotations is not available")
    return load_annotations


def max_diff(ours: dict, ref: dict) -> float:
    assert set(ours) == set(ref)
    return max(abs(a - b) for c in ref for a, b in zip(ours[c], ref[c]))


# ---------------------------------------------------------------------------------------------
# hand-computed cases
# ---------------------------------------------------------------------------------------------


def test_one_gt_two_detections_by_hand():
    gt = make_gt({"v": [(0, 10, "a")]})
    # FP (no overlap) ranked above the TP: precision 0 then 1/2 at recall 1 -> AP 1/2 in both
    dets = make_dets([("v", 20, 30, "a", 0.9), ("v", 0, 10, "a", 0.8)])
    for protocol in ("activitynet", "thumos14"):
        assert evaluate(gt, dets, protocol, [0.5]).mAP == [pytest.approx(0.5, abs=1e-15)]
    # the TP first: the later duplicate is a FP and costs nothing
    dets = make_dets([("v", 0, 10, "a", 0.9), ("v", 1, 10, "a", 0.8)])
    assert evaluate(gt, dets, "activitynet", [0.5]).mAP == [1.0]
    assert evaluate(gt, dets, "thumos14", [0.5]).mAP == [1.0]


def test_interpolated_versus_plain_ap_by_hand():
    gt = make_gt({"v": [(0, 10, "a"), (20, 30, "a"), (40, 50, "a")]})
    # TP FP FP TP TP: precisions 1, 1/2, 1/3, 1/2, 3/5 at the TPs 1, 1/2, 3/5
    dets = make_dets([("v", 0, 10, "a", 0.9), ("v", 100, 110, "a", 0.8), ("v", 200, 210, "a", 0.7),
                      ("v", 20, 30, "a", 0.6), ("v", 40, 50, "a", 0.5)])
    assert evaluate(gt, dets, "activitynet", [0.5]).mAP[0] == pytest.approx((1 + 0.6 + 0.6) / 3, abs=1e-15)
    assert evaluate(gt, dets, "thumos14", [0.5]).mAP[0] == pytest.approx((1 + 0.5 + 0.6) / 3, abs=1e-15)


def test_tiou_exactly_at_threshold():
    gt = make_gt({"v": [(0, 10, "a")]})
    dets = make_dets([("v", 0, 5, "a", 0.9)])  # tIoU = 5 / 10 = 0.5 exactly
    assert evaluate(gt, dets, "activitynet", [0.5]).mAP == [1.0]  # >= threshold
    assert evaluate(gt, dets, "thumos14", [0.5]).mAP == [0.0]  # strictly > threshold


def test_prediction_driven_versus_gt_driven_matching():
    # g1 [0,10], g2 [5,15]; d1 (0.9) [2,12]: 0.667 / 0.538; d2 (0.8) [0,9]: 0.9 / 0.267
    gt = make_gt({"v": [(0, 10, "a"), (5, 15, "a")]})
    dets = make_dets([("v", 2, 12, "a", 0.9), ("v", 0, 9, "a", 0.8)])
    # ActivityNet: d1 takes its best GT g1, d2 finds g1 taken and g2 too far -> TP, FP
    assert evaluate(gt, dets, "activitynet", [0.5]).mAP == [0.5]
    # THUMOS14: g1 takes its best detection d2, g2 then takes d1 (0.538 > 0.5) -> 2 TPs
    assert evaluate(gt, dets, "thumos14", [0.5]).mAP == [1.0]


def test_ambiguous_segments_only_matter_to_thumos14():
    gt = make_gt({"v": [(0, 10, "a"), (20, 30, "a"), (40, 50, "a")]}, ambiguous={"v": [(99, 101)]})
    dets = make_dets([("v", 0, 10, "a", 0.9), ("v", 100, 110, "a", 0.8), ("v", 200, 210, "a", 0.7),
                      ("v", 20, 30, "a", 0.6), ("v", 40, 50, "a", 0.5)])
    # the 0.8 FP touches the Ambiguous segment and leaves the THUMOS14 ranking
    assert evaluate(gt, dets, "thumos14", [0.5]).mAP[0] == pytest.approx((1 + 2 / 3 + 3 / 4) / 3, abs=1e-15)
    assert evaluate(gt, dets, "activitynet", [0.5]).mAP[0] == pytest.approx((1 + 0.6 + 0.6) / 3, abs=1e-15)
    # touching is not overlapping (intersection must be > 0)
    gt2 = make_gt({"v": [(0, 10, "a")]}, ambiguous={"v": [(30, 40)]})
    dets2 = make_dets([("v", 20, 30, "a", 0.9), ("v", 0, 10, "a", 0.8)])
    assert evaluate(gt2, dets2, "thumos14", [0.5]).mAP == [0.5]
    # a matched detection stays a TP even when it overlaps an Ambiguous segment
    gt3 = make_gt({"v": [(0, 10, "a")]}, ambiguous={"v": [(5, 6)]})
    assert evaluate(gt3, make_dets([("v", 0, 10, "a", 0.9)]), "thumos14", [0.5]).mAP == [1.0]


def test_score_ties_keep_input_order():
    gt = make_gt({"v": [(0, 10, "a")]})
    tp_first = make_dets([("v", 0, 10, "a", 0.5), ("v", 50, 60, "a", 0.5)])
    fp_first = make_dets([("v", 50, 60, "a", 0.5), ("v", 0, 10, "a", 0.5)])
    for protocol in ("activitynet", "thumos14"):
        assert evaluate(gt, tp_first, protocol, [0.5]).mAP == [1.0]
        assert evaluate(gt, fp_first, protocol, [0.5]).mAP == [0.5]


def test_activitynet_equal_tiou_prefers_the_later_gt():
    # d1 [5,15] has tIoU 1/3 with both GT; it takes the later one, so d2 [10,20] (tIoU 1 with it)
    # finds it taken and becomes a FP: TP, FP over 2 GT -> AP 0.5 (1.0 with the other tie-break)
    gt = make_gt({"v": [(0, 10, "a"), (10, 20, "a")]})
    dets = make_dets([("v", 5, 15, "a", 0.9), ("v", 10, 20, "a", 0.8)])
    assert evaluate(gt, dets, "activitynet", [0.3]).mAP == [0.5]


def test_thumos14_equal_tiou_takes_the_higher_score():
    # both detections have tIoU 0.5 with the GT; MATLAB's max takes the first (higher score) one
    gt = make_gt({"v": [(0, 10, "a")]})
    dets = make_dets([("v", 5, 15, "a", 0.4), ("v", -5, 5, "a", 0.9)])
    result = evaluate(gt, dets, "thumos14", [0.3])
    assert result.mAP == [1.0]


def test_zero_length_segments():
    # the official sample submission copies zero-length GT: the same instant matches
    gt = make_gt({"v": [(4.1, 4.1, "a"), (0, 10, "a")]})
    dets = make_dets([("v", 4.1, 4.1, "a", 0.9), ("v", 0, 10, "a", 0.8)])
    assert evaluate(gt, dets, "activitynet", [0.5, 0.95]).mAP == [1.0, 1.0]
    other_instant = make_dets([("v", 7.0, 7.0, "a", 0.9), ("v", 0, 10, "a", 0.8)])
    assert evaluate(gt, other_instant, "activitynet", [0.5]).mAP == [0.25]  # FP then TP at recall 1/2


def test_classes_without_predictions_and_videos_without_predictions():
    gt = make_gt({"v1": [(0, 10, "a"), (0, 10, "b")], "v2": [(0, 10, "a")]}, classes=["a", "b", "c"])
    dets = make_dets([("v1", 0, 10, "a", 0.9)])
    for protocol in ("activitynet", "thumos14"):
        result = evaluate(gt, dets, protocol, [0.5])
        assert set(result.per_class) == {"a", "b"}  # "c" has no GT: not averaged
        assert result.per_class["a"] == [0.5]  # v2's instance is a FN
        assert result.per_class["b"] == [0.0]
        assert result.mAP == [0.25] and result.average_mAP == 0.25
        assert result.counts["gt_videos_without_preds"] == 1


def test_unknown_labels_and_videos_are_counted_and_strict_raises():
    gt = make_gt({"v": [(0, 10, "a")]})
    dets = make_dets([("v", 0, 10, "zzz", 0.95), ("elsewhere", 0, 10, "a", 0.9), ("v", 0, 10, "a", 0.8)])
    for protocol in ("activitynet", "thumos14"):
        official = evaluate(gt, dets, protocol, [0.5])
        assert official.counts["unknown_label_preds"] == 1 and official.counts["unknown_labels"] == ["zzz"]
        assert official.counts["unknown_video_preds"] == 1
        assert official.mAP == [0.5]  # the unknown video's prediction is a FP ranked first
        assert evaluate(gt, dets, protocol, [0.5], unknown_videos="drop").mAP == [1.0]
        with pytest.raises(TadkitError) as info:
            evaluate(gt, dets, protocol, [0.5], strict=True)
        assert "zzz" in str(info.value) and "elsewhere" in str(info.value)


def test_video_id_spellings_and_blocked_list():
    gt = make_gt({"v_abc": [(0, 10, "a")], "v_blk": [(0, 10, "a")], "video_test_1": [(0, 10, "a")]})
    dets = make_dets([("abc", 0, 10, "a", 0.9), ("video_test_1.mp4", 0, 10, "a", 0.8), ("blk", 50, 60, "a", 0.95)])
    result = evaluate(gt, dets, "activitynet", [0.5])
    assert result.counts["pred_ids_renamed"] == 3
    assert result.mAP[0] == pytest.approx(2 / 3 * (2 / 3))  # FP first, then 2 TPs of 3 GT
    blocked = evaluate(gt, dets, "activitynet", [0.5], blocked=["blk"])  # bare id blocks v_blk
    assert blocked.counts["blocked_videos_dropped"] == 1 and blocked.counts["blocked_preds_dropped"] == 1
    assert blocked.mAP == [1.0]


def test_subset_selection_and_errors():
    gt = make_gt({"v": [(0, 10, "a")]}, subset="validation")
    dets = make_dets([("v", 0, 10, "a", 0.9)])
    assert evaluate(gt, dets, "activitynet", subset="val").subset == "validation"  # alias
    with pytest.raises(TadkitError, match="subset"):
        evaluate(gt, dets, "activitynet", subset="training")
    with pytest.raises(TadkitError, match="protocol"):
        evaluate(gt, dets, "coco")
    with pytest.raises(TadkitError):
        evaluate(gt, make_dets([("v", 0, 10, "a", float("nan"))]), "activitynet")
    with pytest.raises(TadkitError) as info:  # reversed predictions: scored, unless strict
        evaluate(gt, make_dets([("v", 10, 0, "a", 0.5)]), "thumos14", strict=True)
    assert info.value.field == "segment" and info.value.video == "v"
    assert evaluate(gt, make_dets([("v", 10, 0, "a", 0.5)]), "thumos14").mAP[0] == 1.0  # evalkit: [0, 10]
    with pytest.raises(TadkitError, match="every ground-truth video"):
        evaluate(gt, dets, "activitynet", blocked=["v"])


def test_parse_tiou():
    assert parse_tiou("0.1:0.7:0.1") == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
    assert parse_tiou("0.5:0.95:0.05") == ANET_TIOU
    assert parse_tiou("0.3, 0.5,0.7") == [0.3, 0.5, 0.7]
    assert parse_tiou([0.5]) == [0.5] and parse_tiou(0.5) == [0.5]
    for bad in ("", "0.5:0.1:0.1", "a,b", "0.1:0.7", "1.5", "0.1:0.7:0", "nan"):
        with pytest.raises(TadkitError):
            parse_tiou(bad)


def test_result_defaults_and_table():
    gt = make_gt({"v": [(0, 10, "a")]})
    result = evaluate(gt, make_dets([("v", 0, 10, "a", 0.9)]), "thumos14")
    assert result.tiou == THUMOS_TIOU
    assert evaluate(gt, make_dets([]), "activitynet").tiou == ANET_TIOU
    assert evaluate(gt, make_dets([]), "activitynet").mAP == [0.0] * 10
    table = result.format_table()
    assert "100.00" in table and "thumos14" in table and "1 GT instances" in table


# ---------------------------------------------------------------------------------------------
# exact agreement with the reference implementations on real ground truth
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def thumos_test_gt():
    load_annotations = load_annotations_or_skip()
    gt = load_annotations(shared_path("data", "thumos14", "evalkit", "test"))
    assert len(gt.videos) == 213 and gt.num_instances() == 3358 and gt.num_ambiguous() == 99
    return gt


@pytest.fixture(scope="module")
def anet_val_gt():
    load_annotations = load_annotations_or_skip()
    gt = load_annotations(shared_path("data", "activitynet", "v1.3", "bsn", "anet_anno_action.json"),
                          subset="validation")
    assert len(gt.videos) == 4728
    return gt


@pytest.mark.shared
@pytest.mark.parametrize("decimals", [None, 1])  # distinct scores, then heavy ties (documented order)
def test_thumos14_matches_reference_on_real_gt(thumos_test_gt, decimals):
    dets = perturb_gt(thumos_test_gt, np.random.default_rng(14), copies=(0, 3), score_decimals=decimals)
    gt_rows, amb = gt_rows_of(thumos_test_gt)
    ref = reference_thumos14(gt_rows, pred_rows_of(dets), amb, THUMOS_TIOU, classes=thumos_test_gt.classes)
    ours = evaluate(thumos_test_gt, dets, "thumos14", THUMOS_TIOU)
    assert max_diff(ours.per_class, ref) <= 1e-12
    assert ours.mAP == pytest.approx([np.mean([ref[c][t] for c in ref]) for t in range(7)], abs=1e-12)
    assert 0.05 < ours.average_mAP < 0.95  # a real, non-degenerate score
    assert ours.counts["num_videos"] == 213 and ours.counts["unknown_video_preds"] == 1


@pytest.mark.shared
def test_activitynet_protocol_on_thumos_matches_reference(thumos_test_gt):
    dets = perturb_gt(thumos_test_gt, np.random.default_rng(7), copies=(0, 3))
    gt_rows, _ = gt_rows_of(thumos_test_gt)
    ref = reference_activitynet(gt_rows, pred_rows_of(dets), THUMOS_TIOU)
    ours = evaluate(thumos_test_gt, dets, "activitynet", THUMOS_TIOU)
    assert max_diff(ours.per_class, ref) <= 1e-12
    # same detections, other protocol: the numbers must differ (GT-driven, strict >, Ambiguous)
    assert ours.mAP != evaluate(thumos_test_gt, dets, "thumos14", THUMOS_TIOU).mAP


@pytest.mark.shared
def test_activitynet_matches_reference_on_bsn_validation(anet_val_gt):
    dets = perturb_gt(anet_val_gt, np.random.default_rng(13), copies=(0, 3), extra_fp=3000)
    gt_rows, _ = gt_rows_of(anet_val_gt)
    ref = reference_activitynet(gt_rows, pred_rows_of(dets), ANET_TIOU)
    ours = evaluate(anet_val_gt, dets, "activitynet")
    assert len(ours.per_class) == 200
    assert max_diff(ours.per_class, ref) <= 1e-12
    assert ours.average_mAP == pytest.approx(np.mean([np.mean(v) for v in ref.values()]), abs=1e-12)


@pytest.mark.shared
def test_official_sample_submission_on_bsn_validation(anet_val_gt):
    from tadkit.evaluation import load_predictions

    sample = load_predictions(shared_path("data", "activitynet", "predictions", "sample_detection_prediction.json"))
    assert len(sample) == 7654
    # the sample is a copy of the official validation GT: bare ids, 198 videos BSN no longer has
    exact = evaluate(anet_val_gt, sample, "activitynet", unknown_videos="drop")
    assert exact.mAP == [1.0] * 10
    assert exact.counts["pred_ids_renamed"] == 4728
    assert exact.counts["unknown_videos"] == 198 and exact.counts["unknown_video_preds"] == 361
    # official handling (unknown-video predictions are FPs); every score is 1.0, so the
    # documented input-order tie-break decides, and the reference follows the same rule
    official = evaluate(anet_val_gt, sample, "activitynet")
    gt_rows, _ = gt_rows_of(anet_val_gt)
    pred_rows = [(("v_" + v) if ("v_" + v) in anet_val_gt.videos else v, lab, s, e, sc)
                 for v, lab, s, e, sc in pred_rows_of(sample)]
    ref = reference_activitynet(gt_rows, pred_rows, ANET_TIOU)
    assert max_diff(official.per_class, ref) <= 1e-12
    assert 0.9 < official.average_mAP < 1.0
    blocked = evaluate(anet_val_gt, sample, "activitynet", unknown_videos="drop",
                       blocked=shared_path("data", "activitynet", "v1.3", "blocked_videos.json"))
    assert blocked.counts["blocked_videos_dropped"] == 54 and blocked.counts["num_videos"] == 4674
    assert blocked.mAP == [1.0] * 10


A2NET_AF_PATH = ("data", "thumos14", "predictions", "a2net_action_detection_af38.txt")


def a2net_af_file():
    """The released detections file, or a skip naming that one file (not "../shared is missing")."""
    from conftest import SHARED

    if not SHARED.is_dir():
        return shared_path(*A2NET_AF_PATH)  # the whole shared directory is absent: say so
    path = SHARED.joinpath(*A2NET_AF_PATH)
    if not path.is_file():
        pytest.skip(f"needs {path}: A2Net's released anchor-free THUMOS14 detections (LeYangNwpu/A2Net) are not "
                    f"in {SHARED}; the rest of the shared directory is there")
    return path


@pytest.mark.shared
def test_a2net_released_anchor_free_detections_reproduce_table3(thumos_test_gt):
    """Spec reference point: A2Net Table III "AF" row under the THUMOS14 protocol (within 0.05)."""
    from tadkit.evaluation import load_predictions

    dets = load_predictions(a2net_af_file(), class_ids=thumos_test_gt.external_ids)
    result = evaluate(thumos_test_gt, dets, "thumos14", THUMOS_TIOU)
    paper = [52.1, 51.2, 49.2, 44.2, 36.6, 26.0, 15.0]
    assert [100 * m for m in result.mAP] == pytest.approx(paper, abs=0.05)


# ---------------------------------------------------------------------------------------------
# property-based: random small problems agree with the reference, garbage raises TadkitError
# ---------------------------------------------------------------------------------------------

_times = st.floats(min_value=0, max_value=20, allow_nan=False).map(lambda x: round(x * 2) / 2)  # many ties


@st.composite
def small_problem(draw):
    videos = draw(st.lists(st.sampled_from(["v1", "v2", "v_3", "4"]), min_size=1, max_size=4, unique=True))
    gt = {}
    for vid in videos:
        segs = []
        for _ in range(draw(st.integers(0, 4))):
            a, b = sorted((draw(_times), draw(_times)))
            segs.append((a, b, draw(st.sampled_from("ab"))))
        gt[vid] = segs
    amb = {videos[0]: [tuple(sorted((draw(_times), draw(_times))))]} if draw(st.booleans()) else {}
    rows = []
    for _ in range(draw(st.integers(0, 12))):
        a, b = sorted((draw(_times), draw(_times)))
        vid = draw(st.sampled_from(videos + ["zz"]))
        rows.append((vid, a, b, draw(st.sampled_from("abc")), draw(st.integers(0, 5)) / 5))
    return gt, amb, rows


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_problem(), st.sampled_from(["activitynet", "thumos14"]))
def test_fuzz_agrees_with_reference(problem, protocol):
    gt_dict, amb, rows = problem
    gt = make_gt(gt_dict, classes=["a", "b"], ambiguous=amb)
    dets = make_dets(rows)
    thresholds = [0.1, 0.5, 0.7]
    if gt.num_instances() == 0:
        with pytest.raises(TadkitError):
            evaluate(gt, dets, protocol, thresholds)
        return
    ours = evaluate(gt, dets, protocol, thresholds)
    gt_rows, amb_rows = gt_rows_of(gt)
    known = [r for r in pred_rows_of(dets) if r[1] in ("a", "b")]
    if protocol == "activitynet":
        ref = reference_activitynet(gt_rows, known, thresholds)
    else:
        ref = reference_thumos14(gt_rows, known, amb_rows, thresholds, classes=["a", "b"])
    assert max_diff(ours.per_class, ref) <= 1e-12
    assert all(0.0 <= m <= 1.0 for m in ours.mAP)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.text(max_size=3), st.floats(), st.floats(), st.text(max_size=2), st.floats()),
             max_size=6),
    st.sampled_from(["activitynet", "thumos14", "bogus"]),
    st.one_of(st.none(), st.text(max_size=8), st.lists(st.floats(), max_size=3)),
)
def test_fuzz_garbage_either_works_or_raises_tadkit_error(rows, protocol, tiou):
    gt = make_gt({"v": [(0, 10, "a")]})
    try:
        result = evaluate(gt, make_dets(rows), protocol, tiou)
    except TadkitError:
        return
    assert all(0.0 <= m <= 1.0 and not math.isnan(m) for m in result.mAP)


# ---------------------------------------------------------------------------------------------
# building blocks
# ---------------------------------------------------------------------------------------------


def test_tiou_functions_are_bit_identical_to_their_definitions():
    from tadkit.evaluation.matching import tiou_activitynet, tiou_thumos
    from tadkit.ops import tiou_pairwise
    from test_evaluation_reference import matlab_overlap, segment_iou_scalar

    rng = np.random.default_rng(2)
    a = np.sort(np.round(rng.random((300, 2)) * 50, 1), axis=1)  # one decimal, like the GT files
    b = np.sort(np.round(rng.random((300, 2)) * 50, 1), axis=1)
    an = tiou_activitynet(a[:, 0], a[:, 1], b[:, 0], b[:, 1])
    th = tiou_thumos(a[:, 0], a[:, 1], b[:, 0], b[:, 1])
    np.testing.assert_array_equal(an, np.diag(tiou_pairwise(a, b)))
    np.testing.assert_array_equal(an, [segment_iou_scalar(*x, *y) for x, y in zip(a, b)])
    np.testing.assert_array_equal(th, [matlab_overlap(*x, *y) for x, y in zip(a, b)])
    # the two formulas are equal in exact arithmetic but not always in floating point
    assert np.any(an != th) and np.allclose(an, th, rtol=0, atol=1e-15)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.integers(0, 5), max_size=4, unique=True), max_size=8), st.integers(1, 3))
def test_greedy_first_free_equals_the_sequential_loop(prefs, n_groups):
    from tadkit.evaluation.matching import greedy_first_free

    # agent a belongs to group a % n_groups and prefers items (group, i) in the listed order
    expected_agent = [-1] * len(prefs)
    taken = set()
    for a, pref in enumerate(prefs):
        for i in pref:
            if (a % n_groups, i) not in taken:
                taken.add((a % n_groups, i))
                expected_agent[a] = (a % n_groups) * 6 + i
                break
    rows = [(a % n_groups, a, (a % n_groups) * 6 + i) for a, pref in enumerate(prefs) for i in pref]
    rows.sort(key=lambda r: (r[0], r[1]))  # stable: preference order kept inside an agent
    group, agent, item = (np.array([r[k] for r in rows], dtype=np.int64) for k in range(3))
    agent_item, item_agent = greedy_first_free(group, agent, item, len(prefs), 6 * n_groups)
    assert agent_item.tolist() == expected_agent
    for a, it in enumerate(expected_agent):
        if it >= 0:
            assert item_agent[it] == a
    assert int((item_agent >= 0).sum()) == sum(1 for it in expected_agent if it >= 0)
