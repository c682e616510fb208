"""`tadkit view` pages in headless Chromium: the rendered DOM against report.json and the evaluator.

* a real run: tiny `tadkit demo` -> `tadkit test` -> report.html / `tadkit view --compare`;
* the page's JS matching (TP, DETAD FP types, ignored, missed, per-video AP) against
  :func:`score_problem` / :func:`false_positive_breakdown` / :func:`evaluate` at every tIoU the page
  offers, on real THUMOS14 (with Ambiguous) and ActivityNet GT with generated predictions;
* the HTML5 player on a real ActivityNet video.
Skips with a reason without chromium + chromium-driver + selenium (see tests/view_browser.py).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_path
from test_evaluation_reference import make_dets, make_gt, perturb_gt
from view_browser import Browser, find_browser

from tadkit.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser():
    find_browser()
    b = Browser()
    yield b
    b.close()


def assert_offline(browser: Browser) -> None:
    """The page requested only file:// (itself, a local video) and data: URLs; nothing went to a network."""
    requests = browser.requests()
    page = [url for document, url in requests if document.startswith("file://")]
    assert page, "the performance log saw no request of the page (the check would be vacuous)"
    assert all(url.startswith(("file://", "data:")) for url in page), page
    assert not [url for _, url in requests if url.split(":", 1)[0] in ("http", "https", "ws", "wss", "ftp")]
    assert browser.errors() == []


# ---------------------------------------------------------------------------------------------
# a real `tadkit test` run
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    """demo (tiny) -> `tadkit test` of its checkpoint -> a second run B = A without one class."""
    root = tmp_path_factory.mktemp("view_run")
    demo = root / "demo"
    assert main(["demo", "--out", str(demo), "--videos", "6", "--epochs", "2", "--max-video-seconds", "90",
                 "--difficulty", "easy", "--no-progress"]) == 0
    test_dir = root / "test_a"
    assert main(["test", str(demo / "run_a2net" / "config.yaml"), "--checkpoint", str(demo / "run_a2net" / "last.pt"),
                 "--out", str(test_dir), "--no-plots", "--no-progress"]) == 0
    results = json.loads((test_dir / "results.json").read_text())
    gt = json.loads((test_dir / "ground_truth.json").read_text())
    counts: dict[str, int] = {}
    for video in gt["database"].values():
        for ann in video["annotations"]:
            counts[ann["label"]] = counts.get(ann["label"], 0) + 1
    removed = max(counts, key=counts.get)  # B = A without its detections of the most frequent class
    other = root / "test_b"
    shutil.copytree(test_dir, other)
    results["results"] = {v: [d for d in dets if d["label"] != removed] for v, dets in results["results"].items()}
    (other / "results.json").write_text(json.dumps(results))
    return {"demo": demo, "test": test_dir, "other": other, "removed": removed}


def test_demo_and_test_write_a_page_that_opens_offline(real_run, browser):
    for directory in (real_run["demo"], real_run["test"]):
        page = directory / "report.html"
        assert page.is_file()
        browser.open(page)
        assert_offline(browser)
        report = json.loads((directory / "report.json").read_text())
        primary = report["primary_protocol"]
        shown = browser.js("return Array.from(document.querySelectorAll(`table.map[data-protocol='${arguments[0]}'] "
                           "td[data-map]`)).map(td => Number(td.dataset.map))", primary)
        assert shown == report["protocols"][primary]["mAP"] + [report["protocols"][primary]["average_mAP"]]


def test_test_no_html_skips_only_the_page(real_run, tmp_path):
    demo = real_run["demo"]
    out = tmp_path / "no_html"
    assert main(["test", str(demo / "run_a2net" / "config.yaml"), "--checkpoint", str(demo / "run_a2net" / "last.pt"),
                 "--out", str(out), "--no-plots", "--no-html", "--no-progress"]) == 0
    assert (out / "ground_truth.json").is_file() and (out / "report.json").is_file()
    assert not (out / "report.html").exists()


def test_page_shows_every_video_class_and_the_report_map(real_run, browser, tmp_path):
    test_dir = real_run["test"]
    page = tmp_path / "view.html"
    assert main(["view", str(test_dir), "--out", str(page), "--max-per-video", "0"]) == 0
    browser.open(page)
    report = json.loads((test_dir / "report.json").read_text())
    gt = json.loads((test_dir / "ground_truth.json").read_text())
    videos = browser.js("return Array.from(document.querySelectorAll('#video-table tbody td:first-child'))"
                        ".map(td => td.textContent)")
    assert sorted(videos) == sorted(gt["database"])
    classes = browser.js("return Array.from(document.querySelectorAll('#class-table tbody td:first-child'))"
                         ".map(td => td.textContent)")
    assert sorted(classes) == sorted(report["protocols"][report["primary_protocol"]]["per_class"])
    for protocol, result in report["protocols"].items():
        cells = browser.js("return Array.from(document.querySelectorAll(`table.map[data-protocol='${arguments[0]}'] "
                           "td[data-map]`)).map(td => [td.dataset.tiou, Number(td.dataset.map)])", protocol)
        assert [float(m) for t, m in cells if t != "avg"] == result["mAP"]
        assert [m for t, m in cells if t == "avg"] == [result["average_mAP"]]
    assert_offline(browser)


def test_threshold_slider_and_video_choice(real_run, browser, tmp_path):
    test_dir = real_run["test"]
    page = tmp_path / "view.html"
    assert main(["view", str(test_dir), "--out", str(page), "--max-per-video", "0"]) == 0
    browser.open(page)
    gt = json.loads((test_dir / "ground_truth.json").read_text())["database"]
    results = json.loads((test_dir / "results.json").read_text())["results"]
    evaluated = set(json.loads((test_dir / "report.json").read_text())["protocols"]["thumos14"]["per_class"])
    video = max(gt, key=lambda v: len(gt[v]["annotations"]))
    browser.driver.find_element("css selector", "[data-tab=videos]").click()
    row = browser.driver.find_element("css selector", f"#video-table tbody tr[data-row='{list(gt).index(video)}']")
    row.click()
    assert browser.js("return document.getElementById('detail-title').textContent") == video
    shown_gt = int(browser.js("return document.getElementById('detail-counts').dataset.gt"))
    assert shown_gt == len(gt[video]["annotations"])
    scores = np.array([d["score"] for d in results.get(video, []) if d["label"] in evaluated], dtype=np.float32)
    drawn = "return document.querySelectorAll('g.dets[data-run=\"0\"] rect.det').length"
    assert browser.js(drawn) == len(scores)
    threshold = float(np.quantile(scores.astype(np.float64), 0.6))
    browser.js("const s = document.getElementById('score'); s.value = arguments[0];"
               "s.dispatchEvent(new Event('input'))", threshold)
    used = browser.js("return Number(document.getElementById('score').value)")  # the slider's step rounds
    expected = int((scores.astype(np.float64) >= used).sum())
    assert expected < len(scores)
    assert browser.js(drawn) == expected
    # class filter: only that class's detections stay drawn
    labels = [d["label"] for d in results.get(video, []) if d["label"] in evaluated and np.float32(d["score"]) >= used]
    label = max(set(labels), key=labels.count)
    index = browser.js("return window.tadkitView.data.classes.indexOf(arguments[0])", label)
    browser.js("const c = document.getElementById('class-filter'); c.value = String(arguments[0]);"
               "c.dispatchEvent(new Event('change'))", index)
    assert browser.js(drawn) == labels.count(label)
    # hover details name the label, the times and the best tIoU
    browser.js("document.querySelector('rect.det').dispatchEvent(new MouseEvent('mousemove', {bubbles: true}))")
    tip = browser.js("return document.getElementById('tooltip').textContent")
    assert label in tip and "best tIoU" in tip and "score" in tip
    # zoom: the visible time span halves, then the whole video again
    span = "const v = window.tadkitView.state.view; return v[1] - v[0]"
    full = browser.js(span)
    browser.driver.find_element("id", "zoom-in").click()
    assert browser.js(span) == pytest.approx(full / 2)
    browser.driver.find_element("id", "zoom-reset").click()
    assert browser.js(span) == pytest.approx(full)


def test_compare_shows_the_per_class_differences(real_run, browser, tmp_path):
    page = tmp_path / "compare.html"
    assert main(["view", str(real_run["test"]), "--compare", str(real_run["other"]), "--out", str(page),
                 "--bootstrap", "200"]) == 0
    browser.open(page)
    browser.js("document.querySelector('[data-tab=compare]').click()")
    report = json.loads((real_run["test"] / "report.json").read_text())
    per_class = report["protocols"][report["primary_protocol"]]["per_class"]
    rows = browser.js("return Array.from(document.querySelectorAll('#compare-class-table tbody tr'))"
                      ".map(tr => Array.from(tr.cells).map(td => td.textContent))")
    assert len(rows) == len(per_class)
    for cells in rows:
        name, delta = cells[0], cells[-1]
        expected = -100 * np.mean(per_class[name]) if name == real_run["removed"] else 0.0
        assert float(delta.replace("–", "nan")) == pytest.approx(round(expected, 2), abs=0.006), (name, delta)
    assert browser.js("return document.querySelectorAll('#bootstrap-table tbody tr').length") == 5
    assert_offline(browser)


# ---------------------------------------------------------------------------------------------
# the page's matching == the evaluator's, at every tIoU it offers
# ---------------------------------------------------------------------------------------------
def _expected(gt, dets, protocol, subset, thresholds):
    from tadkit.evaluation import false_positive_breakdown
    from tadkit.evaluation.detection import score_problem
    from tadkit.evaluation.problem import prepare

    p = prepare(gt, dets, subset=subset)
    on_gt = p.pred_video < p.num_gt_videos
    scored = score_problem(p, protocol, thresholds)
    fp = false_positive_breakdown(gt, dets, protocol=protocol, tiou_thresholds=thresholds, subset=subset,
                                  unknown_videos="drop")
    out = []
    for k, _ in enumerate(thresholds):
        tp = int(scored.tp[k][on_gt].sum())
        row = {"tp": tp, "ignored": int(scored.removed[k][on_gt].sum()), "missed": int(p.npos.sum()) - tp}
        row.update({name: counts[k] for name, counts in fp.counts.items()})
        out.append(row)
    return out


def _js_totals(browser, run=0):
    return browser.js("const v = window.tadkitView;"
                      "return v.data.tiou_choices.map(t => v.totals(v.runs[arguments[0]], t))", run)


def _video_ap(browser, t):
    return browser.js("const v = window.tadkitView; return Array.from(v.match(v.runs[0], arguments[0]).video.ap)", t)


def _check_matching(browser, tmp_path, gt, dets, protocol, subset, sample_videos):
    from tadkit.evaluation import evaluate
    from tadkit.viz.report_html import Run, ViewSpec, view_data, write_page

    spec = ViewSpec(gt=gt, protocol=protocol, subset=subset)
    for cap in (None, 3):
        data = view_data(spec, [Run("generated", dets)], cap=cap)
        write_page(tmp_path / f"cap{cap}.html", data)
        browser.open(tmp_path / f"cap{cap}.html")
        assert browser.errors() == []
        choices = data["tiou_choices"]
        expected = _expected(gt, dets, protocol, subset, choices)
        got = _js_totals(browser)
        for t, want, have in zip(choices, expected, got):
            if cap is None:
                assert {k: have[k] for k in want} == want, t
            else:  # capped: every TP kept, so TP / missed still equal; fewer FPs stored
                assert (have["tp"], have["missed"]) == (want["tp"], want["missed"]), t
        if cap is not None:
            assert data["runs"][0]["det"]["dropped"] > 0  # the cap did drop detections
            # a capped video says so on the page
            det = data["runs"][0]["det"]
            stored = np.diff(np.frombuffer(base64.b64decode(det["off"]), "<i4"))
            total = np.frombuffer(base64.b64decode(det["total"]), "<i4")
            capped = int(np.flatnonzero(total > stored)[0])
            browser.js("window.tadkitView.selectVideo(arguments[0])", capped)
            note = browser.js("const n = document.querySelector('#video-detail .capped'); return n && n.textContent")
            assert note and f"showing {stored[capped]} of {total[capped]} detections" in note
            ids = data["videos"]["id"]
            for t in (0.3, 0.5, 0.7):
                ap = _video_ap(browser, t)
                for vid in sample_videos:
                    one = type(gt)({vid: gt.videos[vid]}, gt.classes)
                    want = evaluate(one, dets, protocol, [t], unknown_videos="drop").mAP[0]
                    assert ap[ids.index(vid)] == pytest.approx(want, abs=1e-12), (vid, t)


def test_js_matching_equals_the_evaluator_thumos14(browser, tmp_path):
    from tadkit.data.annotations import load_annotations

    gt = load_annotations(shared_path("data", "thumos14", "evalkit", "test"))
    dets = perturb_gt(gt, np.random.default_rng(21), copies=(1, 5), extra_fp=3000, score_decimals=2)
    # reversed and zero-length predictions are scored as TH14evalDet.m scores them
    odd = make_dets([(v, 30.0, 20.0, gt.classes[0], 0.5) for v in list(gt.videos)[:20]]
                    + [(v, 12.0, 12.0, gt.classes[1], 0.7) for v in list(gt.videos)[:20]])
    dets = type(dets).concatenate([dets, odd])
    busy = sorted((v for v in gt.videos if gt.videos[v].segments), key=lambda v: -len(gt.videos[v].segments))
    _check_matching(browser, tmp_path, gt, dets, "thumos14", "test", busy[:4] + busy[-4:])


def test_js_matching_equals_the_evaluator_activitynet(browser, tmp_path):
    from tadkit.data.annotations import load_annotations
    from tadkit.data.records import AnnotationSet

    full = load_annotations(shared_path("data", "activitynet", "v1.3", "bsn", "anet_anno_action.json"),
                            subset="validation")
    gt = AnnotationSet({v: full.videos[v] for v in list(full.videos)[:600]}, full.classes)
    dets = perturb_gt(gt, np.random.default_rng(3), copies=(1, 6), extra_fp=4000, unknown_video=False,
                      score_decimals=2)
    busy = sorted((v for v in gt.videos if gt.videos[v].segments), key=lambda v: -len(gt.videos[v].segments))
    _check_matching(browser, tmp_path, gt, dets, "activitynet", "validation", busy[:5] + busy[-3:])


@pytest.mark.parametrize("protocol, t, tp", [
    # activitynet: the top detection ties (tIoU 0.6) between GT [0, 10] and [5, 15]; the later GT wins,
    # which leaves [0, 10] to the second detection: 2 TP (the other choice would give 1)
    ("activitynet", 0.5, 2),
    # thumos14: GT [0, 10] ties (0.6) between both detections and takes the higher ranked one, which
    # was GT [10, 20]'s only candidate: 1 TP (the other choice would give 2)
    ("thumos14", 0.1, 1),
])
def test_js_tie_breaks_are_the_evaluators(browser, tmp_path, protocol, t, tp):
    from tadkit.evaluation.detection import score_problem
    from tadkit.evaluation.problem import prepare
    from tadkit.viz.report_html import Run, ViewSpec, view_data, write_page

    if protocol == "activitynet":
        gt = make_gt({"v": [(0, 10, "x"), (5, 15, "x")]})
        dets = make_dets([("v", 2.5, 12.5, "x", 0.9), ("v", 0, 9, "x", 0.8)])
    else:
        gt = make_gt({"v": [(0, 10, "x"), (10, 20, "x")]})
        dets = make_dets([("v", 2.5, 12.5, "x", 0.9), ("v", -2.5, 7.5, "x", 0.8)])
    assert int(score_problem(prepare(gt, dets), protocol, [t]).tp.sum()) == tp
    write_page(tmp_path / "tie.html", view_data(ViewSpec(gt=gt, protocol=protocol), [Run("tie", dets)]))
    browser.open(tmp_path / "tie.html")
    assert browser.js("const v = window.tadkitView; return v.totals(v.runs[0], arguments[0]).tp", t) == tp


# ---------------------------------------------------------------------------------------------
# the player
# ---------------------------------------------------------------------------------------------
def test_player_follows_the_timeline(browser, tmp_path):
    from tadkit.data.annotations import load_annotations
    from tadkit.data.formats.activitynet import write_tadkit_json
    from tadkit.data.records import AnnotationSet
    from tadkit.evaluation import write_activitynet_json

    video = shared_path("data", "activitynet", "samples", "v_GGSY1Qvo990.mp4")
    full = load_annotations(shared_path("data", "activitynet", "v1.3", "bsn", "anet_anno_action.json"),
                            subset="validation")
    gt = AnnotationSet({"v_GGSY1Qvo990": full.videos["v_GGSY1Qvo990"]}, full.classes)
    write_tadkit_json(gt, tmp_path / "gt.json")
    write_activitynet_json(make_dets([("v_GGSY1Qvo990", 5.5, 16.0, "Clean and jerk", 0.9),
                                      ("v_GGSY1Qvo990", 1.0, 3.0, "Clean and jerk", 0.4)]), tmp_path / "pred.json")
    (tmp_path / "videos").mkdir()
    os.symlink(video, tmp_path / "videos" / "GGSY1Qvo990.mp4")  # bare YouTube id: matched like the evaluator
    (tmp_path / "pages").mkdir()
    page = tmp_path / "pages" / "report.html"
    assert main(["eval", "--gt", str(tmp_path / "gt.json"), "--pred", str(tmp_path / "pred.json"), "--protocol",
                 "activitynet", "--subset", "validation", "--html", str(page), "--videos",
                 str(tmp_path / "videos")]) == 0
    browser.open(page)
    assert browser.js("return document.getElementById('player').getAttribute('src')") == "../videos/GGSY1Qvo990.mp4"
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser.driver, 20).until(lambda d: d.execute_script(
        "return document.getElementById('player').readyState") >= 1)
    browser.driver.find_element("css selector", "[data-tab=videos]").click()
    browser.driver.find_element("css selector", "rect.gt").click()
    start = gt.videos["v_GGSY1Qvo990"].segments[0].start
    assert browser.js("return document.getElementById('player').currentTime") == pytest.approx(start, abs=0.05)
    cursor = browser.js("return Number(document.querySelector('line.cursor').dataset.time)")
    assert cursor == pytest.approx(start, abs=0.05)
    assert_offline(browser)


# ---------------------------------------------------------------------------------------------
# docs/view.md: every command of its ```bash blocks runs as written
# ---------------------------------------------------------------------------------------------
DOC_COMMANDS = {  # command -> page it writes (relative to the working directory)
    "tadkit view runs/test_a --out runs/test_a/view.html": "runs/test_a/view.html",
    "tadkit view runs/test_a --videos videos/ --out runs/test_a/report.html": "runs/test_a/report.html",
    "tadkit view runs/test_a --compare runs/test_b --out compare.html": "compare.html",
    "tadkit eval --gt GT --pred PRED --protocol thumos14 --subset test --html report.html": "report.html",
}


def test_docs_commands_run_as_written(real_run, browser, tmp_path, monkeypatch):
    import shlex

    from test_readme_commands import readme_commands

    from tadkit.data.formats.activitynet import write_tadkit_json
    from tadkit.evaluation import write_activitynet_json

    docs = (Path(__file__).resolve().parents[1] / "docs" / "view.md").read_text(encoding="utf-8")
    assert readme_commands(docs) == list(DOC_COMMANDS)  # change both together
    monkeypatch.chdir(tmp_path)
    shutil.copytree(real_run["test"], "runs/test_a")
    shutil.copytree(real_run["other"], "runs/test_b")
    Path("videos").mkdir()
    first = next(iter(json.loads(Path("runs/test_a/ground_truth.json").read_text())["database"]))
    sample = shared_path("data", "activitynet", "samples", "v_GGSY1Qvo990.mp4")  # any playable file
    os.symlink(sample, Path("videos") / f"{first}.mp4")
    gt = make_gt({"video_0": [(1, 5, "x"), (10, 20, "y")], "video_1": [(0, 4, "x")]})
    write_tadkit_json(gt, "gt.json")
    write_activitynet_json(perturb_gt(gt, np.random.default_rng(5), extra_fp=20, unknown_video=False), "pred.json")
    for command, page in DOC_COMMANDS.items():
        argv = [{"GT": "gt.json", "PRED": "pred.json"}.get(a, a) for a in shlex.split(command)[1:]]
        assert main(argv) == 0, command
        browser.open(Path(page))
        assert_offline(browser)
        if "--videos" in command:
            files = browser.js("return window.tadkitView.data.videos.file")
            assert files[0] == f"../../videos/{first}.mp4" and not any(files[1:])

