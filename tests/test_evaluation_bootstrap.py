"""Bootstrap over videos: exactness of the re-weighting, intervals, the paired test, the CLI JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import shared_path
from tadkit.cli import main
from tadkit.data.records import DetectionSet, VideoAnnotation
from tadkit.evaluation import evaluate, write_thumos_txt
from tadkit.evaluation.bootstrap import RankedTables, bootstrap, compare, draw_counts
from tadkit.evaluation.problem import prepare
from test_evaluation_reference import perturb_gt


@pytest.fixture(scope="module")
def thumos():
    from tadkit.data.annotations import load_annotations

    gt = load_annotations(shared_path("data", "thumos14", "evalkit", "test"))
    return gt, perturb_gt(gt, np.random.default_rng(0), copies=(0, 3))


@pytest.fixture(scope="module")
def anet():
    from tadkit.data.annotations import load_annotations

    gt = load_annotations(shared_path("data", "activitynet", "v1.3", "bsn", "anet_anno_action.json"),
                          subset="validation")
    return gt, perturb_gt(gt, np.random.default_rng(1), copies=(0, 3), extra_fp=2000)


def materialize(gt, dets, counts, names):
    """The replicate spelled out: video v copied counts[v] times (GT and predictions)."""
    code = {n: i for i, n in enumerate(names)}
    videos = {}
    for vid, ann in gt.videos.items():
        for c in range(counts[code[vid]]):
            videos[f"{vid}#{c}"] = VideoAnnotation(f"{vid}#{c}", ann.subset, segments=list(ann.segments),
                                                   ambiguous=list(ann.ambiguous))
    rows = []
    for i, vid in enumerate(dets.video.tolist()):
        copies = [f"{vid}#{c}" for c in range(counts[code[vid]])] if vid in code else [vid]
        rows += [(v, i) for v in copies]
    idx = np.array([i for _, i in rows])
    video = np.empty(len(rows), object)
    video[:] = [v for v, _ in rows]
    return gt.with_videos(videos), DetectionSet(video, dets.start[idx], dets.end[idx], dets.label[idx],
                                                dets.score[idx])


@pytest.mark.shared
@pytest.mark.parametrize("which,protocol", [("thumos", "thumos14"), ("anet", "activitynet"),
                                            ("thumos", "activitynet")])
def test_unit_weights_equal_plain_map_and_a_replicate_equals_its_materialized_copy(which, protocol, request):
    gt, dets = request.getfixturevalue(which)
    plain = evaluate(gt, dets, protocol)
    p = prepare(gt, dets)
    tables = RankedTables.build(p, protocol, plain.tiou)
    ap, _ = tables.ap(np.ones((1, p.num_gt_videos)))
    assert ap[0].mean(axis=1).tolist() == plain.mAP  # bit for bit
    assert tables.map(np.ones((1, p.num_gt_videos)))[0].tolist() == plain.mAP
    counts = draw_counts(p.num_gt_videos, 2, seed=3)
    fast = tables.map(counts)
    for b in range(2):
        g2, d2 = materialize(gt, dets, counts[b], p.video_names[: p.num_gt_videos])
        slow = evaluate(g2, d2, protocol).mAP
        assert np.max(np.abs(fast[b] - slow)) < 1e-12
        assert fast[b].tolist() != plain.mAP  # a real resample, not the identity


@pytest.mark.shared
@pytest.mark.parametrize("which,protocol", [("thumos", "thumos14"), ("anet", "activitynet")])
def test_interval_contains_the_point_estimate_and_is_seeded(which, protocol, request):
    gt, dets = request.getfixturevalue(which)
    res, boot = bootstrap(gt, dets, protocol, n_resamples=200, seed=7)
    assert res.mAP == evaluate(gt, dets, protocol).mAP
    for m, (lo, hi), std in zip(res.mAP, boot.mAP_ci, boot.mAP_std):
        assert lo <= m <= hi and 0 < hi - lo < 0.2 and std > 0
    assert boot.average_mAP_ci[0] <= res.average_mAP <= boot.average_mAP_ci[1]
    again = bootstrap(gt, dets, protocol, n_resamples=200, seed=7)[1]
    assert again.to_dict() == boot.to_dict()
    assert bootstrap(gt, dets, protocol, n_resamples=200, seed=8)[1].mAP_ci != boot.mAP_ci


@pytest.mark.shared
def test_compare_with_itself_and_with_a_worse_file(thumos):
    gt, dets = thumos
    _, _, same = compare(gt, dets, dets, "thumos14", n_resamples=100)
    assert same.difference == [0.0] * 7 and same.average_difference == 0.0
    assert same.p_value == [1.0] * 7 and same.average_p_value == 1.0
    assert all(lo == hi == 0.0 for lo, hi in same.difference_ci)
    # B = A with half of its true detections removed: clearly worse, small p
    worse = dets.select(np.r_[np.ones(len(dets) // 2, bool), np.zeros(len(dets) - len(dets) // 2, bool)])
    ra, rb, cmp = compare(gt, dets, worse, "thumos14", n_resamples=200)
    assert cmp.average_difference == pytest.approx(rb.average_mAP - ra.average_mAP) and cmp.average_difference < 0
    assert cmp.average_p_value < 0.01 and cmp.average_p_b_not_better == 1.0
    assert all(hi < 0 for _, hi in cmp.difference_ci)


def test_bad_arguments():
    from tadkit.errors import TadkitError
    from test_evaluation_reference import make_dets, make_gt

    gt, dets = make_gt({"a": [(0, 1, "x")]}), make_dets([("a", 0, 1, "x", 0.5)])
    with pytest.raises(TadkitError, match="resamples"):
        bootstrap(gt, dets, "activitynet", n_resamples=0)
    with pytest.raises(TadkitError, match="confidence"):
        bootstrap(gt, dets, "activitynet", n_resamples=10, confidence=1.5)


@pytest.mark.shared
def test_cli_bootstrap_and_compare_json(thumos, tmp_path, capsys):
    gt, dets = thumos
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    write_thumos_txt(dets.select(dets.video != "video_not_in_gt"), a, gt.external_ids)
    write_thumos_txt(dets.select(dets.video != "video_not_in_gt"), b, gt.external_ids)
    base = ["eval", "--gt", str(shared_path("data", "thumos14", "evalkit", "test")), "--protocol", "thumos14",
            "--subset", "test", "--format", "json", "--bootstrap", "50"]
    assert main(base + ["--pred", str(a)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {"protocol", "subset", "tiou", "mAP", "average_mAP", "per_class", "counts", "bootstrap"} <= set(data)
    assert len(data["bootstrap"]["mAP_ci"]) == 7 and data["bootstrap"]["n_resamples"] == 50
    assert main(base + ["--compare", str(a), str(b)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {"mAP", "average_mAP", "per_class", "baseline", "compare"} <= set(data)
    assert data["compare"]["p_value"] == [1.0] * 7 and data["baseline"]["mAP"] == data["mAP"]


def test_bias_corrected_interval_stays_inside_the_metric_range():
    """One true positive at high tIoU, ranked below every false positive: 36 % of the replicates
    miss its video (mAP 0) while the interpolated AP of a drawn-twice copy rises, so the bias is
    positive and the shifted low bound used to fall below 0 %."""
    from tadkit.data.records import AnnotationSet, Segment

    n = 20
    videos = {f"v{i}": VideoAnnotation(f"v{i}", "test", 100.0, segments=[Segment(10.0, 20.0, "a")])
              for i in range(n)}
    start, score = np.full(n, 12.0), np.full(n, 0.9)  # tIoU 0.8 everywhere ...
    start[0], score[0] = 10.0, 0.1  # ... but one exact, lowest-scored detection
    dets = DetectionSet(np.array(list(videos), object), start, np.full(n, 20.0), np.full(n, "a", object), score)
    res, boot = bootstrap(AnnotationSet(videos, ["a"]), dets, "activitynet", n_resamples=200, seed=0)
    top = res.tiou.index(0.95)
    assert boot.mAP_ci_percentile[top][0] == 0.0 and boot.mAP_bias[top] > 0  # the case that went negative
    for low, high in boot.mAP_ci + [boot.average_mAP_ci]:
        assert 0.0 <= low <= high <= 1.0
    assert boot.mAP_ci[top][0] == 0.0
    assert boot.mAP_ci[top][1] == pytest.approx(boot.mAP_ci_percentile[top][1] - boot.mAP_bias[top])
