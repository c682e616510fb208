"""How hard is the synthetic benchmark? Frame probes and two small detectors, scored with the official
THUMOS14 protocol on the synthetic test subset.

    python benchmarks/synth_learnability.py [--dim 256 --videos 60 --epochs 12] [--difficulty hard]

Reports, for models trained on `validation` and evaluated on `test`:
  * linear frame probe: 20-way accuracy on action frames vs majority chance, action/background balanced accuracy;
  * mAP@tIoU of a per-frame linear classifier and of a small dilated temporal conv net (TCN), both turned
    into segments by multi-threshold grouping + per-class NMS. Neither is a real TAL model: a well-built
    detector (A2Net and successors) should score above the TCN, and far below 100 %.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from tadkit.data.records import DetectionSet
from tadkit.data.synthetic import (
    SynthConfig,
    center_labels,
    difficulty_from_spec,
    make_timelines,
    make_world,
    render_features,
)
from tadkit.evaluation.detection import evaluate
from tadkit.ops import tiou_pairwise

THRESHOLDS = (0.15, 0.3, 0.45, 0.6, 0.75)


def build(config: SynthConfig):
    timelines = make_timelines(config)
    world = make_world(timelines.classes, config)
    features, labels = {}, {}
    for video in timelines.videos.values():
        x = render_features(world, video, config)
        features[video.video_id] = x
        labels[video.video_id] = center_labels(video, timelines.classes, len(x), config)
    return timelines, features, labels


def ridge(x: np.ndarray, y: np.ndarray, k: int, lam: float = 1e-3):
    mean, std = x.mean(0), x.std(0) + 1e-6
    z = (x - mean) / std
    t = np.eye(k)[y]
    w = np.linalg.solve(z.T @ z + lam * len(z) * np.eye(z.shape[1]), z.T @ (t - t.mean(0)))
    return lambda q: ((q - mean) / std) @ w + t.mean(0)


def nms(segments: np.ndarray, scores: np.ndarray, threshold: float = 0.4) -> np.ndarray:
    order = np.argsort(-scores, kind="stable")
    iou = tiou_pairwise(segments[order], segments[order])
    keep = np.ones(len(order), dtype=bool)
    for i in range(len(order)):  # benchmark helper; candidate counts are small
        if keep[i]:
            keep[i + 1 :] &= iou[i, i + 1 :] <= threshold
    return order[keep]


def segments_from_probs(video_id: str, probs: np.ndarray, fps: float, classes: list[str]) -> DetectionSet:
    """Connected runs above several thresholds -> segments (clip-start timing, 4-frame stride)."""
    step = 4 / fps
    rows = []
    for c in range(1, probs.shape[1]):
        cands, scores = [], []
        for th in THRESHOLDS:
            runs, n = ndimage.label(probs[:, c] > th)
            if n == 0:
                continue
            idx = ndimage.find_objects(runs)
            for sl in idx:
                a, b = sl[0].start, sl[0].stop
                # content of feature k is centred 8 frames after its nominal time
                cands.append(((a + 2) * step, (b + 2) * step))
                scores.append(float(probs[a:b, c].mean()) * min(1.0, (b - a) / 3))
        if not cands:
            continue
        seg, sc = np.array(cands), np.array(scores)
        for i in nms(seg, sc):
            rows.append((video_id, seg[i, 0], seg[i, 1], classes[c - 1], sc[i]))
    if not rows:
        return DetectionSet.empty()
    v, s, e, lab, sc = zip(*rows)
    return DetectionSet(np.array(v, object), np.array(s), np.array(e), np.array(lab, object), np.array(sc))


class TCN(nn.Module):
    """Per-frame classifier with a ~60-feature receptive field (dilated residual 1-D convs)."""

    def __init__(self, dim: int, width: int = 128, classes: int = 21) -> None:
        super().__init__()
        self.inp = nn.Conv1d(dim, width, 1)
        self.blocks = nn.ModuleList(nn.Conv1d(width, width, 3, padding=d, dilation=d) for d in (1, 2, 4, 8, 16))
        self.out = nn.Conv1d(width, classes, 1)
        self.drop = nn.Dropout(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.inp(self.drop(x)))
        for conv in self.blocks:
            h = h + torch.relu(conv(h))
        return self.out(self.drop(h))


def crop(array: np.ndarray, start: int, length: int, fill: float) -> np.ndarray:
    """array[start:start+length], padded with ``fill`` past the end."""
    part = array[start : start + length]
    pad = [(0, length - len(part))] + [(0, 0)] * (array.ndim - 1)
    return np.pad(part, pad, constant_values=fill)


def train_tcn(xs, ys, dim, epochs, window=256, batch_size=16, seed=0):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    stacked = np.concatenate(xs)
    mean, std = stacked.mean(0), stacked.std(0) + 1e-6
    xs = [((x - mean) / std).astype(np.float32) for x in xs]
    model = TCN(dim)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    chunks = [(i, s) for i, x in enumerate(xs) for s in range(0, max(1, len(x) - window + 1), window // 2)]
    batches = max(1, len(chunks) // batch_size)
    for epoch in range(epochs):
        model.train()
        total = 0.0
        for batch in np.array_split(rng.permutation(len(chunks)), batches):
            xb = np.stack([crop(xs[chunks[j][0]], chunks[j][1], window, 0.0) for j in batch])
            yb = np.stack([crop(ys[chunks[j][0]] + 1, chunks[j][1], window, -100) for j in batch])
            logits = model(torch.from_numpy(xb).transpose(1, 2))
            loss = nn.functional.cross_entropy(logits, torch.from_numpy(yb.astype(np.int64)), ignore_index=-100)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
        print(f"  tcn epoch {epoch + 1}/{epochs} loss {total / batches:.3f}", flush=True)
    model.eval()

    def predict(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            logits = model(torch.from_numpy(((x - mean) / std).astype(np.float32)).T[None])
        return torch.softmax(logits[0], dim=0).T.numpy()

    return predict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--videos", type=int, default=60)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-video-seconds", type=float, default=600.0)
    parser.add_argument("--difficulty", nargs="*", default=[])
    args = parser.parse_args()
    torch.set_num_threads(2)

    config = SynthConfig(seed=args.seed, dim=args.dim, videos=args.videos, max_video_seconds=args.max_video_seconds,
                         difficulty=difficulty_from_spec(args.difficulty))
    started = time.perf_counter()
    timelines, features, labels = build(config)
    print(f"generated {len(features)} videos ({sum(len(x) for x in features.values())} features, "
          f"{args.dim}-d) in {time.perf_counter() - started:.1f} s")
    train_ids = list(timelines.subset("validation").videos)
    test_ids = list(timelines.subset("test").videos)
    x_train = np.concatenate([features[v] for v in train_ids]).astype(np.float64)
    y_train = np.concatenate([labels[v] for v in train_ids])
    x_test = np.concatenate([features[v] for v in test_ids]).astype(np.float64)
    y_test = np.concatenate([labels[v] for v in test_ids])

    # Frame probes.
    seen = np.bincount(y_train[y_train >= 0], minlength=20) >= 20
    tr, te = (y_train >= 0) & seen[np.maximum(y_train, 0)], (y_test >= 0) & seen[np.maximum(y_test, 0)]
    scores = ridge(x_train[tr], y_train[tr], 20)(x_test[te])
    scores[:, ~seen] = -np.inf
    acc = (scores.argmax(1) == y_test[te]).mean()
    chance = np.bincount(y_test[te]).max() / te.sum()
    act = ridge(x_train, (y_train >= 0).astype(int), 2)(x_test).argmax(1) == 1
    bal = 0.5 * (act[y_test >= 0].mean() + (~act[y_test < 0]).mean())
    print(f"linear frame probe: 20-way action accuracy {acc:.3f} (majority chance {chance:.3f}); "
          f"action/background balanced accuracy {bal:.3f}")

    gt = timelines.subset("test")
    tious = [0.3, 0.5, 0.7]

    def score(predict, name):
        dets = DetectionSet.concatenate(
            segments_from_probs(v, predict(features[v]), gt.videos[v].fps, timelines.classes) for v in test_ids
        )
        result = evaluate(gt, dets, "thumos14", tiou_thresholds=tious)
        print(f"{name}: mAP@" + ", ".join(f"{t}={100 * m:.1f}%" for t, m in zip(tious, result.mAP)))

    linear = ridge(x_train, y_train + 1, 21)
    score(lambda x: np.clip(linear(x.astype(np.float64)), 0, 1), "per-frame linear + grouping")
    started = time.perf_counter()
    predict = train_tcn([features[v] for v in train_ids], [labels[v] for v in train_ids], args.dim, args.epochs)
    print(f"  tcn trained in {time.perf_counter() - started:.0f} s")
    score(predict, "dilated TCN + grouping")


if __name__ == "__main__":
    main()
