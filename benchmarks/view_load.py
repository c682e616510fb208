"""`tadkit view` at ActivityNet v1.3 validation size: page build time, file size, load and response time
in headless Chromium.

GT: ../shared/data/activitynet/v1.3/bsn/anet_anno_action.json, validation (4,728 videos). Predictions:
generated, exactly 100 per video (jittered copies of the video's GT, some with a wrong label, the rest
random segments of random classes), random scores. The page is built with the default cap (50 per video
plus every TP) and with no cap.

    python benchmarks/view_load.py [--cap 50] [--repeat 3] [--keep DIR]

Needs chromium + chromium-driver + selenium (as the browser tests). Timings depend on the machine's
load: the figures in docs/view.md were taken on a shared, busy 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from view_browser import Browser  # noqa: E402

from tadkit.data.records import DetectionSet  # noqa: E402

PER_VIDEO = 100


def generated_predictions(gt, seed: int = 0) -> DetectionSet:
    """Exactly PER_VIDEO detections per GT video: 3 jittered copies per GT instance, the rest random."""
    rng = np.random.default_rng(seed)
    videos, starts, ends, labels = [], [], [], []
    classes = np.asarray(gt.classes, dtype=object)
    for vid, ann in gt.videos.items():
        duration = float(ann.duration or max([s.end for s in ann.segments] + [10.0]))
        seg = np.array([[s.start, s.end] for s in ann.segments], dtype=np.float64).reshape(-1, 2)
        lab = np.array([s.label for s in ann.segments], dtype=object)
        copies = np.repeat(np.arange(len(seg)), 3)[:PER_VIDEO]
        length = np.maximum(seg[copies, 1] - seg[copies, 0], 0.1)
        s = seg[copies, 0] + rng.normal(0, 0.15, len(copies)) * length
        e = seg[copies, 1] + rng.normal(0, 0.15, len(copies)) * length
        random_labels = classes[rng.integers(len(classes), size=len(copies))]
        copy_labels = np.where(rng.random(len(copies)) < 0.8, lab[copies], random_labels)
        rest = PER_VIDEO - len(copies)
        rs = rng.random(rest) * duration
        re_ = np.minimum(rs + rng.random(rest) * duration * 0.5, duration)
        videos.append(np.full(PER_VIDEO, vid, dtype=object))
        starts.append(np.clip(np.r_[np.minimum(s, e), rs], 0, duration))
        ends.append(np.clip(np.r_[np.maximum(s, e), re_], 0, duration))
        labels.append(np.r_[copy_labels, classes[rng.integers(len(classes), size=rest)]])
    n = PER_VIDEO * len(videos)
    return DetectionSet(np.concatenate(videos), np.concatenate(starts), np.concatenate(ends), np.concatenate(labels),
                        rng.random(n))


def measure(browser: Browser, page: Path, repeat: int) -> dict[str, float]:
    """Best-of-``repeat`` wall times (ms): open to ready, the page script alone, and three interactions."""
    out: dict[str, list[float]] = {"open_ms": [], "script_ms": [], "tiou_change_ms": [], "video_choice_ms": [],
                                   "slider_ms": [], "sort_ms": []}
    for _ in range(repeat):
        start = time.perf_counter()
        browser.open(page, timeout=120)
        out["open_ms"].append(1000 * (time.perf_counter() - start))
        out["script_ms"].append(browser.js("return window.tadkitView.loadMs"))
        browser.js("document.querySelector('[data-tab=videos]').click()")
        out["tiou_change_ms"].append(browser.js(
            "const s = document.getElementById('tiou'); const t0 = performance.now(); s.value = '0.7';"
            "s.dispatchEvent(new Event('change')); return performance.now() - t0"))
        out["video_choice_ms"].append(browser.js(
            "const t0 = performance.now(); window.tadkitView.selectVideo(1234); return performance.now() - t0"))
        out["slider_ms"].append(browser.js(
            "const s = document.getElementById('score'); const t0 = performance.now(); s.value = '0.5';"
            "s.dispatchEvent(new Event('input')); return performance.now() - t0"))
        out["sort_ms"].append(browser.js(
            "const t0 = performance.now(); document.querySelector('#video-table th[data-col=\"4\"]').click();"
            "return performance.now() - t0"))
    return {k: float(min(v)) for k, v in out.items()}


def main() -> int:
    from tadkit.data.annotations import load_annotations
    from tadkit.viz.report_html import Run, ViewSpec, view_data, write_page

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=os.environ.get("TADKIT_SHARED", str(REPO.parent / "shared")))
    parser.add_argument("--cap", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", default=None, help="write the pages here (default: a temp directory)")
    args = parser.parse_args()
    gt = load_annotations(Path(args.shared) / "data/activitynet/v1.3/bsn/anet_anno_action.json", subset="validation")
    dets = generated_predictions(gt)
    print(f"ActivityNet v1.3 validation: {len(gt.videos)} videos, {len(dets)} generated detections")
    out_dir = Path(args.keep or tempfile.mkdtemp(prefix="tadkit-view-bench-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    browser = Browser()
    try:
        for cap in (args.cap, None):
            start = time.perf_counter()
            data = view_data(ViewSpec(gt=gt, protocol="activitynet", subset="validation"), [Run("generated", dets)],
                             cap=cap)
            page = write_page(out_dir / f"view_cap{cap or 'none'}.html", data)
            build = time.perf_counter() - start
            stored = data["runs"][0]["det"]["n"]
            times = measure(browser, page, args.repeat)
            print(f"cap {cap or 'none'}: {stored} detections stored, {page.stat().st_size / 2**20:.1f} MiB, "
                  f"built in {build:.1f} s; " + ", ".join(f"{k} {v:.0f}" for k, v in times.items()))
    finally:
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
