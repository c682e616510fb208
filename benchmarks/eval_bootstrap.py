"""Time `bootstrap` (1000 resamples of the videos) and `compare` on real ground truth.

ActivityNet v1.3 validation (BSN copy, 4728 videos) with ~28k predictions made from the GT
(jittered copies, wrong labels, false positives), protocol activitynet; THUMOS14 test (evalkit)
with thumos14. Needs ../shared (or TADKIT_SHARED).

    OMP_NUM_THREADS=1 python benchmarks/eval_bootstrap.py [--resamples 1000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TADKIT_SHARED", REPO.parent / "shared"))
sys.path.insert(0, str(REPO / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    from test_evaluation_reference import perturb_gt

    from tadkit.data.annotations import load_annotations
    from tadkit.evaluation import evaluate
    from tadkit.evaluation.bootstrap import bootstrap, compare

    cases = [("ActivityNet v1.3 val", SHARED / "data/activitynet/v1.3/bsn/anet_anno_action.json", "validation",
              "activitynet", dict(copies=(2, 6), extra_fp=3000)),
             ("THUMOS14 test", SHARED / "data/thumos14/evalkit/test", "test", "thumos14", dict(copies=(2, 7)))]
    for name, path, subset, protocol, kw in cases:
        gt = load_annotations(path, subset=subset)
        a = perturb_gt(gt, np.random.default_rng(0), **kw)
        b = perturb_gt(gt, np.random.default_rng(1), **kw)
        t = time.perf_counter()
        evaluate(gt, a, protocol)
        plain = time.perf_counter() - t
        t = time.perf_counter()
        res, boot = bootstrap(gt, a, protocol, n_resamples=args.resamples, seed=0)
        t_boot = time.perf_counter() - t
        t = time.perf_counter()
        _, _, cmp = compare(gt, a, b, protocol, n_resamples=args.resamples, seed=0)
        t_cmp = time.perf_counter() - t
        print(f"{name}: {len(gt.videos)} videos, {len(a)} predictions, protocol {protocol}")
        print(f"  plain evaluate {plain:.2f} s; bootstrap x{args.resamples} {t_boot:.2f} s; "
              f"compare x{args.resamples} {t_cmp:.2f} s")
        print(f"  average mAP {100 * res.average_mAP:.2f}, 95% CI [{100 * boot.average_mAP_ci[0]:.2f}, "
              f"{100 * boot.average_mAP_ci[1]:.2f}], bootstrap bias {100 * boot.average_mAP_bias:+.2f}; "
              f"B-A {100 * cmp.average_difference:+.2f}, p = {cmp.average_p_value:.3f}")


if __name__ == "__main__":
    main()
