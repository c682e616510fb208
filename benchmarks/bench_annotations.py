"""Annotation layer speed, each figure a ratio against a baseline timed in the same process.

1. Reader overhead: ``load_annotations`` (parse + validate + build records) vs the bare parse
   (``json.load`` / ``csv.reader`` / ``np.load``) of the same real file.
2. Statistics: vectorized ``annotation_stats`` vs a straightforward per-segment Python loop that
   computes the same per-subset A2Net bins and per-class counts (checked equal first).

Run: ``python benchmarks/bench_annotations.py`` (needs ../shared, or TADKIT_SHARED).
"""

from __future__ import annotations

import csv
import json
import os
from collections import Counter
from pathlib import Path

import numpy as np

from tadkit.data.annotations import A2NET_DURATION_BINS, annotation_stats, load_annotations

from _timing import best_of  # benchmarks/ is on sys.path when run as a script

SHARED = Path(os.environ.get("TADKIT_SHARED", Path(__file__).resolve().parents[2] / "shared"))




def bare_parse(path: Path) -> None:
    if path.is_dir() and (path / "segments.npy").exists():
        for name in ("classlist", "segments", "labels", "subset", "duration", "url"):
            np.load(path / f"{name}.npy", allow_pickle=True, encoding="bytes")
    elif path.is_dir():
        for txt in path.rglob("*.txt"):
            [line.split() for line in txt.read_text().splitlines()]
    elif path.suffix == ".csv":
        list(csv.reader(path.read_text().splitlines()))
    else:
        json.loads(path.read_text())


def loop_stats(aset) -> tuple[dict, Counter]:
    """Per-segment Python baseline for the binned counts."""
    bins: dict[str, Counter] = {}
    per_class: Counter = Counter()
    for video in aset.videos.values():
        for seg in video.segments:
            d = round(seg.end - seg.start, 6)
            per_class[(seg.label, video.subset)] += 1
            if d <= 0:
                continue
            name = next(b.name for b in A2NET_DURATION_BINS if d < b.high)
            bins.setdefault(video.subset, Counter())[name] += 1
    return bins, per_class


def main() -> None:
    files = [
        SHARED / "data/thumos14/actionformer/thumos14.json",
        SHARED / "data/thumos14/afsd/test_Annotation.csv",
        SHARED / "data/thumos14/evalkit",
        SHARED / "data/activitynet/v1.3/bsn/anet_anno_action.json",
        SHARED / "data/activitynet/v1.2/wtalc_npy",
    ]
    print(f"{'file':58s} {'instances':>9s} {'load s':>8s} {'parse s':>8s} {'ratio':>6s}")
    for path in files:
        if not path.exists():
            print(f"{str(path):58s} missing, skipped")
            continue
        aset = load_annotations(path)
        ours = best_of(lambda: load_annotations(path))
        base = best_of(lambda: bare_parse(path))
        name = str(path.relative_to(SHARED))
        print(f"{name:58s} {aset.num_instances():9d} {ours:8.3f} {base:8.3f} {ours / base:6.1f}x")

    aset = load_annotations(SHARED / "data/activitynet/v1.3/bsn/anet_anno_action.json")
    stats = annotation_stats(aset)
    bins, per_class = loop_stats(aset)
    for s in stats.subsets:  # same numbers before timing anything
        assert s.a2net_bins == {b.name: bins.get(s.name, Counter())[b.name] for b in A2NET_DURATION_BINS}
    assert all(c.instances[sub] == per_class[(c.name, sub)] for c in stats.classes for sub in c.instances)
    vec = best_of(lambda: annotation_stats(aset))
    loop = best_of(lambda: loop_stats(aset))
    print(f"\nstats on {aset.num_instances()} ActivityNet instances: annotation_stats {vec:.3f} s "
          f"(all tables) vs per-segment loop {loop:.3f} s (bins + class counts only): {loop / vec:.2f}x")


if __name__ == "__main__":
    main()
