"""ActivityNet-like synthetic timelines vs the real ActivityNet annotations, statistic by statistic.

    python benchmarks/synth_activitynet_stats.py [--videos 2000] [--seed 0] [--classes 100]

Reads ``../shared/data/activitynet`` (v1.3 BSN train+val and v1.2 W-TALC train+val; whichever exist),
builds ``--videos`` timelines per subset with ``SynthConfig(preset="activitynet")`` (timelines only,
no features: this takes seconds) and prints one table of :func:`tadkit.data.synthetic.timeline_stats`.
The thumos14 preset is shown for contrast. The tests assert the same statistics on fewer videos.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tadkit.data.synthetic import SynthConfig, make_timelines, timeline_stats

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "activitynet"
SOURCES = {"v1.3 BSN": SHARED / "v1.3" / "bsn", "v1.2 W-TALC": SHARED / "v1.2" / "wtalc_npy"}
ROWS = (
    ("videos", "{:.0f}"), ("classes", "{:.0f}"), ("instances_per_video_mean", "{:.2f}"),
    ("instances_per_video_median", "{:.0f}"), ("videos_with_1_instance", "{:.3f}"),
    ("videos_with_3_or_more", "{:.3f}"), ("instances_per_video_max", "{:.0f}"),
    ("coverage_median", "{:.3f}"), ("coverage_mean", "{:.3f}"), ("coverage_p25", "{:.3f}"),
    ("coverage_p75", "{:.3f}"), ("videos_covered_over_95pct", "{:.3f}"), ("instance_share_median", "{:.3f}"),
    ("instance_share_p25", "{:.3f}"), ("instance_share_p75", "{:.3f}"), ("instance_seconds_median", "{:.1f}"),
    ("video_seconds_median", "{:.1f}"), ("video_seconds_p5", "{:.1f}"), ("video_seconds_p95", "{:.1f}"),
    ("single_class_videos", "{:.3f}"), ("overlap_pairs", "{:.3f}"), ("videos_at_30fps", "{:.3f}"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=2000, help="synthetic videos per subset (default 2000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--classes", type=int, default=100)
    args = parser.parse_args()

    from tadkit.data.annotations import load_annotations

    columns: dict[str, dict[str, float]] = {}
    for name, path in SOURCES.items():
        if path.exists():
            columns[name] = timeline_stats(load_annotations(path))
        else:
            print(f"skipping {name}: {path} not found")
    synth = make_timelines(SynthConfig(seed=args.seed, preset="activitynet", num_classes=args.classes,
                                       videos=args.videos))
    columns[f"synthetic activitynet ({args.videos}+{args.videos})"] = timeline_stats(synth)
    columns[f"synthetic thumos14 ({args.videos}+{args.videos})"] = timeline_stats(
        make_timelines(SynthConfig(seed=args.seed, videos=args.videos)))
    subsets = {s: len(synth.subset(s).videos) for s in synth.subsets}
    print(f"synthetic activitynet subsets: {subsets}")

    names = list(columns)
    width = max(len(r) for r, _ in ROWS)
    print("| statistic | " + " | ".join(names) + " |")
    print("| --- |" + " --- |" * len(names))
    for row, fmt in ROWS:
        cells = [fmt.format(columns[n][row]) if columns[n][row] == columns[n][row] else "n/a" for n in names]
        print(f"| {row:<{width}} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
