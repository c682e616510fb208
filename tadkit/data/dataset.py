"""Torch datasets: annotations + a feature store -> :class:`Window` samples for the engine.

* :class:`WindowDataset` (fully supervised): ``mode="sliding"`` cuts every video into windows
  (planned once at construction from feature counts and GT; features are read lazily, window by
  window, from memory-mapped files); ``mode="resample"`` gives one window per video resampled to a
  fixed length.
* :class:`VideoDataset` (weakly supervised): one whole video per sample plus its video-level
  multi-hot labels.

Batch with :func:`collate_windows` / :func:`collate_videos`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from tadkit.data.features import FeatureStore, FeatureTiming, frames_at
from tadkit.data.records import AnnotationSet, VideoAnnotation, Window
from tadkit.data.windows import (
    RESAMPLE_MODES,
    PadMode,
    SlidingWindowConfig,
    TimeBase,
    WindowPlan,
    collate_windows,
    make_resampled_window,
    materialize,
    plan_sliding_windows,
)
from tadkit.errors import TadkitError

# "acrnet": random sampling in training, uniform sampling at test (acrnet.md 1.2).
DATASET_RESAMPLE_MODES = (*RESAMPLE_MODES, "acrnet")


def video_targets(annotations: AnnotationSet, video: VideoAnnotation) -> tuple[np.ndarray, np.ndarray]:
    """GT of one video: (N, 2) float64 seconds and (N,) int64 class indices."""
    labels = []
    for segment in video.segments:
        if not annotations.has_class(segment.label):
            raise TadkitError(
                f"label {segment.label!r} is not in the class list ({len(annotations.classes)} classes)",
                file=annotations.source or None,
                video=video.video_id,
                field="label",
            )
        labels.append(annotations.class_index(segment.label))
    return video.segment_array(), np.asarray(labels, dtype=np.int64)


def _torch_rng() -> np.random.Generator:
    """NumPy generator seeded from torch's RNG, so DataLoader worker seeding and torch.manual_seed apply."""
    return np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))


@dataclass
class _VideoEntry:
    video_id: str
    num_features: int
    timing: FeatureTiming
    duration: float | None
    segments: np.ndarray
    labels: np.ndarray


class WindowDataset(Dataset):
    """Windows of annotated videos, features read lazily through ``feature_store``.

    ``window``: window length in features (sliding) or the fixed length L (resample; ``None`` keeps
    every video at its own length). ``stride``: sliding stride in features (default window // 4 in
    training, window // 2 at test, as A2Net). ``min_gt_coverage`` defaults to 0.9 for sliding windows
    and 0 (any overlap) for whole videos. ``check`` validates the videos with
    :meth:`FeatureStore.check` (without scanning values) before anything else.
    """

    def __init__(
        self,
        annotations: AnnotationSet,
        feature_store: FeatureStore,
        mode: Literal["sliding", "resample"] = "sliding",
        window: int | None = 128,
        stride: int | None = None,
        subset: str | list[str] | None = None,
        training: bool = True,
        *,
        min_gt_coverage: float | None = None,
        coverage_inclusive: bool = False,
        drop_empty: bool = True,
        require_full_gt: bool = False,
        pad: PadMode = "repeat",
        start_grid: Literal["features", "frames"] = "features",
        official_quirks: bool = False,
        resample_mode: str = "interpolate",
        time_base: TimeBase = "duration",
        min_features: int = 1,
        check: bool = True,
        progress: bool = True,
    ) -> None:
        if mode not in ("sliding", "resample"):
            raise ValueError(f"mode must be 'sliding' or 'resample', got {mode!r}")
        if mode == "sliding" and window is None:
            raise ValueError("sliding windows need a window length")
        if resample_mode not in DATASET_RESAMPLE_MODES:
            raise ValueError(f"resample_mode must be one of {DATASET_RESAMPLE_MODES}, got {resample_mode!r}")
        if time_base not in ("duration", "features"):
            raise ValueError(f"time_base must be 'duration' or 'features', got {time_base!r}")
        self.annotations = annotations.subset(subset)
        if not self.annotations.videos:
            raise TadkitError(
                f"no videos in subset {subset!r} (subsets: {annotations.subsets})",
                file=annotations.source or None,
                field="subset",
            )
        self.store = feature_store
        self.mode = mode
        self.training = training
        self.window = window
        self.time_base = time_base
        self.resample_mode = resample_mode
        if min_gt_coverage is None:
            min_gt_coverage = 0.9 if mode == "sliding" else 0.0
        self.min_gt_coverage = float(min_gt_coverage)
        self.config = SlidingWindowConfig(
            window=window if window is not None else 1,
            stride=stride,
            min_gt_coverage=self.min_gt_coverage,
            coverage_inclusive=coverage_inclusive,
            drop_empty=drop_empty,
            require_full_gt=require_full_gt,
            pad=pad,
            start_grid=start_grid,
            official_quirks=official_quirks,
        )
        if check:
            feature_store.check(self.annotations, scan_values=False, progress=progress)

        self.videos: dict[str, _VideoEntry] = {}
        self.skipped: list[str] = []  # videos with fewer than min_features features
        self.plans: list[WindowPlan] = []
        iterator = tqdm(
            self.annotations.videos.values(), desc="index windows", unit="video", disable=not progress, leave=False
        )
        for video in iterator:
            n = feature_store.num_features(video.video_id)
            if n < min_features:
                self.skipped.append(video.video_id)
                continue
            timing = feature_store.timing(video.video_id, video)
            segments, labels = video_targets(self.annotations, video)
            entry = _VideoEntry(video.video_id, n, timing, video.duration, segments, labels)
            self.videos[video.video_id] = entry
            if mode == "sliding":
                frames = frames_at(video, timing.fps) if start_grid == "frames" else None
                self.plans.extend(
                    plan_sliding_windows(
                        video.video_id,
                        n,
                        timing,
                        segments,
                        labels,
                        self.config,
                        training=training,
                        num_frames=None if frames is None else int(round(frames)),
                    )
                )
        self._order = list(self.videos)

    def __len__(self) -> int:
        return len(self.plans) if self.mode == "sliding" else len(self._order)

    def _sampling_mode(self) -> str:
        if self.resample_mode == "acrnet":
            return "random" if self.training else "uniform"
        return self.resample_mode

    def __getitem__(self, index: int) -> Window:
        if self.mode == "sliding":
            plan = self.plans[index]
            return materialize(plan, self.store.video(plan.video_id), self.config.pad)
        entry = self.videos[self._order[index]]
        features = self.store.video(entry.video_id)
        if self.window is None:  # whole video at its own feature rate
            return make_resampled_window(
                entry.video_id,
                features,
                entry.timing,
                entry.segments,
                entry.labels,
                entry.num_features,
                mode="uniform",
                time_base="features",
                min_gt_coverage=self.min_gt_coverage,
            )
        mode = self._sampling_mode()
        return make_resampled_window(
            entry.video_id,
            features,
            entry.timing,
            entry.segments,
            entry.labels,
            self.window,
            mode=mode,  # type: ignore[arg-type]
            time_base=self.time_base,
            duration=entry.duration,
            min_gt_coverage=self.min_gt_coverage,
            rng=_torch_rng() if mode == "random" else None,
        )

    def windows_per_video(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        if self.mode == "sliding":
            for plan in self.plans:
                counts[plan.video_id] = counts.get(plan.video_id, 0) + 1
        else:
            counts = {vid: 1 for vid in self._order}
        return counts


@dataclass
class VideoSample:
    """A whole video for weak supervision: its window and video-level multi-hot labels (C,)."""

    window: Window
    video_labels: np.ndarray  # (C,) float32, 1 for every class with at least one instance


class VideoDataset(Dataset):
    """Whole videos with video-level labels (ECM, ACRNet).

    ``length`` resamples every video to a fixed length (ECM 750/100 with ``resample_mode=
    "interpolate"``; ACRNet 750/80 with ``"acrnet"``); ``None`` keeps each video at its own length.
    """

    def __init__(
        self,
        annotations: AnnotationSet,
        feature_store: FeatureStore,
        length: int | None = 750,
        subset: str | list[str] | None = None,
        training: bool = True,
        *,
        resample_mode: str = "interpolate",
        time_base: TimeBase = "duration",
        min_features: int = 1,
        check: bool = True,
        progress: bool = True,
    ) -> None:
        self.inner = WindowDataset(
            annotations,
            feature_store,
            mode="resample",
            window=length,
            subset=subset,
            training=training,
            resample_mode=resample_mode,
            time_base=time_base,
            min_features=min_features,
            check=check,
            progress=progress,
        )
        self.num_classes = len(self.inner.annotations.classes)
        self._labels: dict[str, np.ndarray] = {}
        for vid, entry in self.inner.videos.items():
            multi_hot = np.zeros(self.num_classes, dtype=np.float32)
            multi_hot[entry.labels] = 1.0  # from every instance of the video, not only those inside
            self._labels[vid] = multi_hot

    @property
    def video_ids(self) -> list[str]:
        return list(self.inner._order)

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, index: int) -> VideoSample:
        window = self.inner[index]
        return VideoSample(window=window, video_labels=self._labels[window.video_id])


def collate_videos(samples: list[VideoSample]) -> dict[str, Any]:
    """:func:`collate_windows` of the samples' windows plus ``video_labels`` (B, C) float32."""
    batch = collate_windows([s.window for s in samples])
    batch["video_labels"] = torch.from_numpy(np.stack([s.video_labels for s in samples]).astype(np.float32))
    return batch


__all__ = [
    "DATASET_RESAMPLE_MODES",
    "VideoDataset",
    "VideoSample",
    "WindowDataset",
    "collate_videos",
    "collate_windows",
    "video_targets",
]
