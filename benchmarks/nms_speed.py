"""NMS speed: tadkit's grouped NMS vs plain references, run in the same process on the same data.

    python benchmarks/nms_speed.py [--seed 0]

Baselines:
* "python loop": pure Python, one video / one class / one candidate at a time (what a direct
  transcription of the official codes' logic costs without NumPy);
* "numpy per group": the official codes' style (A2Net ``temporal_nms``, AFSD ``softnms_v2``):
  a Python loop over videos and classes, vectorized suppression inside each class.
Each case checks that all implementations return the same detections before timing them.
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Callable

import numpy as np

from tadkit.data.records import DetectionSet
from tadkit.postprocess.nms import NMSConfig, nms_detection_set


def make_detections(num_videos: int, per_video: int, num_classes: int, seed: int,
                    classes_per_video: int | None = None) -> DetectionSet:
    """Sliding-window-like candidates: clustered around a few true actions per video, heavy overlap.

    ``classes_per_video``: each video draws its labels from that many of the classes (THUMOS
    videos mostly show one or two actions); ``None`` = labels uniform over all classes.
    """
    rng = np.random.default_rng(seed)
    n = num_videos * per_video
    video_of_row = np.repeat(np.arange(num_videos), per_video)
    videos = np.array([f"video_{i:04d}" for i in range(num_videos)], dtype=object)[video_of_row]
    centres = rng.uniform(0, 200, size=(num_videos, 8))
    centre = centres[video_of_row, rng.integers(0, 8, n)] + rng.normal(0, 2.0, n)
    length = rng.uniform(2, 15, n)
    if classes_per_video is None:
        label_index = rng.integers(0, num_classes, n)
    else:
        own = np.stack([rng.choice(num_classes, classes_per_video, replace=False) for _ in range(num_videos)])
        label_index = own[video_of_row, rng.integers(0, classes_per_video, n)]
    labels = np.array([f"class_{c:02d}" for c in range(num_classes)], dtype=object)[label_index]
    return DetectionSet(videos, centre - length / 2, centre + length / 2, labels, rng.random(n))


# ------------------------------------------------------------------ plain Python reference ---- #


def _iou(a0: float, a1: float, b0: float, b1: float) -> float:
    inter = max(0.0, min(a1, b1) - max(a0, b0))
    union = (a1 - a0) + (b1 - b0) - inter
    return inter / union if union > 0 else 0.0


def python_hard(dets: DetectionSet, thr: float, per_class: int | None) -> set[int]:
    groups: dict[tuple[str, str], list[int]] = {}
    for i, (v, c) in enumerate(zip(dets.video.tolist(), dets.label.tolist())):
        groups.setdefault((v, c), []).append(i)
    start, end, score = dets.start.tolist(), dets.end.tolist(), dets.score.tolist()
    kept: set[int] = set()
    for members in groups.values():
        members.sort(key=lambda i: (-score[i], i))
        chosen: list[int] = []
        for i in members:
            if per_class is not None and len(chosen) == per_class:
                break
            if all(_iou(start[i], end[i], start[k], end[k]) <= thr for k in chosen):
                chosen.append(i)
        kept.update(chosen)
    return kept


def python_soft(dets: DetectionSet, sigma: float, min_score: float, per_class: int) -> dict[int, float]:
    groups: dict[tuple[str, str], list[int]] = {}
    for i, (v, c) in enumerate(zip(dets.video.tolist(), dets.label.tolist())):
        groups.setdefault((v, c), []).append(i)
    start, end = dets.start.tolist(), dets.end.tolist()
    current = dets.score.tolist()
    out: dict[int, float] = {}
    for members in groups.values():
        pending = [i for i in members if current[i] >= min_score]
        emitted = 0
        while pending and emitted < per_class:
            best = max(pending, key=lambda i: (current[i], -i))
            out[best] = current[best]
            emitted += 1
            pending.remove(best)
            for j in pending:
                iou = _iou(start[j], end[j], start[best], end[best])
                current[j] *= math.exp(-iou * iou / sigma)
            pending = [j for j in pending if current[j] >= min_score]
    return out


# ------------------------------------------------------------ NumPy per-group reference ---- #


def numpy_hard(dets: DetectionSet, thr: float, per_class: int | None) -> set[int]:
    kept: set[int] = set()
    for video in np.unique(dets.video):
        in_video = np.flatnonzero(dets.video == video)
        for label in np.unique(dets.label[in_video]):
            idx = in_video[dets.label[in_video] == label]
            s, e, sc = dets.start[idx], dets.end[idx], dets.score[idx]
            order = np.lexsort((np.arange(len(idx)), -sc))
            chosen = []
            while order.size and (per_class is None or len(chosen) < per_class):
                i = order[0]
                chosen.append(i)
                rest = order[1:]
                inter = np.clip(np.minimum(e[i], e[rest]) - np.maximum(s[i], s[rest]), 0, None)
                union = (e[i] - s[i]) + (e[rest] - s[rest]) - inter
                iou = np.where(union > 0, inter / np.where(union > 0, union, 1), 0)
                order = rest[iou <= thr]
            kept.update(idx[chosen].tolist())
    return kept


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    best, result = math.inf, None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


def report(name: str, ours: float, baselines: dict[str, float]) -> None:
    parts = ", ".join(f"{b} {t * 1e3:8.1f} ms (x{t / ours:6.1f})" for b, t in baselines.items())
    print(f"  {name:<60} ours {ours * 1e3:7.1f} ms | {parts}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    cases = [
        ("200 videos x 50, 2 of 20 classes per video", make_detections(200, 50, 20, args.seed, 2)),
        ("200 videos x 50, labels uniform over 20", make_detections(200, 50, 20, args.seed)),
        ("1 video x 10k, 20 classes", make_detections(1, 10_000, 20, args.seed)),
        ("1 video x 10k, 1 class", make_detections(1, 10_000, 1, args.seed)),
    ]
    print("per-class hard NMS 0.2, <= 200 kept per class (A2Net); best of 5 (ours) / 1 (baselines)")
    for name, dets in cases:
        cfg = NMSConfig("hard", 0.2, max_per_class=200)
        t_ours, out = timed(lambda: nms_detection_set(dets, cfg), 5)
        t_np, ref_np = timed(lambda: numpy_hard(dets, 0.2, 200), 1)
        t_py, ref_py = timed(lambda: python_hard(dets, 0.2, 200), 1)
        ours_rows = set(zip(out.video, out.start, out.end, out.label))
        assert ours_rows == set(zip(*(dets.select(np.array(sorted(ref_py))).__dict__[k]
                                      for k in ("video", "start", "end", "label")))), "mismatch vs python"
        assert ref_np == ref_py, "numpy reference disagrees"
        report(f"{name} ({len(out)} kept)", t_ours, {"python loop": t_py, "numpy per group": t_np})

    print("per-class Gaussian soft-NMS sigma 0.5, min score 0.001, <= 5000 per class (AFSD)")
    for name, dets in cases[:3]:
        cfg = NMSConfig("gaussian", iou_threshold=0.0, sigma=0.5, min_score=0.001, max_per_class=5000)
        t_ours, out = timed(lambda: nms_detection_set(dets, cfg), 5)
        t_py, ref = timed(lambda: python_soft(dets, 0.5, 0.001, 5000), 1)
        assert len(out) == len(ref)
        assert np.allclose(np.sort(out.score), np.sort(np.fromiter(ref.values(), float)), atol=1e-9)
        report(f"{name} ({len(out)} kept)", t_ours, {"python loop": t_py})


if __name__ == "__main__":
    main()
