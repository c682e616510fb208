"""Speed of the data hot paths against simple baselines run in the same process.

    python benchmarks/bench_windows.py

Prints, for each path, our time, the baseline's time and the speed-up ratio:
1. GT-to-window assignment for a THUMOS-sized training set (vectorized vs a loop per window and GT).
2. Reading sliding windows from disk (memory-mapped row slices vs loading the whole file per window).
3. Whole-video linear resampling (vectorized gather vs a loop per output step).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from tadkit.data.features import FeatureSpec, FeatureStore, FeatureTiming, save_features
from tadkit.data.windows import SlidingWindowConfig, plan_sliding_windows, resample_features, window_starts

from _timing import best_of  # benchmarks/ is on sys.path when run as a script




def _report(name: str, ours: float, baseline: float) -> None:
    print(f"{name:<46} ours {ours * 1e3:9.2f} ms   baseline {baseline * 1e3:9.2f} ms   speed-up x{baseline / ours:7.1f}")


def bench_gt_assignment() -> None:
    rng = np.random.default_rng(0)
    timing = FeatureTiming.clip_start(30.0, 4, 16)
    videos = []
    for _ in range(200):  # THUMOS validation: 200 videos, ~15 instances each, ~3 min long
        n = int(rng.integers(500, 3000))
        starts = rng.uniform(0, n * 4 / 30 - 10, 15)
        segments = np.stack([starts, starts + rng.uniform(0.5, 8, 15)], axis=1)
        videos.append((n, segments, rng.integers(0, 20, 15)))
    config = SlidingWindowConfig.a2net_thumos()

    def ours() -> None:
        for i, (n, segments, labels) in enumerate(videos):
            plan_sliding_windows(f"v{i}", n, timing, segments, labels, config, training=True)

    def baseline() -> None:
        for n, segments, labels in videos:
            for start in window_starts(n, 128, 32).tolist():
                kept = []
                for (s, e), label in zip(segments, labels):
                    s_pos, e_pos = s * 30 / 4 - start, e * 30 / 4 - start
                    overlap = min(e_pos, 128) - max(s_pos, 0)
                    if overlap / (e_pos - s_pos) > 0.9:
                        kept.append((max(s_pos, 0), min(e_pos, 128), label))

    _report("GT assignment, 200 videos x 15 GT", best_of(ours), best_of(baseline))


def bench_window_reads() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        spec = FeatureSpec(fps=30.0, dim=2048)
        features = np.random.default_rng(0).standard_normal((6000, 2048)).astype(np.float32)  # ~49 MB
        save_features(root, "v", features, spec)
        spec.save(root)
        store = FeatureStore(root)
        starts = window_starts(6000, 128, 32)

        def ours() -> None:
            video = store.video("v")
            for s in starts:
                video[s : s + 128]

        def baseline() -> None:
            for s in starts:
                np.load(root / "v.npy")[s : s + 128]

        _report(f"read {len(starts)} windows of a 49 MB video", best_of(ours), best_of(baseline, repeat=1))


def bench_resample() -> None:
    for dim in (2048, 64):  # wide rows hide the loop's per-step overhead; narrow rows expose it
        features = np.random.default_rng(0).standard_normal((5000, dim)).astype(np.float32)

        def ours() -> None:
            resample_features(features, 750)

        def baseline() -> None:
            n, length = features.shape[0], 750
            out = np.empty((length, features.shape[1]), np.float32)
            for j in range(length):
                x = min(max((j + 0.5) * n / length - 0.5, 0.0), n - 1)
                i0 = int(x)
                i1 = min(i0 + 1, n - 1)
                out[j] = features[i0] * (1 - (x - i0)) + features[i1] * (x - i0)

        _report(f"linear resampling 5000 -> 750 steps, D={dim}", best_of(ours, 5), best_of(baseline, 5))


if __name__ == "__main__":
    bench_gt_assignment()
    bench_window_reads()
    bench_resample()
