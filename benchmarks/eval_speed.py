"""Speed of tadkit's vectorized evaluators against straightforward loop implementations.

Both run in this process on the same data; the script prints seconds and the speed-up ratio, and
checks that the numbers agree. Workloads (real GT from ../shared when present, else synthetic of
the same size):

* ActivityNet v1.3 validation (4728 videos, 7293 instances, 200 classes), ~30k predictions,
  10 tIoU thresholds, protocol ``activitynet``;
* THUMOS14 evalkit test (213 videos, 3358 instances + 99 Ambiguous), ~15k predictions,
  7 thresholds, protocol ``thumos14``;
* proposals AR@AN on 1000 ActivityNet validation videos, ~100 proposals each.

The loop references are the readable restatements of the official code in
tests/test_evaluation_reference.py (already faster than the official pandas ``iterrows`` code).

    python benchmarks/eval_speed.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from test_evaluation_reference import (  # noqa: E402
    gt_rows_of,
    make_dets,
    make_gt,
    perturb_gt,
    pred_rows_of,
    reference_activitynet,
    reference_proposals,
    reference_thumos14,
)

from tadkit.data.records import AnnotationSet  # noqa: E402
from tadkit.evaluation import evaluate, evaluate_proposals  # noqa: E402

SHARED = Path(os.environ.get("TADKIT_SHARED", REPO.parent / "shared"))


def best_time(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def synthetic_gt(rng, n_videos: int, n_classes: int, per_video: float, ambiguous: bool = False):
    videos, amb = {}, {}
    classes = [f"class_{i:03d}" for i in range(n_classes)]
    for i in range(n_videos):
        segs = []
        for _ in range(max(1, rng.poisson(per_video))):
            s = rng.random() * 100
            segs.append((s, s + 1 + rng.random() * 30, classes[rng.integers(n_classes)]))
        videos[f"v_{i:05d}"] = segs
        if ambiguous and rng.random() < 0.3:
            s = rng.random() * 100
            amb[f"v_{i:05d}"] = [(s, s + 3)]
    return make_gt(videos, classes, amb)


def load_gt(kind: str, rng):
    try:
        from tadkit.data.annotations import load_annotations

        if kind == "anet":
            path = SHARED / "data" / "activitynet" / "v1.3" / "bsn" / "anet_anno_action.json"
            if path.exists():
                return load_annotations(path, subset="validation"), "ActivityNet v1.3 validation (BSN)"
        else:
            path = SHARED / "data" / "thumos14" / "evalkit" / "test"
            if path.exists():
                return load_annotations(path), "THUMOS14 evalkit test"
    except ImportError:
        pass
    if kind == "anet":
        return synthetic_gt(rng, 4728, 200, 1.5), "synthetic, ActivityNet-sized"
    return synthetic_gt(rng, 213, 20, 15.8, ambiguous=True), "synthetic, THUMOS14-sized"


def report(name: str, fast: float, slow: float, agree: float) -> None:
    print(f"{name:<44} tadkit {fast * 1000:8.1f} ms   loop reference {slow:7.2f} s   "
          f"ratio {slow / fast:7.1f}x   max |diff| {agree:.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of the fast path (best is kept)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)

    gt, source = load_gt("anet", rng)
    dets = perturb_gt(gt, rng, copies=(1, 4), extra_fp=13000)
    thresholds = [round(0.5 + 0.05 * k, 10) for k in range(10)]
    fast, result = best_time(lambda: evaluate(gt, dets, "activitynet", thresholds), args.repeat)
    gt_rows, _ = gt_rows_of(gt)
    slow, ref = best_time(lambda: reference_activitynet(gt_rows, pred_rows_of(dets), thresholds), 1)
    diff = max(abs(a - b) for c in ref for a, b in zip(ref[c], result.per_class[c]))
    print(f"[{source}: {len(gt.videos)} videos, {gt.num_instances()} GT, {len(dets)} predictions, 10 tIoU]")
    report("activitynet protocol", fast, slow, diff)

    gt_t, source_t = load_gt("thumos", rng)
    dets_t = perturb_gt(gt_t, rng, copies=(2, 6), extra_fp=2000)
    thr_t = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
    fast, result = best_time(lambda: evaluate(gt_t, dets_t, "thumos14", thr_t), args.repeat)
    rows_t, amb_t = gt_rows_of(gt_t)
    slow, ref = best_time(
        lambda: reference_thumos14(rows_t, pred_rows_of(dets_t), amb_t, thr_t, classes=gt_t.classes), 1)
    diff = max(abs(a - b) for c in ref for a, b in zip(ref[c], result.per_class[c]))
    print(f"[{source_t}: {len(gt_t.videos)} videos, {gt_t.num_instances()} GT, {len(dets_t)} predictions, 7 tIoU]")
    report("thumos14 protocol", fast, slow, diff)

    vids = list(gt.videos)[:1000]
    sub = AnnotationSet({v: gt.videos[v] for v in vids}, gt.classes)
    rows = []
    for v in vids:
        for _ in range(100):
            s = rng.random() * 120
            rows.append((v, s, s + rng.random() * 60, "p", rng.random()))
    props = make_dets(rows)
    tiou = np.round(0.5 + 0.05 * np.arange(10), 10)
    fast, result = best_time(lambda: evaluate_proposals(sub, props, tiou), args.repeat)
    sub_rows, _ = gt_rows_of(sub)
    prop_rows = [(v, s, e, sc) for v, s, e, _, sc in rows]
    slow, (recall, _, _) = best_time(lambda: reference_proposals(sub_rows, prop_rows, 100, tiou), 1)
    print(f"[{source}: first 1000 videos, {len(props)} proposals]")
    report("proposals AR@AN (100 points)", fast, slow, float(np.abs(np.array(result.recall) - recall).max()))


if __name__ == "__main__":
    main()
