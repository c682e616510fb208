"""Paper protocol presets, ACRNet's Ambiguous deletion, named video lists, the A2Net Table I
analysis (a2net-table1) and official-format proposals, each against a loop restatement of the
official code on the real files in ../shared."""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
import pytest

from conftest import shared_path
from tadkit.cli import main
from tadkit.evaluation import evaluate, write_thumos_txt
from tadkit.evaluation.analysis import a2net_table1_breakdown, duration_breakdown
from tadkit.evaluation.presets import (
    PROTOCOL_PRESETS,
    THUMOS14_TEST_EXCLUDED,
    drop_ambiguous_overlaps,
    evaluate_all_presets,
    evaluate_preset,
    matlab_colon,
)
from test_evaluation_reference import (
    make_dets,
    make_gt,
    perturb_gt,
    pred_rows_of,
    reference_activitynet,
    reference_proposals,
    reference_thumos14,
)


@pytest.fixture(scope="module")
def evalkit_dir():
    return shared_path("data", "thumos14", "evalkit", "test")


@pytest.fixture(scope="module")
def thumos(evalkit_dir):
    from tadkit.data.annotations import load_annotations

    return load_annotations(evalkit_dir)


@pytest.fixture(scope="module")
def detections(thumos):
    # realistic: jittered copies of the GT, wrong labels, duplicates, random false positives (also on
    # Ambiguous-only videos and on the 3 videos some lists exclude), one unknown video; 4-decimal
    # scores make ties, as real files have
    return perturb_gt(thumos, np.random.default_rng(13), copies=(0, 3), extra_fp=400, score_decimals=4)


# ----------------------------------------------------------------------------------------------
# small pieces
# ----------------------------------------------------------------------------------------------
def test_matlab_colon_values():
    v = matlab_colon(0.1, 0.1, 0.7)
    assert len(v) == 7 and v[0] == 0.1 and v[-1] == 0.7
    assert v[2] == 0.1 + 2 * 0.1 == 0.30000000000000004  # from the start
    assert v[4] == 0.7 - 2 * 0.1 == 0.49999999999999994  # from the end
    assert v[3] == (0.1 + 0.7) / 2  # midpoint of an even number of steps
    assert PROTOCOL_PRESETS["a2net"].tiou == tuple(v)
    assert PROTOCOL_PRESETS["acrnet"].tiou == (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)


def test_matlab_threshold_decides_a_tiou_of_exactly_one_half():
    gt = make_gt({"v": [(10.0, 12.0, "Diving")]}, ambiguous={"w": [(0.0, 1.0)]})
    dets = make_dets([("v", 10.0, 11.0, "Diving", 0.9)])  # tIoU = 1/2 exactly
    plain = evaluate(gt, dets, "thumos14", tiou_thresholds=[0.5])
    assert plain.mAP == [0.0]  # TH14evalDet: tIoU > 0.5 fails
    res = evaluate_preset(gt, dets, "a2net", subset="test")
    assert res.result.mAP[4] == 1.0  # ... but MATLAB's 0.1:0.1:0.7 holds 0.49999999999999994


def test_drop_ambiguous_overlaps_by_hand():
    gt = make_gt({"v": [(0.0, 5.0, "x")]}, ambiguous={"v": [(10.0, 20.0)], "w": [(0.0, 1.0)]})
    dets = make_dets([("v", 5.0, 10.0, "x", 0.9),  # touches the start: kept
                      ("v", 9.0, 10.5, "x", 0.8),  # overlaps: deleted
                      ("v", 20.0, 30.0, "y", 0.7),  # touches the end: kept
                      ("w", 0.5, 0.6, "x", 0.6),  # inside, other video: deleted
                      ("z", 0.0, 100.0, "x", 0.5)])  # video without Ambiguous: kept
    kept, deleted = drop_ambiguous_overlaps(gt, dets)
    assert deleted == 2
    assert kept.score.tolist() == [0.9, 0.7, 0.5]


def test_preset_needs_ambiguous_segments():
    from tadkit.errors import TadkitError

    gt = make_gt({"v": [(0.0, 5.0, "Diving")]})
    with pytest.raises(TadkitError, match="Ambiguous"):
        evaluate_preset(gt, make_dets([("v", 0.0, 5.0, "Diving", 0.9)]), "acrnet", subset="test")


def test_one_rule_a_preset_scores_the_dataset_it_was_written_for():
    """THUMOS14 presets need THUMOS14 classes, -anet presets anything else; --all-presets picks the
    ground truth's own (ActivityNet-like GT used to run ecm / afsd at THUMOS tIoUs and refuse a2net)."""
    from tadkit.errors import TadkitError
    from tadkit.evaluation.presets import ground_truth_dataset

    anet = make_gt({"v": [(0.0, 5.0, "Rock climbing")]}, subset="validation")
    thumos = make_gt({"v": [(0.0, 5.0, "Diving")]})
    assert ground_truth_dataset(anet) == "activitynet" and ground_truth_dataset(thumos) == "thumos14"
    for name in ("a2net", "afsd", "ecm", "acrnet"):
        with pytest.raises(TadkitError, match=f"use --preset {name}-anet"):
            evaluate_preset(anet, make_dets([("v", 0.0, 5.0, "Rock climbing", 0.9)]), name)
        with pytest.raises(TadkitError, match=f"use --preset {name} "):
            evaluate_preset(thumos, make_dets([("v", 0.0, 5.0, "Diving", 0.9)]), f"{name}-anet")
    results = evaluate_all_presets(anet, make_dets([("v", 0.0, 4.6, "Rock climbing", 0.9)]))
    assert [r.preset for r in results] == ["a2net-anet", "afsd-anet", "ecm-anet", "acrnet-anet"]
    for r in results:
        assert r.result.tiou == [float(t) for t in np.linspace(0.5, 0.95, 10)]
        assert r.result.mAP == [1.0] * 9 + [0.0]  # tIoU 0.92: matched up to 0.9, not at 0.95


# ----------------------------------------------------------------------------------------------
# presets against loop restatements of each official evaluator, on the real THUMOS14 test GT
# ----------------------------------------------------------------------------------------------
def _evalkit_rows(thumos, exclude=()):
    rows, amb = [], {}
    for vid, ann in thumos.videos.items():
        if vid in exclude:
            continue
        rows += [(vid, s.label, s.start, s.end) for s in ann.segments]
        if ann.ambiguous:
            amb[vid] = list(ann.ambiguous)
    return rows, amb


def _mean_ap(per_class, n_t):
    return [float(np.mean([aps[t] for aps in per_class.values()])) for t in range(n_t)]


@pytest.mark.shared
def test_presets_match_official_restatements(thumos, detections):
    preds = pred_rows_of(detections)
    excluded = set(THUMOS14_TEST_EXCLUDED)
    assert sum(r[0] in excluded for r in preds) > 0  # the list matters for these detections
    results = {r.preset: r for r in evaluate_all_presets(thumos, detections)}

    # a2net: TH14evalDet on the 213 evalkit videos, with MATLAB's threshold values
    rows, amb = _evalkit_rows(thumos)
    thr = matlab_colon(0.1, 0.1, 0.7)
    ref = _mean_ap(reference_thumos14(rows, preds, amb, thr), len(thr))
    np.testing.assert_allclose(results["a2net"].mAP, ref, rtol=0, atol=1e-12)
    assert results["a2net"].result.counts["num_videos"] == 213

    # afsd / ecm: eval_detection.py on thumos_gt.json (210 videos, no Ambiguous); AFSD's reader skips
    # predictions on videos without GT, ECM's counts them as false positives
    rows210, _ = _evalkit_rows(thumos, excluded)
    gt_videos = {r[0] for r in rows210}
    afsd_thr = [0.3, 0.4, 0.5, 0.6, 0.7]
    ref = _mean_ap(reference_activitynet(rows210, [r for r in preds if r[0] in gt_videos], afsd_thr), 5)
    np.testing.assert_allclose(results["afsd"].mAP, ref, rtol=0, atol=1e-12)
    ecm_thr = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    ref = _mean_ap(reference_activitynet(rows210, preds, ecm_thr), 9)
    np.testing.assert_allclose(results["ecm"].mAP, ref, rtol=0, atol=1e-12)
    assert results["ecm"].mAP[0] < results["afsd"].mAP[0] + 1  # sanity: both ran

    # acrnet: filter_results (every prediction overlapping an Ambiguous segment), 3 videos never run
    def overlaps(r):
        return any(max(a0, r[2]) < min(a1, r[3]) for a0, a1 in amb.get(r[0], []))

    kept = [r for r in preds if not overlaps(r) and r[0] not in excluded]
    ref = _mean_ap(reference_activitynet(rows210, kept, [float(t) for t in np.linspace(0.1, 0.7, 7)]), 7)
    np.testing.assert_allclose(results["acrnet"].mAP, ref, rtol=0, atol=1e-12)
    assert results["acrnet"].ambiguous_deleted == sum(overlaps(r) for r in preds) > 0

    # the four protocols really differ on the same detections, and every report names its preset
    assert len({round(r.result.mAP[r.result.tiou.index(0.5) if 0.5 in r.result.tiou else 4], 6)
                for r in results.values()}) == 4
    for name, r in results.items():
        assert r.format_table().startswith(f"preset {name} ")
        assert r.to_dict()["preset"] == name


# ----------------------------------------------------------------------------------------------
# A2Net Table I: loop restatement of GT_sort_by_action_duration.py +
# pre_postprocess_by_GT_action_duration.py + TH14evalDet per bin
# ----------------------------------------------------------------------------------------------
def official_table1(evalkit_dir, pred_rows, threshold=0.5):
    classes = [line.split()[1] for line in (evalkit_dir / "detclasslist.txt").read_text().splitlines() if line.strip()]
    segment = {}
    for cname in classes:  # class files in class-list order, line by line
        for line in (evalkit_dir / f"{cname}_test.txt").read_text().splitlines():
            if not line.strip():
                continue
            f = line.split()
            segment.setdefault(f[0], []).append([float(f[1]), float(f[2]), cname])
    for vid in segment:
        segment[vid].sort(key=lambda x: x[0])
    action = [[vid, a[0], a[1], a[2], a[1] - a[0]] for vid, anns in segment.items() for a in anns]
    action.sort(key=lambda a: a[4])
    num = len(action)
    d = [0, int(num * 0.2), int(num * 0.4), int(num * 0.6), int(num * 0.8), num]
    amb = defaultdict(list)
    for line in (evalkit_dir / "Ambiguous_test.txt").read_text().splitlines():
        if line.strip():
            f = line.split()
            amb[f[0]].append((float(f[1]), float(f[2])))
    bins = defaultdict(list)
    for vid, label, s, e, score in pred_rows:
        iou_max, best = 0, None
        for j, a in enumerate(action):
            if a[0] != vid:
                continue
            inter = max(min(e, a[2]) - max(s, a[1]), 0.0)
            iou = inter / (max(e, a[2]) - min(s, a[1]))
            if iou > iou_max:
                iou_max, best = iou, j
        if best is None:
            continue
        k = next(k for k in range(5) if d[k] <= best < d[k + 1]) if best < num else 4
        bins[k].append((vid, label, float("%.3f" % s), float("%.3f" % e), float("%.4f" % score)))
    out = []
    for k in range(5):
        gt_rows = [(a[0], a[3], float("%.3f" % a[1]), float("%.3f" % a[2])) for a in action[d[k]:d[k + 1]]]
        bin_classes = [c for c in classes if any(r[1] == c for r in gt_rows)]  # edited detclasslist
        # TH14evalDet reads the GT class by class (file = sorted order): group rows by class, stable
        gt_rows = [r for c in bin_classes for r in gt_rows if r[1] == c]
        preds = [r for r in bins[k] if r[1] in bin_classes]
        aps = reference_thumos14(gt_rows, preds, dict(amb), [threshold], classes=bin_classes)
        out.append(float(np.mean([v[0] for v in aps.values()])))
    return out, [len(bins[k]) for k in range(5)]


@pytest.mark.shared
def test_a2net_table1_matches_official_analysis(evalkit_dir, thumos):
    # 5-decimal times and 6-decimal scores: the official %.3f / %.4f rounding changes them
    rng = np.random.default_rng(5)
    dets = perturb_gt(thumos, rng, copies=(0, 2), extra_fp=300)
    dets.start[:] = np.round(dets.start, 5)
    dets.end[:] = np.round(dets.end, 5)
    dets.score[:] = np.round(dets.score, 6)
    ref, ref_counts = official_table1(evalkit_dir, pred_rows_of(dets))
    ours = a2net_table1_breakdown(thumos, dets, subset="test")
    print("a2net-table1 mAP@0.5 per bin:", [round(100 * b.mAP[0], 2) for b in ours.bins],
          "reference:", [round(100 * v, 2) for v in ref])
    np.testing.assert_allclose([b.mAP[0] for b in ours.bins], ref, rtol=0, atol=1e-12)
    assert list(ours.counts["preds_per_bin"].values()) == ref_counts
    assert [b.num_gt for b in ours.bins] == [671, 672, 671, 672, 672]  # 3358 GT cut at int(q*n)
    # equal-count bins by rank are not the fixed-second bins: the two presets differ
    seconds = duration_breakdown(thumos, dets, subset="test")
    assert [b.num_gt for b in seconds.bins] != [b.num_gt for b in ours.bins]


@pytest.mark.shared
def test_cli_duration_bins_and_compare_plot(evalkit_dir, thumos, tmp_path, capsys):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    dets = perturb_gt(thumos, np.random.default_rng(1), copies=(0, 2), extra_fp=100, unknown_video=False)
    write_thumos_txt(dets, a)
    write_thumos_txt(dets.select(np.arange(len(dets)) % 2 == 0), b)
    png = tmp_path / "fig1.png"
    code = main(["eval", "--gt", str(evalkit_dir), "--pred", str(a), "--subset", "test", "--duration-bins",
                 "a2net-table1", "--compare-bins", str(b), "--labels", "all", "half", "--plot", str(png),
                 "--format", "json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and png.stat().st_size > 10_000
    ours = a2net_table1_breakdown(thumos, dets, subset="test")
    assert out["breakdowns"]["all"]["bins"][0]["mAP"] == ours.bins[0].mAP
    assert out["breakdowns"]["half"]["bins"][0]["mAP"] != ours.bins[0].mAP


@pytest.mark.shared
def test_cli_presets(evalkit_dir, thumos, tmp_path, capsys):
    path = tmp_path / "d.txt"
    dets = perturb_gt(thumos, np.random.default_rng(2), copies=(0, 2), extra_fp=100, unknown_video=False)
    write_thumos_txt(dets, path)
    assert main(["eval", "--gt", str(evalkit_dir), "--pred", str(path), "--subset", "test", "--all-presets"]) == 0
    text = capsys.readouterr().out
    for name in [n for n, p in PROTOCOL_PRESETS.items() if p.dataset == "thumos14"]:
        assert f"\n{name} " in text and f"preset {name} (" in text
    assert "-anet" not in text
    assert main(["eval", "--gt", str(evalkit_dir), "--pred", str(path), "--subset", "test", "--preset", "acrnet",
                 "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["preset"] == "acrnet" and out["counts"]["num_videos"] == 210
    assert out["mAP"] == evaluate_preset(thumos, dets, "acrnet").mAP
    # --drop-ambiguous + --video-list with the plain protocol equals the acrnet preset
    assert main(["eval", "--gt", str(evalkit_dir), "--pred", str(path), "--subset", "test", "--protocol",
                 "activitynet", "--tiou", "0.1:0.7:0.1", "--drop-ambiguous", "--video-list", "thumos14-test-210",
                 "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["mAP"] == out["mAP"]  # one JSON object on stdout
    assert "deleted" in captured.err and "thumos14-test-210" in captured.err


# ----------------------------------------------------------------------------------------------
# proposals in the official format (no label), real ActivityNet v1.3 validation GT
# ----------------------------------------------------------------------------------------------
@pytest.mark.shared
def test_cli_official_proposal_format_matches_eval_proposal(tmp_path, capsys):
    from tadkit.data.annotations import load_annotations

    full = load_annotations(shared_path("data", "activitynet", "v1.3", "bsn", "anet_anno_action.json"),
                            subset="validation")
    gt = full.with_videos(dict(list(full.videos.items())[:300]))
    gt_path = tmp_path / "gt.json"  # 300 real validation videos in the ActivityNet format
    gt_path.write_text(json.dumps({"database": {
        vid: {"subset": "validation", "duration": ann.duration,
              "annotations": [{"segment": [s.start, s.end], "label": s.label} for s in ann.segments]}
        for vid, ann in gt.videos.items()}}))
    rng = np.random.default_rng(7)
    results, prop_rows = {}, []
    for vid, ann in gt.videos.items():
        dur = ann.duration or 100.0
        items = []
        for _ in range(100):  # 100 per video: ratio 1, AN = j exactly, int(100 * 0.29) = 28 (the AN=29 quirk)
            if ann.segments and rng.random() < 0.3:
                seg = ann.segments[rng.integers(len(ann.segments))]
                s, e = sorted((seg.start + rng.normal(0, 2), seg.end + rng.normal(0, 2)))
            else:
                s = rng.random() * dur
                e = s + rng.random() * dur / 3
            items.append({"segment": [s, e], "score": float(rng.random())})
            prop_rows.append((vid, s, e, items[-1]["score"]))
        results[vid] = items
    pred = tmp_path / "proposals.json"
    pred.write_text(json.dumps({"version": "VERSION 1.3", "results": results, "external_data": {}}))
    code = main(["eval", "--gt", str(gt_path), "--pred", str(pred), "--subset", "validation", "--proposals",
                 "--format", "json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    gt_rows = [(vid, s.label, s.start, s.end) for vid, ann in gt.videos.items() for s in ann.segments]
    tiou = np.round(np.arange(10) * 0.05 + 0.5, 10)
    recall, avg, an = reference_proposals(gt_rows, prop_rows, 100, tiou)
    np.testing.assert_allclose(out["average_recall"], avg, rtol=0, atol=1e-12)
    np.testing.assert_allclose(out["average_nr_proposals"], an, rtol=0, atol=1e-12)
    assert out["auc"] == pytest.approx(100 * np.trapezoid(avg, an) / an[-1], abs=1e-9)
    # the quirk is really exercised: at AN = 29 the official code keeps int(100 * 0.29) = 28 proposals
    assert out["average_nr_proposals"][28] == pytest.approx(29.0) and int(100 * (29 / 100.0)) == 28
    assert 0.2 < avg[-1] < 0.99
    print(f"proposals: AR@100 {100 * avg[-1]:.2f}, AUC {out['auc']:.2f}")
