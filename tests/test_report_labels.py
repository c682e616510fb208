"""Issue 18 point 10: report labels say what was scored, `eval --help` agrees with itself, `--compare`
labels both tables and never prints p = 0, and every summary averages one tIoU range per dataset kind."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import pytest

from conftest import shared_path
from tadkit.cli import main
from tadkit.data.annotations import load_annotations
from tadkit.data.records import DetectionSet
from tadkit.evaluation import evaluate
from tadkit.evaluation.detection import SUMMARY_TIOU, dataset_kind, parse_tiou, summary_tiou, tiou_range_text

CLASSES = ("Jump", "Throw")


def write_gt(path: Path, videos: int = 24, version: str = "THUMOS14-like v2") -> Path:
    """ActivityNet-format JSON (the format THUMOS-derived releases such as ActionFormer's use)."""
    database = {}
    for v in range(videos):
        segments = [{"segment": [10.0 + 20 * k, 16.0 + 20 * k + v % 3], "label": CLASSES[(v + k) % 2]}
                    for k in range(3)]
        database[f"video_test_{v:07d}"] = {"subset": "test", "duration": 80.0, "annotations": segments}
    path.write_text(json.dumps({"version": version, "database": database}))
    return path


def write_pred(path: Path, gt_path: Path, shift: float) -> Path:
    """Every GT segment predicted once, moved by ``shift`` seconds (0 = perfect)."""
    database = json.loads(gt_path.read_text())["database"]
    results = {vid: [{"segment": [a["segment"][0] + shift, a["segment"][1] + shift], "label": a["label"],
                      "score": 0.9 - 0.1 * k} for k, a in enumerate(info["annotations"])]
               for vid, info in database.items()}
    path.write_text(json.dumps({"version": "VERSION 1.3", "results": results}))
    return path


def test_video_list_names_the_file_its_version_and_subset_not_the_reader(tmp_path):
    gt = load_annotations(write_gt(tmp_path / "thumos_like.json"), subset="test")
    result = evaluate(gt, DetectionSet.empty(), "thumos14", subset="test")
    assert result.video_list.startswith("thumos_like.json [THUMOS14-like v2] test: 24 videos, ids ")
    assert "activitynet" not in result.video_list
    first_line = result.format_table().splitlines()[0]
    assert "videos: thumos_like.json [THUMOS14-like v2] test: 24 videos" in first_line
    unversioned = tmp_path / "plain.json"
    unversioned.write_text(json.dumps({k: v for k, v in json.loads((tmp_path / "thumos_like.json").read_text()).items()
                                       if k != "version"}))
    plain = evaluate(load_annotations(unversioned), DetectionSet.empty(), "thumos14", subset="test")
    assert plain.video_list.startswith("plain.json [activitynet format] test: 24 videos")


@pytest.mark.shared
def test_video_list_on_real_thumos_json_names_its_version():
    path = shared_path("data", "thumos14", "actionformer", "thumos14.json")
    gt = load_annotations(path, subset="test")
    result = evaluate(gt, DetectionSet.empty(), "activitynet", subset="test")
    assert result.video_list.startswith("thumos14.json [Thumos14-30fps] Test: 212 videos")


def _eval_parser() -> argparse.ArgumentParser:
    from tadkit.commands import eval as eval_command

    sub = argparse.ArgumentParser().add_subparsers()
    eval_command.register(sub)
    return sub.choices["eval"]


def test_eval_help_names_one_default_duration_rule():
    actions = {a.dest: a for a in _eval_parser()._actions}
    analysis, bins = actions["analysis"].help, actions["duration_bins"].help
    assert "Table I bins" not in analysis  # the old wording said --analysis used A2Net Table I's bins
    assert "default 'seconds'" in analysis
    assert "'seconds' (default, also for --analysis)" in bins and "'a2net-table1'" in bins
    # the ranges the help quotes are the ranges the 'seconds' rule uses
    from tadkit.evaluation.analysis import a2net_duration_bins

    for name, low, high in a2net_duration_bins():
        edge = f"{high:g}" if name != "EL" else f"{low:g}"
        assert re.search(rf"\b{name} [<>=0-9.-]*{re.escape(edge)}", bins), (name, bins)


def test_compare_labels_both_tables_and_writes_p_below_one_over_n(tmp_path, capsys):
    gt = write_gt(tmp_path / "gt.json")
    good, bad = write_pred(tmp_path / "good.json", gt, 0.0), write_pred(tmp_path / "bad.json", gt, 4.0)
    code = main(["eval", "--gt", str(gt), "--subset", "test", "--protocol", "thumos14", "--bootstrap", "200",
                 "--compare", str(good), str(bad)])
    out = capsys.readouterr().out
    assert code == 0
    blocks = out.split("\n\n")
    assert blocks[0].splitlines()[0] == f"A = {good}" and blocks[0].splitlines()[1].startswith("protocol thumos14")
    assert blocks[1].splitlines()[0] == f"B = {bad}" and blocks[1].splitlines()[1].startswith("protocol thumos14")
    p_row = next(line for line in out.splitlines() if line.startswith("p (2-sided)"))
    # B is worse on every resample at the tIoUs the shift breaks: p cannot be resolved below 1/200
    assert "<1/200" in p_row and "0.0000" not in p_row
    assert main(["eval", "--gt", str(gt), "--subset", "test", "--protocol", "thumos14", "--bootstrap", "200",
                 "--compare", str(good), str(bad), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    zero = [i for i, p in enumerate(data["compare"]["p_value"]) if p == 0.0]
    assert zero and all(p_row.split()[2 + i] == "<1/200" for i in zero)


@pytest.mark.parametrize("thresholds, kind, summary", [
    ([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9], "thumos", "0.1:0.7"),  # ECM's official THUMOS14 run
    ([0.3, 0.4, 0.5, 0.6, 0.7], "thumos", "0.1:0.7"),  # AFSD's official THUMOS14 evaluator
    (parse_tiou("0.5:0.95:0.05"), "activitynet", "0.5:0.95"),
    ([0.5, 0.75, 0.95], "activitynet", "0.5:0.95"),
])
def test_one_summary_range_per_dataset_kind(thresholds, kind, summary):
    assert dataset_kind(thresholds) == kind
    assert tiou_range_text(summary_tiou(thresholds)) == summary
    assert summary_tiou(thresholds) == parse_tiou(SUMMARY_TIOU[kind])


def test_demo_configs_score_the_same_thresholds():
    """The four demo configs print tables over the same tIoU columns (ECM's used to add 0.8 and 0.9)."""
    from tadkit.commands.demo import DEMO_METHODS
    from tadkit.engine.config import find_config, load_config
    from tadkit.evaluation.detection import default_tiou

    columns = set()
    for method in DEMO_METHODS:
        test = load_config(find_config(f"{method}/synthetic")).test
        columns.add(tuple(test.tiou_thresholds or default_tiou(test.protocol)))
    assert columns == {tuple(parse_tiou("0.1:0.7:0.1"))}


@pytest.mark.parametrize("thresholds", [[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9], [0.3, 0.4, 0.5, 0.6, 0.7]])
def test_report_summary_averages_the_kind_range_whatever_the_config_scores(tmp_path, thresholds):
    from tadkit.engine.config import Config
    from tadkit.pipeline import evaluate_report

    gt = load_annotations(write_gt(tmp_path / "gt.json"), subset="test")
    rng = np.random.default_rng(0)
    rows = [(vid, s.start + rng.normal(0, 1.5), s.end + rng.normal(0, 1.5), s.label, rng.uniform())
            for vid, video in gt.videos.items() for s in video.segments]
    video, start, end, label, score = zip(*rows)
    dets = DetectionSet(np.array(video, dtype=object), np.array(start), np.array(end), np.array(label, dtype=object),
                        np.array(score))
    config = Config.from_dict({"model": {"name": "ecm"}, "data": {"subset_test": "test"},
                               "test": {"protocol": "activitynet", "tiou_thresholds": thresholds}})
    report = evaluate_report(gt, dets, config)
    assert report.results["activitynet"].tiou == thresholds  # the table keeps the config's (official) columns
    for protocol in ("activitynet", "thumos14"):
        expected = evaluate(gt, dets, protocol, "0.1:0.7:0.1", subset="test").average_mAP
        assert report.summary_mAP[protocol] == pytest.approx(expected, abs=1e-12)
        assert report.summary_mAP[protocol] != pytest.approx(report.results[protocol].average_mAP, abs=1e-6)
    text = report.format()
    assert "summary: average mAP over tIoU 0.1:0.7" in text
    assert report.summary_text().startswith("average mAP (tIoU 0.1:0.7) ")
    assert report.to_dict()["summary"]["tiou"] == parse_tiou("0.1:0.7:0.1")
