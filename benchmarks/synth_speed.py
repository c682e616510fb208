"""Speed of synthetic feature generation, as a ratio to drawing the same array of Gaussian noise.

    python benchmarks/synth_speed.py [--repeats 5]

Baseline (same process, same sizes): ``rng.standard_normal((T, D), dtype=float32)``, the cost of the
cheapest possible "features" of that shape. The generator adds class/phase/scene/background latents
and two channel mixings on top; the ratio says what that structure costs. Also times a demo-sized
dataset written to disk (32 videos at 256-d), which the demo needs in seconds.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from tadkit.data.records import Segment, VideoAnnotation
from tadkit.data.synthetic import THUMOS14_CLASSES, SynthConfig, generate_dataset, make_world, render_features

from _timing import best_of  # benchmarks/ is on sys.path when run as a script




def ten_minute_video() -> VideoAnnotation:
    """600 s at 30 fps (4500 features) with 90 instances, denser than a typical THUMOS video."""
    starts = np.arange(90) * 6.5 + 5.0
    segments = [Segment(float(s), float(s + 3.0), THUMOS14_CLASSES[i % 20]) for i, s in enumerate(starts)]
    return VideoAnnotation("bench", "test", duration=600.0, fps=30.0, segments=segments, num_frames=18000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    video = ten_minute_video()
    for dim in (2048, 256):
        config = SynthConfig(dim=dim)
        world = make_world(THUMOS14_CLASSES, config)
        features = render_features(world, video, config)  # warm-up
        rng = np.random.default_rng(0)
        baseline = best_of(lambda: rng.standard_normal(features.shape, dtype=np.float32), args.repeats)
        ours = best_of(lambda: render_features(world, video, config), args.repeats)
        print(
            f"10-min video {features.shape[0]}x{dim}: {ours * 1e3:.0f} ms "
            f"(noise-only baseline {baseline * 1e3:.0f} ms, ratio {ours / baseline:.2f}x, "
            f"{features.shape[0] / ours:,.0f} features/s)"
        )

    with tempfile.TemporaryDirectory() as tmp:
        config = SynthConfig(dim=256, videos=16, seed=0)
        start = time.perf_counter()
        out = generate_dataset(Path(tmp) / "demo", config, progress=False)
        elapsed = time.perf_counter() - start
        size = sum(p.stat().st_size for p in (out / "features").glob("*.npy"))
        count = len(list((out / "features").glob("*.npy")))
        print(f"demo-sized dataset: {count} videos at 256-d ({size / 1e6:.0f} MB) written in {elapsed:.1f} s")


if __name__ == "__main__":
    main()
