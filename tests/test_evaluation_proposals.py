"""Proposal AR@AN / AUC against the loop restatement of eval_proposal.py."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import shared_path
from tadkit.data.records import AnnotationSet
from tadkit.errors import TadkitError
from tadkit.evaluation import evaluate_proposals
from test_evaluation_reference import gt_rows_of, make_dets, make_gt, reference_proposals

TIOU = np.round(np.arange(10) * 0.05 + 0.5, 10)


def test_by_hand():
    gt = make_gt({"a": [(0, 10, "x")], "b": [(0, 10, "x")]})
    props = make_dets([("a", 0, 10, "y", 0.9), ("a", 50, 60, "y", 0.1),
                       ("b", 50, 60, "y", 0.8), ("b", 0, 10, "y", 0.2)])
    result = evaluate_proposals(gt, props, [0.5], max_avg_nr_proposals=2)
    # AN 1: each video keeps its best proposal -> a recalled, b not; AN 2: both recalled
    assert result.average_nr_proposals[49] == pytest.approx(1.0)
    assert result.average_recall[49] == 0.5 and result.average_recall[-1] == 1.0
    assert result.ar_at[1] == 0.5
    # AR is 0 for AN < 1, 0.5 for 1 <= AN < 2, 1 at AN = 2 (points every 0.02): trapezoids give
    # 0.005 + 0.5 * 0.98 + 0.015 = 0.51, reported as 100 * 0.51 / 2
    assert result.area == pytest.approx(0.51, abs=1e-12)
    assert result.auc == pytest.approx(25.5, abs=1e-10)


def test_labels_are_ignored_and_unknown_videos_count_in_the_budget():
    gt = make_gt({"a": [(0, 10, "x")]})
    props = make_dets([("a", 0, 10, "whatever", 0.9)])
    assert evaluate_proposals(gt, props, [0.5], max_avg_nr_proposals=1).average_recall[-1] == 1.0
    # a second proposal on a video without GT doubles the total: ratio 0.5 -> int(1 * 0.5) = 0 kept
    with pytest.raises(TadkitError, match="budget"):
        evaluate_proposals(gt, make_dets([("a", 0, 10, "x", 0.9), ("zz", 0, 1, "x", 0.1)]), [0.5],
                           max_avg_nr_proposals=1)
    with pytest.raises(TadkitError, match="no proposals"):
        evaluate_proposals(gt, make_dets([]), [0.5])


@pytest.fixture(scope="module")
def anet_subset():
    try:
        from tadkit.data.annotations import load_annotations
    except ImportError:
        pytest.skip("tadkit.data.annotations.load_annotations is not available")
    gt = load_annotations(shared_path("data", "activitynet", "v1.3", "bsn", "anet_anno_action.json"),
                          subset="validation")
    vids = list(gt.videos)[:150]
    return AnnotationSet({v: gt.videos[v] for v in vids}, gt.classes, source=gt.source, format=gt.format)


def random_proposals(gt, rng):
    rows = []
    for vid, ann in gt.videos.items():
        if rng.random() < 0.05:
            continue  # a GT video without proposals (padded with one tIoU-0 column officially)
        dur = ann.duration or 120.0
        for _ in range(rng.integers(1, 140)):
            if ann.segments and rng.random() < 0.3:
                seg = ann.segments[rng.integers(len(ann.segments))]
                s, e = seg.start + rng.normal(0, 3), seg.end + rng.normal(0, 3)
            else:
                s = rng.random() * dur
                e = s + rng.random() * dur / 2
            rows.append((vid, min(s, e), max(s, e), "p", rng.random()))
    rows.append(("not_a_gt_video", 0.0, 1.0, "p", 0.5))
    return make_dets(rows)


@pytest.mark.shared
@pytest.mark.parametrize("max_avg", [100, 37, None])
def test_matches_reference_on_bsn_validation(anet_subset, max_avg):
    props = random_proposals(anet_subset, np.random.default_rng(3))
    ours = evaluate_proposals(anet_subset, props, TIOU, max_avg_nr_proposals=max_avg)
    gt_rows, _ = gt_rows_of(anet_subset)
    prop_rows = list(zip(props.video.tolist(), props.start.tolist(), props.end.tolist(), props.score.tolist()))
    recall, avg, an = reference_proposals(gt_rows, prop_rows, max_avg, TIOU)
    np.testing.assert_allclose(ours.recall, recall, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours.average_recall, avg, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours.average_nr_proposals, an, rtol=0, atol=1e-12)
    assert ours.auc == pytest.approx(100 * np.trapezoid(avg, an) / an[-1], abs=1e-9)
    assert 0.1 < ours.average_recall[-1] < 1.0
    if max_avg == 100:
        assert sorted(ours.ar_at) == [1, 5, 10, 50, 100]
        assert ours.ar_at[100] == pytest.approx(avg[99], abs=1e-12)
