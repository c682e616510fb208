"""Torch datasets: annotations + a feature store -> :class:`Window` samples for the engine.

* :class:`WindowDataset` (fully supervised): ``mode="sliding"`` cuts every video into windows
  (planned once at construction from feature counts and GT; features are read lazily, window by
  window, from memory-mapped files); ``mode="resample"`` gives one window per video resampled to a
  fixed length; ``mode="video"`` one window per video at its own feature rate, randomly cut to at
  most ``window`` features in training (ActionFormer, :mod:`tadkit.data.truncate`).
* :class:`VideoDataset` (weakly supervised): one whole video per sample, its video-level multi-hot
  labels and the meta CAS -> seconds needs (fps, frame_num, duration); no segment boundaries at all.

Batch with :func:`collate_windows` / :func:`collate_videos`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset
from tadkit.utils.progress import progress as tqdm  # a bar on a terminal, plain lines in a log

from tadkit.data.choices import RESAMPLE_MODES as CHOICE_RESAMPLE_MODES
from tadkit.data.features import FeatureStore, FeatureTiming, frames_at, subsample_store
from tadkit.data.records import AnnotationSet, VideoAnnotation, Window
from tadkit.data.truncate import truncate_video
from tadkit.data.windows import (
    PadMode,
    SlidingWindowConfig,
    TimeBase,
    WindowPlan,
    collate_windows,
    make_resampled_window,
    materialize,
    plan_sliding_windows,
    resample_features,
    resampled_time_mapping,
)
from tadkit.errors import TadkitError

# the window modes + "acrnet": random per-bin sampling in training, uniform at test (acrnet.md 1.2)
DATASET_RESAMPLE_MODES = CHOICE_RESAMPLE_MODES


def subset_with_videos(annotations: AnnotationSet, subset: str | list[str] | None) -> AnnotationSet:
    """The videos of ``subset`` (aliases accepted); a subset without any video is an error naming the file."""
    chosen = annotations.subset(subset)
    if not chosen.videos:
        raise TadkitError(f"no videos in subset {subset!r} (subsets: {annotations.subsets})",
                          file=annotations.source or None, field="subset")
    return chosen


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


def upsampled_timing(entry: _VideoEntry, length: int | None = None) -> FeatureTiming:
    """ActionFormer's ``force_upsampling`` clock: the features span ``(n - 1) x stride + clip`` frames, cut
    into ``length`` equal steps, each standing for its centre (step frames = clip frames, offset half a step)."""
    base = entry.timing
    span = (entry.num_features - 1) * base.stride_frames + base.clip_frames
    step = span / float(length if length is not None else entry.num_features)
    return FeatureTiming(base.fps, step, step, step / 2.0)


def upsampled_targets(timing: FeatureTiming, entry: _VideoEntry, length: int, training: bool,
                      trunc_thresh: float) -> tuple[np.ndarray, np.ndarray]:
    """GT in resampled steps; in training ActionFormer's ActivityNet fix for videos with missing frames:
    a segment starting past the features' end (``length`` + half a step) is dropped, one reaching past it
    is kept when ``trunc_thresh`` of it lies inside, clipped there."""
    positions = timing.seconds_to_index(entry.segments).astype(np.float32).reshape(-1, 2)
    labels = entry.labels
    if not training:
        return positions, labels
    end = np.float32(length + 0.5)
    with np.errstate(divide="ignore", invalid="ignore"):
        inside = (np.minimum(positions[:, 1], end) - positions[:, 0]) / (positions[:, 1] - positions[:, 0])
    keep = (positions[:, 0] < end) & (inside >= trunc_thresh)
    return np.minimum(positions[keep], end), labels[keep]


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
    and 0 (any overlap) for whole videos. ``feature_subsample`` k keeps every k-th feature (feature j =
    stored feature j k, ``stride_frames`` x k; :class:`SubsampledFeatureStore`). ``check`` validates the
    videos with :meth:`FeatureStore.check` (without scanning values) before anything else.
    """

    def __init__(
        self,
        annotations: AnnotationSet,
        feature_store: FeatureStore,
        mode: Literal["sliding", "resample", "video"] = "sliding",
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
        feature_subsample: int = 1,
        trunc_thresh: float = 0.5,
        crop_ratio: tuple[float, float] | None = None,
        video_length: int | None = None,
        check: bool = True,
        progress: bool = True,
    ) -> None:
        if mode not in ("sliding", "resample", "video"):
            raise ValueError(f"mode must be 'sliding', 'resample' or 'video', got {mode!r}")
        if mode in ("sliding", "video") and window is None:
            raise ValueError(f"mode {mode!r} needs a window length")
        if resample_mode not in DATASET_RESAMPLE_MODES:
            raise ValueError(f"resample_mode must be one of {DATASET_RESAMPLE_MODES}, got {resample_mode!r}")
        if time_base not in ("duration", "features"):
            raise ValueError(f"time_base must be 'duration' or 'features', got {time_base!r}")
        self.annotations = subset_with_videos(annotations, subset)
        # every feature_subsample-th feature, stride_frames x k; files are checked as stored
        feature_store = subsample_store(feature_store, feature_subsample)
        self.store = feature_store
        self.mode = mode
        self.training = training
        self.window = window
        self.time_base = time_base
        self.resample_mode = resample_mode
        self.trunc_thresh = float(trunc_thresh)
        self.crop_ratio = None if crop_ratio is None else (float(crop_ratio[0]), float(crop_ratio[1]))
        self.video_length = None if video_length is None else int(video_length)
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
        self.min_features = int(min_features)
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
            if mode == "video" and training and drop_empty and len(labels) == 0:
                continue  # nothing to learn from (ActionFormer's loader refuses such a video)
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
        if self.mode == "video":
            return self._whole_video(entry, features)
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

    def _whole_video(self, entry: _VideoEntry, features: Any) -> Window:
        """``mode="video"``: the video at its own rate (or linearly resampled to ``video_length``), GT in
        its steps (not clipped, as ActionFormer); in training cut by :func:`tadkit.data.truncate.truncate_video`."""
        if self.video_length is None:
            rows, timing = features, entry.timing
            labels = entry.labels
            positions = timing.seconds_to_index(entry.segments).astype(np.float32).reshape(-1, 2)
        else:
            rows = resample_features(features, self.video_length, "interpolate")
            timing = upsampled_timing(entry, self.video_length)
            positions, labels = upsampled_targets(timing, entry, self.video_length, self.training, self.trunc_thresh)
        num_steps = int(rows.shape[0])
        start, length = 0, num_steps
        if self.training:
            cut = truncate_video(num_steps, positions, labels, max_len=int(self.window or 0),
                                 trunc_thresh=self.trunc_thresh, crop_ratio=self.crop_ratio, rng=_torch_rng(),
                                 offset=timing.clip_frames / (2.0 * timing.stride_frames))
            start, length, positions, labels = cut.start, cut.length, cut.segments, cut.labels
        return Window(
            video_id=entry.video_id,
            features=np.array(rows[start:start + length], dtype=np.float32),
            t0=float(timing.index_to_seconds(start)),
            step=timing.seconds_per_feature,
            gt_segments=positions,
            gt_labels=np.asarray(labels, dtype=np.int64).copy(),
            valid_length=int(length),
        )

    def windows_per_video(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        if self.mode == "sliding":
            for plan in self.plans:
                counts[plan.video_id] = counts.get(plan.video_id, 0) + 1
        else:
            counts = {vid: 1 for vid in self._order}
        return counts


# --------------------------------------------------------------------------------------------------
# Weak supervision: whole videos + video-level labels, never a segment
# --------------------------------------------------------------------------------------------------


def video_label_matrix(
    annotations: AnnotationSet,
    video_ids: list[str] | None = None,
    *,
    require_labels: bool = False,
) -> np.ndarray:
    """Video-level multi-hot labels (N, C) float32 from any annotation format tadkit reads.

    A class is positive when the video has at least one instance of it (THUMOS14 ``Ambiguous`` spans
    are not instances: the evalkit reader keeps them apart). Errors (:class:`TadkitError` naming the
    file, the video and the field): a label outside the class list (``label``); with
    ``require_labels``, a video without any label (``labels``: a weak method cannot train on it).
    """
    ids = list(annotations.videos) if video_ids is None else list(video_ids)
    out = np.zeros((len(ids), len(annotations.classes)), dtype=np.float32)
    source = annotations.source or None
    for row, vid in enumerate(ids):
        video = annotations.videos[vid]
        for segment in video.segments:
            if not annotations.has_class(segment.label):
                raise TadkitError(
                    f"label {segment.label!r} is not in the class list ({len(annotations.classes)} classes)",
                    file=source, video=vid, field="label",
                )
            out[row, annotations.class_index(segment.label)] = 1.0
        if require_labels and not out[row].any():
            raise TadkitError(
                "training video has no action label: weak supervision needs at least one class per video "
                "(drop the video from the training subset or annotate it)",
                file=source, video=vid, field="labels",
            )
    return out


@dataclass(frozen=True, slots=True)
class VideoSample:
    """A whole video for weak supervision. There is deliberately no segment field (``slots``: none can
    be attached), so segment boundaries cannot reach a weakly supervised method through the data path."""

    features: np.ndarray  # (T, D) float32, time-major
    meta: dict[str, Any]  # video_id, t0, step, valid_length, fps, frame_num, duration, num_features
    video_labels: np.ndarray  # (C,) float32 multi-hot

    @property
    def video_id(self) -> str:
        return str(self.meta["video_id"])


@dataclass(frozen=True)
class _VideoRecord:
    video_id: str
    num_features: int
    timing: FeatureTiming
    duration: float | None
    fps: float | None
    frame_num: int | None
    labels: np.ndarray  # (C,) float32 multi-hot


class VideoDataset(Dataset):
    """Whole videos with video-level labels only (ECM, ACRNet): one sample per video.

    ``length`` resamples every video to T steps: ``resample_mode="interpolate"`` (ECM: linear
    interpolation at cell centres, THUMOS14 T = 750, ActivityNet T = 100; a video with fewer features
    than T is stretched, which is fine), ``"acrnet"`` (random bins in training, uniform at test),
    ``"uniform"`` / ``"random"``; ``None`` keeps each video at its own length. ``time_base``:
    ``"duration"`` (t0 = 0, step = duration / T) or ``"features"`` (the feature clock).

    Every sample's ``meta`` carries what CAS -> seconds needs: ``fps`` (the video's native rate when
    the annotations or the features know it, else ``default_fps``), ``frame_num`` (number of frames at
    that rate: the annotated count, else round(duration x fps)), ``duration``, ``num_features``.
    Training (``training=True``) requires at least one label per video (``require_labels``).
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
        default_fps: float | None = None,
        require_labels: bool | None = None,
        check: bool = True,
        progress: bool = True,
    ) -> None:
        if resample_mode not in DATASET_RESAMPLE_MODES:
            raise ValueError(f"resample_mode must be one of {DATASET_RESAMPLE_MODES}, got {resample_mode!r}")
        if time_base not in ("duration", "features"):
            raise ValueError(f"time_base must be 'duration' or 'features', got {time_base!r}")
        if length is not None and (isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1):
            raise TadkitError(f"must be a positive integer or null, got {length!r}", field="data.resample_length")
        self.annotations = subset_with_videos(annotations, subset)
        self.store = feature_store
        self.length = None if length is None else int(length)
        self.training = training
        self.resample_mode = resample_mode
        self.time_base = time_base
        self.num_classes = len(self.annotations.classes)
        require = training if require_labels is None else require_labels
        if check:
            feature_store.check(self.annotations, scan_values=False, progress=progress)
        ids = list(self.annotations.videos)
        labels = video_label_matrix(self.annotations, ids, require_labels=require)
        self.skipped: list[str] = []  # videos with fewer than min_features features
        self.min_features = int(min_features)
        self._records: list[_VideoRecord] = []
        fixed = getattr(getattr(feature_store, "spec", None), "fixed_length", None) is not None
        iterator = tqdm(ids, desc="index videos", unit="video", disable=not progress, leave=False)
        for row, vid in enumerate(iterator):
            video = self.annotations.videos[vid]
            n = feature_store.num_features(vid)
            if n < min_features:
                self.skipped.append(vid)
                continue
            timing = feature_store.timing(vid, video)
            duration = video.duration if video.duration is not None and video.duration > 0 else None
            if duration is None and time_base == "duration":
                raise TadkitError(
                    "whole-video samples with time_base 'duration' need the video duration; the annotations give none",
                    file=self.annotations.source or None, video=vid, field="duration",
                )
            fps = video.fps or (None if fixed else timing.fps) or default_fps
            if duration is None:  # time_base "features": the features' span
                duration = n * timing.seconds_per_feature
            frames = frames_at(video, fps) if fps else None
            self._records.append(
                _VideoRecord(vid, n, timing, float(duration), None if fps is None else float(fps),
                             None if frames is None else max(1, int(round(frames))), labels[row])
            )
        self._index = {r.video_id: i for i, r in enumerate(self._records)}

    @property
    def video_ids(self) -> list[str]:
        return [r.video_id for r in self._records]

    @property
    def classes(self) -> list[str]:
        return list(self.annotations.classes)

    def labels_of(self, video_id: str) -> np.ndarray:
        return self._records[self._index[video_id]].labels.copy()

    def __len__(self) -> int:
        return len(self._records)

    def _sampling_mode(self) -> str:
        if self.resample_mode == "acrnet":
            return "random" if self.training else "uniform"
        return self.resample_mode

    def _sample_rows(self, record: _VideoRecord, features: Any, length: int) -> np.ndarray:
        """The (T', D) float32 rows of one video: T' = ``length``, or n <= T in ACRNet's test sampling."""
        if self.resample_mode == "acrnet":  # the method's own sampler, so its semantics have one definition
            from tadkit.methods.acrnet.sampling import acrnet_sample_indices

            indices = acrnet_sample_indices(record.num_features, length, self.training,
                                            _torch_rng() if self.training else None)
            return np.asarray(features[indices], dtype=np.float32)
        mode = self._sampling_mode()
        return resample_features(features, length, mode,  # type: ignore[arg-type]
                                 _torch_rng() if mode == "random" else None)

    def __getitem__(self, index: int) -> VideoSample:
        record = self._records[index]
        features = self.store.video(record.video_id)
        if self.length is None:  # the whole video at its own feature rate
            array = np.asarray(features[np.arange(record.num_features)], dtype=np.float32)
            t0, step = float(record.timing.t0), float(record.timing.seconds_per_feature)
        else:
            array = self._sample_rows(record, features, self.length)
            t0, step = resampled_time_mapping(record.num_features, array.shape[0], record.timing,
                                              time_base=self.time_base, duration=record.duration,
                                              video_id=record.video_id)
        meta = {
            "video_id": record.video_id,
            "t0": float(t0),
            "step": float(step),
            "valid_length": int(array.shape[0]),
            "fps": record.fps,
            "frame_num": record.frame_num,
            "duration": record.duration,
            "num_features": record.num_features,
            "feature_fps": float(record.timing.fps),  # the features' own time mapping (features.json)
            "stride_frames": float(record.timing.stride_frames),
        }
        return VideoSample(features=array, meta=meta, video_labels=record.labels.copy())


def collate_videos(samples: list[VideoSample]) -> dict[str, Any]:
    """Batch whole videos: ``features`` (B, D, T) float32 (zero-padded to the longest; ``valid_length``
    in ``meta``), ``meta`` (list of dicts), ``video_labels`` (B, C) float32. Never a ``targets`` key."""
    if not samples:
        raise ValueError("cannot collate an empty list of videos")
    for s in samples:
        if not isinstance(s, VideoSample):
            raise TypeError(f"collate_videos takes VideoSample items, got {type(s).__name__}")
    dims = {s.features.shape[1] for s in samples}
    if len(dims) != 1:
        raise TadkitError(f"videos disagree on the feature dimension: {sorted(dims)}", field="features")
    steps = max(s.features.shape[0] for s in samples)
    batch = np.zeros((len(samples), dims.pop(), steps), dtype=np.float32)
    for i, s in enumerate(samples):
        batch[i, :, : s.features.shape[0]] = s.features.T
    labels = np.stack([s.video_labels for s in samples]).astype(np.float32)
    return {
        "features": torch.from_numpy(batch),
        "meta": [dict(s.meta) for s in samples],
        "video_labels": torch.from_numpy(labels),
    }


__all__ = [
    "DATASET_RESAMPLE_MODES",
    "VideoDataset",
    "VideoSample",
    "WindowDataset",
    "collate_videos",
    "collate_windows",
    "video_label_matrix",
    "video_targets",
]
