"""Windows: fixed-length stretches of a video's features, with ground truth in window steps.

Two ways to cut a video (both yield :class:`tadkit.data.records.Window`):

* **Sliding windows** (A2Net, spec a2net.md 1.2, generalized): regular starts ``0, s, 2s, ...`` while a
  whole window fits (``floor((L + s - W) / s)`` of them), plus a final window ending at the video
  end when ``L > W``; a video no longer than one window gets a single window at 0, padded by
  repeating its last feature. A GT is kept iff ``overlap / len(GT) > min_gt_coverage`` (0.9), and
  is clipped to the window. Training windows without kept GT are dropped; test windows are all kept.
  Position ``p`` of a window starting at feature ``k`` is at ``timing.index_to_seconds(k + p)``, so
  ``t0 = index_to_seconds(k)`` and ``step = stride_frames / fps``.
* **Whole-video resampling** to a fixed length L (A2Net-ANet 128, ECM 750/100, ACRNet 750/80):
  ``"interpolate"`` (linear, cell-centre aligned), ``"random"`` and ``"uniform"`` (ACRNet's train /
  test sampling, acrnet.md 1.2). Output step ``j`` covers input features ``[j n/L, (j+1) n/L)``.

All GT handling is vectorized over windows x segments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Sequence

import numpy as np

from tadkit.data.features import FeatureTiming
from tadkit.data.records import Window
from tadkit.errors import TadkitError

PadMode = Literal["repeat", "zero"]
ResampleMode = Literal["interpolate", "random", "uniform"]
from tadkit.data.choices import WINDOW_RESAMPLE_MODES as RESAMPLE_MODES  # noqa: E402
TimeBase = Literal["duration", "features"]

# Fixed lengths used by the published methods (whole-video mode).
RESAMPLE_PRESETS: dict[str, tuple[int, str]] = {
    "a2net_anet": (128, "interpolate"),
    "ecm_thumos": (750, "interpolate"),
    "ecm_anet": (100, "interpolate"),
    "acrnet_thumos": (750, "random/uniform"),
    "acrnet_anet": (80, "random/uniform"),
}


# --------------------------------------------------------------------------------------------------
# Sliding-window starts
# --------------------------------------------------------------------------------------------------


def window_starts(
    length: int,
    window: int,
    stride: int,
    *,
    training: bool = True,
    official_quirks: bool = False,
) -> np.ndarray:
    """Start positions of sliding windows over ``length`` units (frames or features).

    Default (generalized) rule: regular starts ``i * stride`` for ``i < floor((length + stride - window)
    / stride)``; a final start ``length - window`` when ``length > window`` (dropped if it repeats the
    last regular start); a sequence with no regular start gets the single start 0.

    ``official_quirks=True`` reproduces A2Net's script byte for byte: the count is truncated toward
    zero; the fallback start 0 exists only in training and only when the count is exactly 0 (a
    count of -1 or less gives no window); a duplicated final start is kept. So A2Net's script gives
    no training window when ``length <= window - 2 * stride`` (256 frames) and no test window when
    ``length < window`` (512 frames).
    """
    if window <= 0 or stride <= 0:
        raise ValueError(f"window and stride must be positive, got {window}, {stride}")
    length = int(length)
    if official_quirks:
        count = int((length + stride - window) / stride)  # int() truncates toward zero, like the script
        starts = [i * stride for i in range(count)]
        if training and count == 0:
            starts = [0]
        if length > window:
            starts.append(length - window)
        return np.asarray(starts, dtype=np.int64)
    count = max((length + stride - window) // stride, 0)
    starts = np.arange(count, dtype=np.int64) * stride
    if count == 0:
        starts = np.zeros(1, dtype=np.int64)
    if length > window and starts[-1] != length - window:
        starts = np.append(starts, np.int64(length - window))
    return starts


def sliding_windows(
    num_features: int,
    window: int = 128,
    stride: int = 32,
    *,
    training: bool = True,
    official_quirks: bool = False,
) -> np.ndarray:
    """Feature-index starts of the windows of a video with ``num_features`` features.

    Defaults are A2Net's THUMOS training setting: 128 features (512 frames), stride 32 (128 frames);
    its test stride is 64.
    """
    return window_starts(num_features, window, stride, training=training, official_quirks=official_quirks)


def frame_grid_starts(
    num_frames: int,
    window: int,
    stride: int,
    stride_frames: int,
    *,
    training: bool = True,
    official_quirks: bool = False,
) -> np.ndarray:
    """A2Net's exact rule: starts computed on the frame timeline, then feature index ``floor(b / stride_frames)``.

    ``window`` and ``stride`` are in features (128, 32/64); the frame timeline uses
    ``window * stride_frames`` (512) and ``stride * stride_frames`` (128/256).
    """
    frames = window_starts(
        num_frames, window * stride_frames, stride * stride_frames, training=training, official_quirks=official_quirks
    )
    starts = frames // stride_frames
    if not official_quirks and len(starts) > 1:
        starts = starts[np.concatenate([[True], np.diff(starts) != 0])]
    return starts


# --------------------------------------------------------------------------------------------------
# Ground truth inside windows
# --------------------------------------------------------------------------------------------------


def gt_coverage(starts: np.ndarray, window: float, segments: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fraction of every GT inside every window, and the GT clipped to each window.

    ``starts`` (K,) and ``segments`` (N, 2) share one unit (feature positions). Returns
    ``coverage`` (K, N) = overlap / GT length (0 for GT of length <= 0) and ``clipped`` (K, N, 2)
    in positions relative to each window start.
    """
    starts = np.asarray(starts, dtype=np.float64).reshape(-1)
    segments = np.asarray(segments, dtype=np.float64).reshape(-1, 2)
    rel = segments[None, :, :] - starts[:, None, None]  # (K, N, 2)
    clipped = np.clip(rel, 0.0, float(window))
    overlap = np.maximum(clipped[..., 1] - clipped[..., 0], 0.0)
    length = segments[:, 1] - segments[:, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        coverage = np.where(length[None, :] > 0, overlap / np.where(length > 0, length, 1.0)[None, :], 0.0)
    return coverage, clipped


def keep_mask(coverage: np.ndarray, min_coverage: float, inclusive: bool = False) -> np.ndarray:
    """GT kept in a window: coverage > min (A2Net) or >= min (``inclusive``, AFSD's ioa rule)."""
    return (coverage >= min_coverage) if inclusive else (coverage > min_coverage)


@dataclass(frozen=True)
class SlidingWindowConfig:
    """How to cut videos into sliding windows (all lengths in features)."""

    window: int = 128
    stride: int | None = None  # None: window // 4 in training, window // 2 at test (A2Net)
    min_gt_coverage: float = 0.9  # A2Net OVERLAP_RATIO_TH
    coverage_inclusive: bool = False  # True: keep GT with coverage >= min (AFSD) instead of >
    drop_empty: bool = True  # training only: drop windows with no kept GT
    require_full_gt: bool = False  # training only: keep a window only if a GT lies wholly inside (AFSD)
    pad: PadMode = "repeat"  # A2Net repeats the last feature; AFSD pads zeros
    start_grid: Literal["features", "frames"] = "features"  # "frames": A2Net's frame-timeline starts
    official_quirks: bool = False  # reproduce A2Net's count truncation / duplicate final window

    def __post_init__(self) -> None:
        if self.window <= 0 or (self.stride is not None and self.stride <= 0):
            raise ValueError(f"window and stride must be positive, got {self.window}, {self.stride}")
        if self.pad not in ("repeat", "zero"):
            raise ValueError(f"pad must be 'repeat' or 'zero', got {self.pad!r}")
        if self.start_grid not in ("features", "frames"):
            raise ValueError(f"start_grid must be 'features' or 'frames', got {self.start_grid!r}")
        if not 0.0 <= self.min_gt_coverage <= 1.0:
            raise ValueError(f"min_gt_coverage must be in [0, 1], got {self.min_gt_coverage}")

    def stride_for(self, training: bool) -> int:
        if self.stride is not None:
            return self.stride
        return max(self.window // 4, 1) if training else max(self.window // 2, 1)

    @classmethod
    def a2net_thumos(cls, **overrides: Any) -> "SlidingWindowConfig":
        """A2Net THUMOS14: 128 features, stride 32 train / 64 test, GT kept if > 90 % inside, repeat padding."""
        return cls(**{"window": 128, "stride": None, "min_gt_coverage": 0.9, "pad": "repeat", **overrides})


@dataclass
class WindowPlan:
    """A window decided from annotations and the feature count alone; features are read later."""

    video_id: str
    start: int  # first feature index
    window: int
    num_features: int  # of the whole video
    t0: float
    step: float
    gt_segments: np.ndarray  # (N, 2) float32, window steps
    gt_labels: np.ndarray  # (N,) int64

    @property
    def valid_length(self) -> int:
        return int(min(self.window, max(self.num_features - self.start, 0)))


def plan_sliding_windows(
    video_id: str,
    num_features: int,
    timing: FeatureTiming,
    segments: np.ndarray,
    labels: np.ndarray,
    config: SlidingWindowConfig,
    *,
    training: bool,
    num_frames: int | None = None,
) -> list[WindowPlan]:
    """Windows of one video with their GT, from the feature count and GT in seconds (no feature I/O)."""
    if num_features <= 0:
        raise TadkitError("has no features to cut windows from", video=video_id, field="length")
    stride = config.stride_for(training)
    if config.start_grid == "frames":
        if num_frames is None:
            raise TadkitError(
                "start_grid 'frames' needs the video's frame count (num_frames or duration and fps)",
                video=video_id,
                field="num_frames",
            )
        stride_frames = int(round(timing.stride_frames))
        if abs(stride_frames - timing.stride_frames) > 1e-6:
            raise TadkitError(
                f"start_grid 'frames' needs an integer feature stride, got {timing.stride_frames}",
                video=video_id,
                field="stride_frames",
            )
        starts = frame_grid_starts(
            num_frames, config.window, stride, stride_frames, training=training, official_quirks=config.official_quirks
        )
    else:
        starts = window_starts(
            num_features, config.window, stride, training=training, official_quirks=config.official_quirks
        )
    if len(starts) == 0:
        return []
    segments = np.asarray(segments, dtype=np.float64).reshape(-1, 2)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    positions = timing.seconds_to_index(segments)  # (N, 2) feature positions
    coverage, clipped = gt_coverage(starts, config.window, positions)
    keep = keep_mask(coverage, config.min_gt_coverage, config.coverage_inclusive)
    has_gt = keep.any(axis=1)
    if training and config.require_full_gt:
        has_gt &= (coverage >= 1.0 - 1e-9).any(axis=1)
    t0 = timing.index_to_seconds(starts)
    step = timing.seconds_per_feature
    plans = []
    for i, start in enumerate(starts.tolist()):
        if training and (config.drop_empty or config.require_full_gt) and not has_gt[i]:
            continue
        rows = keep[i]
        plans.append(
            WindowPlan(
                video_id=video_id,
                start=int(start),
                window=config.window,
                num_features=int(num_features),
                t0=float(t0[i]),
                step=step,
                gt_segments=clipped[i, rows].astype(np.float32),
                gt_labels=labels[rows].copy(),
            )
        )
    return plans


def cut_window(features: Any, start: int, window: int, pad: PadMode = "repeat") -> tuple[np.ndarray, int]:
    """Rows ``[start, start + window)`` of ``features`` as float32, padded to ``window``; (array, valid_length).

    ``features`` is any (T, D) array-like supporting row slicing (a memmap reads only these rows).
    """
    num = features.shape[0]
    rows = np.array(features[start : min(start + window, num)], dtype=np.float32)
    valid = rows.shape[0]
    if valid == window:
        return rows, valid
    if valid == 0:
        raise ValueError(f"window start {start} lies beyond the {num} features")
    out = np.empty((window, rows.shape[1]), dtype=np.float32)
    out[:valid] = rows
    out[valid:] = rows[-1] if pad == "repeat" else 0.0
    return out, valid


def materialize(plan: WindowPlan, features: Any, pad: PadMode = "repeat") -> Window:
    """Read a planned window's rows from ``features`` ((T, D) array, memmap or :class:`VideoFeatures`)."""
    array, valid = cut_window(features, plan.start, plan.window, pad)
    return Window(
        video_id=plan.video_id,
        features=array,
        t0=plan.t0,
        step=plan.step,
        gt_segments=plan.gt_segments,
        gt_labels=plan.gt_labels,
        valid_length=valid,
    )


def make_sliding_windows(
    video_id: str,
    features: np.ndarray,
    timing: FeatureTiming,
    segments: np.ndarray,
    labels: np.ndarray,
    config: SlidingWindowConfig = SlidingWindowConfig(),
    *,
    training: bool,
    num_frames: int | None = None,
) -> list[Window]:
    """All sliding windows of one video (features in memory or memory-mapped)."""
    plans = plan_sliding_windows(
        video_id, features.shape[0], timing, segments, labels, config, training=training, num_frames=num_frames
    )
    return [materialize(plan, features, config.pad) for plan in plans]


# --------------------------------------------------------------------------------------------------
# Whole-video resampling
# --------------------------------------------------------------------------------------------------


def resample_indices(
    num_features: int, length: int, mode: ResampleMode, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Feature indices picked by ACRNet's sampling (acrnet.md 1.2).

    ``"random"`` (training): bin ``i`` spans ``[floor(i n / L), floor((i+1) n / L))``; take its start if
    empty, else a uniform random index in it (short videos repeat indices). ``"uniform"`` (test):
    ``floor(i n / L)``, or every index when ``n <= L`` (the output is then shorter than L).
    """
    n, L = int(num_features), int(length)
    if n <= 0 or L <= 0:
        raise ValueError(f"need positive lengths, got n={n}, L={L}")
    i = np.arange(L, dtype=np.int64)
    if mode == "uniform":
        return np.arange(n, dtype=np.int64) if n <= L else (i * n) // L
    if mode == "random":
        rng = rng if rng is not None else np.random.default_rng()
        lo = (i * n) // L  # exact integer floor of i * n / L
        hi = ((i + 1) * n) // L
        return np.where(hi > lo, rng.integers(lo, np.maximum(hi, lo + 1)), lo)
    raise ValueError(f"mode must be 'random' or 'uniform' for index sampling, got {mode!r}")


def interpolation_weights(num_features: int, length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Linear interpolation at cell centres (like ``F.interpolate(mode="linear", align_corners=False)``).

    Output ``j`` samples input coordinate ``(j + 0.5) n / L - 0.5`` clamped to ``[0, n - 1]``; returns
    (lower index, upper index, upper weight), each (L,).
    """
    n, L = int(num_features), int(length)
    x = (np.arange(L, dtype=np.float64) + 0.5) * (n / L) - 0.5
    x = np.clip(x, 0.0, n - 1)
    lower = np.floor(x).astype(np.int64)
    upper = np.minimum(lower + 1, n - 1)
    return lower, upper, (x - lower)


def resample_features(
    features: Any,
    length: int,
    mode: ResampleMode = "interpolate",
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Resample a (n, D) feature sequence to ``length`` steps -> float32 (length, D).

    ``"uniform"`` returns all n rows when ``n <= length`` (ACRNet test behaviour).
    """
    n = features.shape[0]
    if n == 0:
        raise ValueError("cannot resample an empty feature sequence")
    if mode == "interpolate":
        lower, upper, weight = interpolation_weights(n, length)
        w = weight.astype(np.float32)[:, None]
        # fancy indexing gathers only the needed rows (memmap friendly) into fresh arrays we may overwrite
        out = np.asarray(features[lower], dtype=np.float32)
        out *= 1.0 - w
        upper_rows = np.asarray(features[upper], dtype=np.float32)
        upper_rows *= w
        out += upper_rows  # in place: no extra (L, D) temporaries on the hot path
        return out
    if mode in ("random", "uniform"):
        return np.asarray(features[resample_indices(n, length, mode, rng)], dtype=np.float32)
    raise ValueError(f"mode must be one of {RESAMPLE_MODES}, got {mode!r}")


def resampled_time_mapping(
    num_features: int,
    out_length: int,
    timing: FeatureTiming | None,
    *,
    time_base: TimeBase = "duration",
    duration: float | None = None,
    video_id: str = "",
) -> tuple[float, float]:
    """(t0, step) of a whole-video window of ``out_length`` steps made from ``num_features`` features.

    ``"duration"``: t0 = 0, step = duration / out_length (features assumed to span the whole video;
    what ECM and A2Net-ActivityNet do). ``"features"``: through the feature clock, t0 = time of
    feature 0, step = (n / out_length) * stride_frames / fps (right when features do not cover the
    whole video, e.g. ACRNet drops the last partial 16-frame chunk).
    """
    if time_base == "duration":
        if duration is None or not duration > 0:
            raise TadkitError(
                "whole-video windows with time_base 'duration' need the video duration; the annotations give none",
                video=video_id,
                field="duration",
            )
        return 0.0, float(duration) / out_length
    if time_base == "features":
        if timing is None:
            raise ValueError("time_base 'features' needs a FeatureTiming")
        return float(timing.t0), float(num_features) / out_length * timing.seconds_per_feature
    raise ValueError(f"time_base must be 'duration' or 'features', got {time_base!r}")


def make_resampled_window(
    video_id: str,
    features: Any,
    timing: FeatureTiming | None,
    segments: np.ndarray,
    labels: np.ndarray,
    length: int,
    *,
    mode: ResampleMode = "interpolate",
    time_base: TimeBase = "duration",
    duration: float | None = None,
    min_gt_coverage: float = 0.0,
    rng: np.random.Generator | None = None,
) -> Window:
    """One window holding the whole video resampled to ``length`` steps, GT mapped to those steps.

    GT is clipped to ``[0, steps]`` and kept if more than ``min_gt_coverage`` of it lies inside.
    """
    n = features.shape[0]
    array = resample_features(features, length, mode, rng)
    steps = array.shape[0]
    t0, step = resampled_time_mapping(n, steps, timing, time_base=time_base, duration=duration, video_id=video_id)
    segments = np.asarray(segments, dtype=np.float64).reshape(-1, 2)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    positions = (segments - t0) / step
    coverage, clipped = gt_coverage(np.zeros(1), steps, positions)
    keep = keep_mask(coverage[0], min_gt_coverage) & (clipped[0, :, 1] > clipped[0, :, 0])
    return Window(
        video_id=video_id,
        features=array,
        t0=t0,
        step=step,
        gt_segments=clipped[0, keep].astype(np.float32),
        gt_labels=labels[keep].copy(),
        valid_length=steps,
    )


# --------------------------------------------------------------------------------------------------
# Batching
# --------------------------------------------------------------------------------------------------


def collate_windows(windows: Sequence[Window]) -> dict[str, Any]:
    """Batch windows for a model: the contract of :mod:`tadkit.models.base`.

    ``features``: (B, D, T) float32 (windows shorter than the longest are zero-padded; ``valid_length``
    in ``meta`` says how many steps are real); ``targets``: per window ``segments`` (N, 2) float32 in
    window steps and ``labels`` (N,) int64; ``meta``: video_id, t0, step, valid_length.
    """
    import torch

    if not windows:
        raise ValueError("cannot collate an empty list of windows")
    dims = {w.features.shape[1] for w in windows}
    if len(dims) != 1:
        raise ValueError(f"windows disagree on the feature dimension: {sorted(dims)}")
    steps = max(w.features.shape[0] for w in windows)
    batch = np.zeros((len(windows), dims.pop(), steps), dtype=np.float32)
    for i, w in enumerate(windows):
        batch[i, :, : w.features.shape[0]] = w.features.T  # one transposed copy straight into (D, T)
    targets = [
        {
            "segments": torch.from_numpy(np.ascontiguousarray(w.gt_segments, dtype=np.float32).reshape(-1, 2)),
            "labels": torch.from_numpy(np.ascontiguousarray(w.gt_labels, dtype=np.int64).reshape(-1)),
        }
        for w in windows
    ]
    meta = [
        {"video_id": w.video_id, "t0": float(w.t0), "step": float(w.step), "valid_length": int(w.valid_length)}
        for w in windows
    ]
    return {"features": torch.from_numpy(batch), "targets": targets, "meta": meta}


__all__ = [
    "RESAMPLE_MODES",
    "RESAMPLE_PRESETS",
    "SlidingWindowConfig",
    "WindowPlan",
    "collate_windows",
    "cut_window",
    "frame_grid_starts",
    "gt_coverage",
    "interpolation_weights",
    "keep_mask",
    "make_resampled_window",
    "make_sliding_windows",
    "materialize",
    "plan_sliding_windows",
    "resample_features",
    "resample_indices",
    "resampled_time_mapping",
    "sliding_windows",
    "window_starts",
]
