"""`tadkit eval` through tadkit.cli.main: the JSON contract, table output, exit code 2 on bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import shared_path
from tadkit.cli import main
from tadkit.evaluation import evaluate, write_thumos_txt
from test_evaluation_reference import perturb_gt

GT = {
    "version": "test",
    "database": {
        "v1": {"subset": "validation", "duration": 100.0,
               "annotations": [{"segment": [0, 10], "label": "a"}, {"segment": [20, 30], "label": "b"}]},
        "v2": {"subset": "validation", "duration": 50.0, "annotations": [{"segment": [5, 15], "label": "a"}]},
        "v3": {"subset": "training", "duration": 50.0, "annotations": [{"segment": [5, 15], "label": "a"}]},
    },
}
PRED = {"results": {
    "v1": [{"segment": [0, 10], "label": "a", "score": 0.9}, {"segment": [21, 30], "label": "b", "score": 0.8}],
    "v2": [{"segment": [40, 45], "label": "a", "score": 0.95}],
}}


@pytest.fixture
def files(tmp_path):
    gt, pred = tmp_path / "gt.json", tmp_path / "pred.json"
    gt.write_text(json.dumps(GT))
    pred.write_text(json.dumps(PRED))
    return gt, pred


def run(capsys, *argv):
    code = main(["eval", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_output_contract(files, capsys):
    gt, pred = files
    code, out, err = run(capsys, "--gt", gt, "--pred", pred, "--protocol", "activitynet", "--subset", "validation",
                         "--tiou", "0.5,0.95", "--format", "json")
    assert code == 0 and err == ""
    data = json.loads(out)  # exactly one JSON object on stdout
    assert {"protocol", "subset", "tiou", "mAP", "average_mAP", "per_class"} <= set(data)
    assert data["protocol"] == "activitynet" and data["subset"] == "validation" and data["tiou"] == [0.5, 0.95]
    # a: FP (0.95) then TP over 2 GT -> 1/4; b: tIoU 0.9 -> TP at 0.5, FP at 0.95
    assert data["per_class"] == {"a": [0.25, 0.25], "b": [1.0, 0.0]}
    assert data["mAP"] == [0.625, 0.125] and data["average_mAP"] == 0.375
    assert data["counts"]["num_videos"] == 2  # the training video is not in the subset


def test_table_output_and_defaults(files, capsys):
    gt, pred = files
    code, out, _ = run(capsys, "--gt", gt, "--pred", pred, "--protocol", "thumos14", "--subset", "val", "--per-class")
    assert code == 0
    assert "0.10" in out and "0.70" in out and "62.50" in out  # default thumos14 tIoU, mAP in percent
    assert "2 videos, 3 GT instances" in out and "\nb " in out


def test_out_file_analysis_and_proposals(files, tmp_path, capsys):
    gt, pred = files
    out_file = tmp_path / "res" / "r.json"
    code, out, _ = run(capsys, "--gt", gt, "--pred", pred, "--protocol", "activitynet", "--subset", "validation",
                       "--analysis", "--out", out_file, "--format", "json")
    assert code == 0
    saved = json.loads(out_file.read_text())
    assert saved == json.loads(out)
    assert [b["name"] for b in saved["duration_breakdown"]["bins"]] == ["ES", "S", "M", "L", "EL"]
    assert saved["false_positive_breakdown"]["true_positives"][0] == 2
    code, out, _ = run(capsys, "--gt", gt, "--pred", pred, "--protocol", "activitynet", "--subset", "validation",
                       "--proposals", "--format", "json")
    # recall 2/3 at tIoU <= 0.9, 1/3 at 0.95 (the b proposal has tIoU 0.9) -> (9 * 2/3 + 1/3) / 10
    assert code == 0 and json.loads(out)["average_recall"][-1] == pytest.approx(19 / 30, abs=1e-12)


@pytest.mark.parametrize(
    "change,needle",
    [
        ({"--pred": "missing.json"}, "not found"),
        ({"--tiou": "0.9:0.1:0.1"}, "tIoU"),
        ({"--subset": "testing"}, "subset"),
        ({"--blocked": "missing_blocked.json"}, "blocked"),
        ({"--strict": None, "--pred": "unknown_label.json"}, "strict"),
        ({"--pred": "bad.json"}, "score"),
        ({"--gt": "missing_gt.json"}, "no such file"),
    ],
)
def test_bad_input_exits_2_with_one_line(files, tmp_path, capsys, change, needle):
    gt, pred = files
    (tmp_path / "unknown_label.json").write_text(json.dumps({"results": {"v1": [
        {"segment": [0, 1], "label": "zzz", "score": 0.5}]}}))
    (tmp_path / "bad.json").write_text('{"results": {"v1": [{"segment": [0, 1], "label": "a", "score": "high"}]}}')
    args = {"--gt": gt, "--pred": pred, "--protocol": "activitynet", "--subset": "validation"}
    for key, value in change.items():
        args[key] = value if value is None or key == "--tiou" or key == "--subset" else tmp_path / value
    argv = [x for k, v in args.items() for x in ([k] if v is None else [k, v])]
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("tadkit eval: error:") and err.count("\n") == 1 and needle in err
    assert "Traceback" not in err


def test_argparse_rejects_unknown_protocol(files, capsys):
    gt, pred = files
    with pytest.raises(SystemExit) as info:
        main(["eval", "--gt", str(gt), "--pred", str(pred), "--protocol", "coco", "--subset", "validation"])
    assert info.value.code == 2


@pytest.mark.shared
def test_thumos_txt_with_evalkit_gt_matches_api(tmp_path, capsys):
    from tadkit.data.annotations import load_annotations

    kit = shared_path("data", "thumos14", "evalkit", "test")
    gt = load_annotations(kit)
    dets = perturb_gt(gt, np.random.default_rng(1), copies=(0, 2), unknown_video=False)
    path = tmp_path / "det.txt"
    write_thumos_txt(dets, path, gt.external_ids)
    code, out, _ = run(capsys, "--gt", kit, "--pred", path, "--protocol", "thumos14", "--subset", "test",
                       "--format", "json")
    assert code == 0
    data = json.loads(out)
    api = evaluate(gt, dets, "thumos14", subset="test")
    assert data["mAP"] == api.mAP and data["per_class"] == api.per_class
    assert data["video_list"].startswith("test/ [THUMOS14 evalkit] test: 213 videos")
