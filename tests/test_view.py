"""`tadkit view` without a browser: the page's data (columns, cap, ranks), escaping, inputs, CLI errors.

The rendered page is tested in headless Chromium in tests/test_view_browser.py.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest
from test_evaluation_reference import make_dets, make_gt, perturb_gt

from tadkit.cli import main
from tadkit.errors import TadkitError
from tadkit.viz.report_html import Run, ViewSpec, render_page, script_json, view_data, write_page


def column(data: dict, name: str, dtype: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(data[name]), dtype=np.dtype(dtype).newbyteorder("<"))


def page_data(path: Path) -> dict:
    text = path.read_text(encoding="utf-8")
    block = re.search(r'<script type="application/json" id="tadkit-data">(.*?)</script>', text, re.S)
    return json.loads(block.group(1))


@pytest.fixture
def small():
    gt = make_gt({"a": [(1, 5, "x"), (10, 20, "y")], "b": [(0, 4, "x")]}, ambiguous={"b": [(30, 40)]})
    return gt


def test_columns_are_sorted_by_video_class_score_and_capped_keeping_true_positives(small):
    rows = [("a", 1, 5, "x", 0.1),  # TP at every tIoU, lowest score: kept despite the cap
            ("a", 50, 60, "x", 0.9), ("a", 61, 62, "y", 0.8), ("a", 63, 64, "x", 0.7),
            ("b", 0, 4, "x", 0.5), ("b", 31, 35, "x", 0.95), ("zzz", 0, 1, "x", 1.0)]
    data = view_data(ViewSpec(gt=small, protocol="thumos14"), [Run("r", make_dets(rows))], cap=1)
    det = data["runs"][0]["det"]
    assert det["n"] == 4 and det["dropped"] == 2  # a: top-1 (0.9) + the TP; b: top-1 (0.95) + the TP
    assert column(det, "off", "i4").tolist() == [0, 2, 4]
    assert column(det, "score", "f4").tolist() == pytest.approx([0.9, 0.1, 0.95, 0.5])
    assert [data["classes"][c] for c in column(det, "cls", "u2")] == ["x", "x", "x", "x"]
    # 0.1 ranks below the dropped 0.7 of its class: one dropped detection above it
    assert column(det, "above", "i4").tolist() == [0, 1, 0, 0]
    assert column(det, "amb", "u1").tolist() == [0, 0, 1, 0]  # b's 0.95 touches the Ambiguous segment
    assert column(det, "total", "i4").tolist() == [4, 2]
    assert data["runs"][0]["excluded"]["unknown_video_preds"] == 1


def test_no_cap_keeps_everything_and_tiou_choices_hold_the_protocol_thresholds(small):
    dets = perturb_gt(small, np.random.default_rng(0), extra_fp=40, unknown_video=False)
    data = view_data(ViewSpec(gt=small, protocol="activitynet"), [Run("r", dets)], cap=None)
    assert data["runs"][0]["det"]["n"] == len(dets) and data["runs"][0]["det"]["dropped"] == 0
    assert set(np.round(np.arange(0.5, 0.951, 0.05), 6)) <= set(data["tiou_choices"])
    assert data["runs"][0]["protocols"]["activitynet"]["tiou"] == data["tiou"]


def test_data_cannot_break_out_of_the_page(small, tmp_path):
    hostile = "</script><script>alert(1)</script>&<!--"
    gt = make_gt({hostile: [(1, 5, hostile)]})
    data = view_data(ViewSpec(gt=gt, protocol="thumos14", title=hostile),
                     [Run(hostile, make_dets([(hostile, 1, 5, hostile, 0.5)]))])
    page = render_page(data)
    assert page.count("</script>") == 2 and "<script>alert" not in page  # the data block and the code block
    assert "<!--" not in page.split('id="tadkit-data">')[1]
    write_page(tmp_path / "p.html", data)
    assert page_data(tmp_path / "p.html")["videos"]["id"] == [hostile]
    assert json.loads(script_json({"k": "\u2028<&>"})) == {"k": "\u2028<&>"}


def test_page_is_self_contained_and_forbids_fetching(small):
    page = render_page(view_data(ViewSpec(gt=small, protocol="thumos14"), [Run("r", make_dets([("a", 1, 5, "x", 1)]))]))
    assert "default-src 'none'" in page
    assert not re.search(r'<(script|link|img)[^>]+(src|href)=', page)


def test_video_files_are_listed_never_built_from_ids(small, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "a.mp4").write_bytes(b"")
    (videos / "notes.txt").write_bytes(b"")
    (videos / "c.mp4").write_bytes(b"")  # no such GT video: ignored
    out = tmp_path / "html" / "report.html"
    data = view_data(ViewSpec(gt=small, protocol="thumos14"), [Run("r", make_dets([("a", 1, 5, "x", 1)]))],
                     videos_dir=videos, out_path=out)
    assert data["videos"]["file"] == ["../videos/a.mp4", ""]
    (videos / "a.webm").write_bytes(b"")  # two files for one video: one clear error
    with pytest.raises(TadkitError, match="two files for one video"):
        view_data(ViewSpec(gt=small, protocol="thumos14"), [Run("r", make_dets([("a", 1, 5, "x", 1)]))],
                  videos_dir=videos, out_path=out)


def test_view_cli_errors_are_one_line_exit_2(tmp_path, capsys):
    assert main(["view", str(tmp_path / "missing")]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert main(["view", str(tmp_path)]) == 2
    assert "report.json" in capsys.readouterr().err
    (tmp_path / "report.json").write_text("{not json")
    (tmp_path / "results.json").write_text("{}")
    assert main(["view", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "report.json" in err and "not valid JSON" in err
    (tmp_path / "report.json").write_text(json.dumps({"primary_protocol": "thumos14", "protocols": {
        "thumos14": {"tiou": ["0.5"]}}}))
    assert main(["view", str(tmp_path)]) == 2
    assert "protocols.thumos14" in capsys.readouterr().err
    assert not (tmp_path / "report.html").exists()


def test_eval_html_writes_the_page_of_the_printed_scores(tmp_path, capsys):
    from tadkit.data.formats.activitynet import write_tadkit_json
    from tadkit.evaluation import write_activitynet_json

    gt = make_gt({"a": [(1, 5, "x"), (10, 20, "y")], "b": [(0, 4, "x")]})
    write_tadkit_json(gt, tmp_path / "gt.json")
    dets = perturb_gt(gt, np.random.default_rng(1), extra_fp=30, unknown_video=False)
    write_activitynet_json(dets, tmp_path / "pred.json")
    assert main(["eval", "--gt", str(tmp_path / "gt.json"), "--pred", str(tmp_path / "pred.json"), "--protocol",
                 "thumos14", "--subset", "test", "--format", "json", "--bootstrap", "50",
                 "--html", str(tmp_path / "r.html")]) == 0
    printed = json.loads(capsys.readouterr().out)
    shown = page_data(tmp_path / "r.html")["runs"][0]
    assert shown["protocols"]["thumos14"]["mAP"] == printed["mAP"]
    assert shown["bootstrap"] == printed["bootstrap"]
    assert main(["eval", "--gt", str(tmp_path / "gt.json"), "--pred", str(tmp_path / "pred.json"), "--protocol",
                 "thumos14", "--subset", "test", "--proposals", "--html", str(tmp_path / "p.html")]) == 2
    assert not (tmp_path / "p.html").exists()


def test_view_of_a_handmade_test_dir_and_out_never_overwrites_an_input(tmp_path, capsys):
    from tadkit.data.formats.activitynet import write_tadkit_json
    from tadkit.evaluation import write_activitynet_json

    gt = make_gt({"a": [(1, 5, "x"), (10, 20, "y")], "b": [(0, 4, "x")]})
    run = tmp_path / "run"
    run.mkdir()
    write_tadkit_json(gt, run / "ground_truth.json")
    write_activitynet_json(perturb_gt(gt, np.random.default_rng(2), extra_fp=10, unknown_video=False),
                           run / "results.json")
    (run / "report.json").write_text(json.dumps({"primary_protocol": "thumos14", "protocols": {
        "thumos14": {"tiou": [0.3, 0.5]}}, "run": {"method": "handmade", "subset": "test"}}))
    assert main(["view", str(run)]) == 0
    data = page_data(run / "report.html")
    assert data["tiou"] == [0.3, 0.5] and data["runs"][0]["method"] == "handmade" and data["subset"] == "test"
    before = (run / "results.json").read_bytes()
    assert main(["view", str(run), "--out", str(run / "results.json")]) == 2
    assert "would overwrite an input" in capsys.readouterr().err
    assert (run / "results.json").read_bytes() == before


def test_eval_compare_html_has_both_runs_and_the_paired_test(tmp_path, capsys):
    from tadkit.data.formats.activitynet import write_tadkit_json
    from tadkit.evaluation import write_activitynet_json

    gt = make_gt({"a": [(1, 5, "x"), (10, 20, "y")], "b": [(0, 4, "x")], "c": [(3, 9, "y")]})
    write_tadkit_json(gt, tmp_path / "gt.json")
    for name, seed in (("a.json", 1), ("b.json", 2)):
        write_activitynet_json(perturb_gt(gt, np.random.default_rng(seed), extra_fp=20, unknown_video=False),
                               tmp_path / name)
    assert main(["eval", "--gt", str(tmp_path / "gt.json"), "--compare", str(tmp_path / "a.json"),
                 str(tmp_path / "b.json"), "--protocol", "thumos14", "--subset", "test", "--bootstrap", "100",
                 "--format", "json", "--html", str(tmp_path / "c.html")]) == 0
    printed = json.loads(capsys.readouterr().out)
    data = page_data(tmp_path / "c.html")
    assert [r["name"] for r in data["runs"]] == ["a.json", "b.json"]
    assert data["compare"]["difference"] == printed["compare"]["difference"]
    assert data["compare"]["p_value"] == printed["compare"]["p_value"]  # same seed and resamples


def test_compare_refuses_runs_scored_on_other_ground_truth(tmp_path, capsys):
    from tadkit.data.formats.activitynet import write_tadkit_json
    from tadkit.evaluation import write_activitynet_json

    report = {"primary_protocol": "thumos14", "protocols": {"thumos14": {"tiou": [0.5]}}, "run": {"subset": "test"}}
    for name, second_end in (("a", 20.0), ("b", 20.0), ("c", 21.0)):
        gt = make_gt({"a": [(1, 5, "x"), (10, second_end, "y")], "b": [(0, 4, "x")]})
        run = tmp_path / name
        run.mkdir()
        write_tadkit_json(gt, run / "ground_truth.json")
        write_activitynet_json(perturb_gt(gt, np.random.default_rng(3), extra_fp=5, unknown_video=False),
                               run / "results.json")
        (run / "report.json").write_text(json.dumps(report))
    assert main(["view", str(tmp_path / "a"), "--compare", str(tmp_path / "b"), "--bootstrap", "20",
                 "--out", str(tmp_path / "ab.html")]) == 0
    assert main(["view", str(tmp_path / "a"), "--compare", str(tmp_path / "c"),
                 "--out", str(tmp_path / "ac.html")]) == 2
    assert "not comparable" in capsys.readouterr().err and not (tmp_path / "ac.html").exists()
