"""Whole-video samples with ActionFormer's training-time random truncation (``data.mode: video``).

At test time a sample is the whole video at its own feature rate (the model pads it). In training a
video longer than ``max_len`` features, or any video when ``crop_ratio`` is set, is cut to a random
stretch as the official ``truncate_feats`` (libs/datasets/data_utils.py) does:

1. with ``crop_ratio = (lo, hi)`` and a video of ``T <= max_len`` features, the kept length is a
   random integer in ``[max(round(lo T), 1), min(round(hi T), T)]`` (the video is kept whole when
   it draws ``T``; without ``crop_ratio`` such a video is always kept whole);
2. the start is a random integer in ``[0, T - length]``; a start is accepted when at least one
   segment keeps ``trunc_thresh`` of its length inside ``[start - offset, start + length + offset]``
   (``offset`` = half a feature clip, in features); after ``max_trials`` refused starts the last one
   is used;
3. the segments kept are those with that ratio, clipped to the widened window and shifted by the
   start; the others are dropped.

Deviation: the official code draws the starts one by one from Python's ``random``; here the
``max_trials`` starts come in one draw from a NumPy generator seeded from torch's RNG (so
``torch.manual_seed`` and DataLoader worker seeds apply), and the first accepted one is used: the
same distribution, another random stream.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_TRIALS = 200  # the official default


@dataclass(frozen=True)
class Truncation:
    """What :func:`truncate_video` chose: rows ``[start, start + length)``, the GT in those steps."""

    start: int
    length: int
    segments: np.ndarray  # (N, 2) float32, in steps of the kept stretch
    labels: np.ndarray  # (N,) int64


def crop_length(num_features: int, max_len: int, crop_ratio: tuple[float, float] | None,
                rng: np.random.Generator) -> int:
    """How many features a training sample keeps (step 1 of the module docstring)."""
    if num_features > max_len:
        return max_len
    if crop_ratio is None:
        return num_features
    # Python's round (half to even), as the official code: the bounds must match it exactly
    low = max(round(crop_ratio[0] * num_features), 1)
    high = min(round(crop_ratio[1] * num_features), num_features)
    return int(rng.integers(low, high, endpoint=True))


def truncate_video(num_features: int, segments: np.ndarray, labels: np.ndarray, *, max_len: int,
                   trunc_thresh: float, offset: float, crop_ratio: tuple[float, float] | None,
                   rng: np.random.Generator, max_trials: int = MAX_TRIALS) -> Truncation:
    """ActionFormer's random truncation of one training video (module docstring); ``segments`` in
    feature steps of the whole video."""
    segments = np.asarray(segments, dtype=np.float32).reshape(-1, 2)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    length = crop_length(num_features, max_len, crop_ratio, rng)
    if length == num_features:
        return Truncation(0, num_features, segments, labels)
    starts = rng.integers(0, num_features - length, size=max_trials, endpoint=True)
    window = np.stack([starts, starts + length], axis=1).astype(np.float32)  # (trials, 2)
    left = np.maximum(window[:, None, 0] - np.float32(offset), segments[None, :, 0])  # (trials, N)
    right = np.minimum(window[:, None, 1] + np.float32(offset), segments[None, :, 1])
    inside = np.clip(right - left, 0.0, None)
    with np.errstate(divide="ignore", invalid="ignore"):  # a zero-length segment: nan/inf as the official
        ratio = inside / np.abs(segments[None, :, 1] - segments[None, :, 0])
    kept = ratio >= trunc_thresh
    accepted = np.flatnonzero(kept.any(axis=1))
    trial = int(accepted[0]) if accepted.size else max_trials - 1
    start = int(starts[trial])
    rows = kept[trial]
    cut = np.stack([left[trial, rows], right[trial, rows]], axis=1) - np.float32(start)
    return Truncation(start, length, cut.astype(np.float32), labels[rows].copy())


__all__ = ["MAX_TRIALS", "Truncation", "crop_length", "truncate_video"]
