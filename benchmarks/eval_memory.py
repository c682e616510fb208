"""Peak memory (RSS) of reading a large annotation file and a large prediction file.

Generates (once, in --dir) an ActivityNet-style annotation JSON of about 100 MB and 1M
predictions as ActivityNet JSON, THUMOS txt and CSV, then reads each one in a fresh process and
prints that process's peak RSS (``VmHWM`` of /proc/self/status; ``ru_maxrss`` would include the
forking parent) next to the file size and the RSS of a process that
only imports tadkit (the floor). ``--pythonpath DIR`` measures another copy of the package (e.g. an
older checkout unpacked with ``git archive``) for before/after figures.

    python benchmarks/eval_memory.py [--dir /tmp/tadkit_mem] [--pythonpath DIR] [--videos 60000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

CLASSES = [f"Class number {i:03d}" for i in range(200)]


def make_annotations(path: Path, videos: int, per_video: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write('{"version": "VERSION 1.3", "taxonomy": [], "database": {')
        for v in range(videos):
            duration = float(np.round(rng.uniform(30, 300), 2))
            starts = np.sort(rng.uniform(0, duration * 0.8, per_video))
            ends = np.minimum(starts + rng.uniform(1, 40, per_video), duration)
            labels = rng.integers(0, len(CLASSES), per_video)
            entry = {"subset": "validation" if v % 3 else "training", "duration": duration,
                     "url": f"https://www.youtube.com/watch?v=vid{v:08d}", "resolution": "1280x720",
                     "annotations": [{"segment": [round(float(s), 3), round(float(e), 3)], "label": CLASSES[c]}
                                     for s, e, c in zip(starts, ends, labels)]}
            handle.write(("" if v == 0 else ", ") + json.dumps(f"vid{v:08d}") + ": " + json.dumps(entry))
        handle.write("}}")


def make_predictions(directory: Path, count: int, videos: int, seed: int = 0) -> dict[str, Path]:
    rng = np.random.default_rng(seed)
    video = rng.integers(0, videos, count)
    order = np.argsort(video, kind="stable")
    video = video[order]
    start = np.round(rng.uniform(0, 250, count), 4)
    end = np.round(start + rng.uniform(0.5, 30, count), 4)
    label = rng.integers(0, 20, count)
    score = np.round(rng.random(count), 6)
    names = [f"video_test_{v:07d}" for v in range(videos)]
    paths = {"json": directory / "pred_1m.json", "txt": directory / "pred_1m.txt", "csv": directory / "pred_1m.csv"}
    results: dict[str, list] = {}
    for v, s, e, c, sc in zip(video.tolist(), start.tolist(), end.tolist(), label.tolist(), score.tolist()):
        results.setdefault(names[v], []).append({"label": CLASSES[c], "score": sc, "segment": [s, e]})
    with open(paths["json"], "w", encoding="utf-8") as handle:
        json.dump({"version": "VERSION 1.3", "results": results, "external_data": {}}, handle)
    del results
    ids = np.array([7, 9, 12, 21, 22, 23, 24, 26, 31, 33, 36, 40, 45, 51, 68, 79, 85, 92, 93, 97])
    with open(paths["txt"], "w", encoding="utf-8") as handle:
        handle.writelines(f"{names[v]} {s} {e} {ids[c]} {sc}\n" for v, s, e, c, sc in
                          zip(video.tolist(), start.tolist(), end.tolist(), label.tolist(), score.tolist()))
    with open(paths["csv"], "w", encoding="utf-8") as handle:
        handle.write("video,start,end,label,score\n")
        handle.writelines(f"{names[v]},{s},{e},{CLASSES[c]},{sc}\n" for v, s, e, c, sc in
                          zip(video.tolist(), start.tolist(), end.tolist(), label.tolist(), score.tolist()))
    return paths


CHILD = """
import sys, time
kind, path = sys.argv[1], sys.argv[2]
from tadkit.data.annotations import load_annotations
from tadkit.evaluation import load_predictions
t = time.perf_counter()
if kind == "annotations":
    obj = load_annotations(path)
    n = sum(len(v.segments) for v in obj.videos.values())
elif kind == "predictions":
    obj = load_predictions(path)
    n = len(obj)
else:
    n = 0
elapsed = time.perf_counter() - t
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0].split()[1]
print(int(hwm) / 1024, n, elapsed)
"""


def peak_mb(kind: str, path: Path | str, pythonpath: str | None) -> tuple[float, int, float]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    out = subprocess.run([sys.executable, "-c", CHILD, kind, str(path)], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    return float(out[0]), int(out[1]), float(out[2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="/tmp/tadkit_mem", help="where the generated files are kept")
    parser.add_argument("--pythonpath", default=None, help="measure the tadkit package found here instead")
    parser.add_argument("--videos", type=int, default=200000, help="annotation videos (200000 x 6 instances ~ 100 MB)")
    parser.add_argument("--predictions", type=int, default=1_000_000)
    args = parser.parse_args()
    directory = Path(args.dir)
    directory.mkdir(parents=True, exist_ok=True)
    ann = directory / f"annotations_{args.videos}.json"
    if not ann.exists():
        make_annotations(ann, args.videos, 6)
    marker = directory / f"pred_{args.predictions}.done"
    paths = {"json": directory / "pred_1m.json", "txt": directory / "pred_1m.txt", "csv": directory / "pred_1m.csv"}
    if not marker.exists():
        paths = make_predictions(directory, args.predictions, 1000)
        marker.write_text("ok")
    floor, _, _ = peak_mb("none", "-", args.pythonpath)
    print(f"tadkit from {args.pythonpath or 'this checkout'}; import-only process: {floor:.0f} MB peak RSS")
    print(f"{'input':<34} {'file MB':>8} {'rows':>9} {'peak MB':>8} {'- floor':>8} {'time s':>7}")
    for kind, path in (("annotations", ann), ("predictions", paths["json"]), ("predictions", paths["txt"]),
                       ("predictions", paths["csv"])):
        peak, rows, elapsed = peak_mb(kind, path, args.pythonpath)
        print(f"{kind + ' ' + path.name:<34} {path.stat().st_size / 2**20:>8.1f} {rows:>9d} {peak:>8.0f} "
              f"{peak - floor:>8.0f} {elapsed:>7.2f}")


if __name__ == "__main__":
    main()
