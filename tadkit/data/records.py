"""The one internal annotation model every reader produces and every consumer reads.

Times are always seconds. Labels are class names; ``AnnotationSet.classes`` fixes their order
(class index i <-> ``classes[i]``, 0-based, no background). ``external_ids`` keeps dataset ids such
as the THUMOS14 ids 7..97 that the official THUMOS txt format needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

# Subset spellings that name the same split across datasets and code bases (THUMOS14 evalkit "val",
# ActivityNet "validation", ...): every spelling maps to one canonical key. Matching is
# case-insensitive; an exact (case-insensitive) name always wins over an alias.
SUBSET_ALIASES: dict[str, str] = {
    "val": "validation", "valid": "validation", "validation": "validation",
    "test": "test", "testing": "test",
    "train": "train", "training": "train",
}


def canonical_subset(name: str) -> str:
    """The alias key of a subset name: ``Validation``/``val`` -> ``validation``, ``Test``/``testing`` ->
    ``test``, ``Train``/``training`` -> ``train``; any other name lower-cased."""
    key = str(name).strip().lower()
    return SUBSET_ALIASES.get(key, key)


def resolve_subsets(
    requested: str | Iterable[str], available: Iterable[str]
) -> tuple[list[str], list[str]]:
    """Match requested subset names against the ``available`` ones.

    Rule (the one used wherever tadkit matches a subset name): a case-insensitive exact match wins;
    otherwise every available subset with the same :func:`canonical_subset` key matches (so
    ``validation`` finds THUMOS14's ``val`` and ``val`` finds ActivityNet's ``validation``).
    Returns ``(matched available names, in available order; requested names that matched nothing)``.
    """
    wanted = [requested] if isinstance(requested, str) else list(requested)
    available = list(dict.fromkeys(available))
    matched: set[str] = set()
    missing: list[str] = []
    for name in wanted:
        exact = [a for a in available if a.lower() == str(name).strip().lower()]
        hits = exact or [a for a in available if canonical_subset(a) == canonical_subset(name)]
        if hits:
            matched.update(hits)
        else:
            missing.append(name)
    return [a for a in available if a in matched], missing


@dataclass(frozen=True)
class Segment:
    """One action instance: [start, end] in seconds with its class name."""

    start: float
    end: float
    label: str

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass
class VideoAnnotation:
    """Everything known about one video's ground truth."""

    video_id: str
    subset: str
    duration: float | None = None  # seconds; None when the source format does not say
    fps: float | None = None  # native frame rate, when known
    segments: list[Segment] = field(default_factory=list)
    ambiguous: list[tuple[float, float]] = field(default_factory=list)  # THUMOS14 `Ambiguous`
    num_frames: int | None = None

    def segment_array(self) -> np.ndarray:
        """(N, 2) float64 array of [start, end] seconds."""
        if not self.segments:
            return np.zeros((0, 2), dtype=np.float64)
        return np.array([[s.start, s.end] for s in self.segments], dtype=np.float64)

    def labels(self) -> list[str]:
        return [s.label for s in self.segments]


@dataclass
class AnnotationSet:
    """A dataset's annotations: videos (keyed by id, insertion order kept) and the class list."""

    videos: dict[str, VideoAnnotation]
    classes: list[str]
    source: str = ""  # file or directory it was read from (for error messages and reports)
    format: str = ""  # reader that produced it
    external_ids: dict[str, int] = field(default_factory=dict)  # e.g. THUMOS ids {"BaseballPitch": 7}
    version: str = ""

    def __post_init__(self) -> None:
        self._class_index = {name: i for i, name in enumerate(self.classes)}

    def class_index(self, label: str) -> int:
        return self._class_index[label]

    def has_class(self, label: str) -> bool:
        return label in self._class_index

    @property
    def subsets(self) -> list[str]:
        seen: dict[str, None] = {}
        for video in self.videos.values():
            seen.setdefault(video.subset, None)
        return list(seen)

    def subset(self, names: str | Iterable[str] | None) -> "AnnotationSet":
        """Videos whose subset matches ``names`` (case-insensitive, with the aliases of
        :func:`resolve_subsets`: ``validation`` finds ``val``); None keeps all. A name that matches
        nothing selects nothing (see :func:`tadkit.data.annotations.select_subset` for an error)."""
        if names is None:
            return self
        wanted = set(resolve_subsets(names, self.subsets)[0])
        return self.with_videos({k: v for k, v in self.videos.items() if v.subset in wanted})

    def with_videos(self, videos: dict[str, VideoAnnotation]) -> "AnnotationSet":
        """The same dataset (classes, ids, provenance) over another set of videos."""
        return AnnotationSet(
            videos=videos,
            classes=list(self.classes),
            source=self.source,
            format=self.format,
            external_ids=dict(self.external_ids),
            version=self.version,
        )

    def num_instances(self) -> int:
        return sum(len(v.segments) for v in self.videos.values())

    def num_ambiguous(self) -> int:
        return sum(len(v.ambiguous) for v in self.videos.values())


@dataclass
class DetectionSet:
    """Detections of many videos, stored column-wise so evaluation and NMS stay vectorized.

    ``video`` and ``label`` are object arrays of str; ``start``/``end``/``score`` float64 (seconds).
    """

    video: np.ndarray
    start: np.ndarray
    end: np.ndarray
    label: np.ndarray
    score: np.ndarray

    def __post_init__(self) -> None:
        self.video = np.asarray(self.video, dtype=object)
        self.label = np.asarray(self.label, dtype=object)
        self.start = np.asarray(self.start, dtype=np.float64)
        self.end = np.asarray(self.end, dtype=np.float64)
        self.score = np.asarray(self.score, dtype=np.float64)
        n = len(self.video)
        if not all(len(a) == n for a in (self.start, self.end, self.label, self.score)):
            raise ValueError("DetectionSet columns must have equal length")

    def __len__(self) -> int:
        return len(self.video)

    @classmethod
    def empty(cls) -> "DetectionSet":
        return cls(np.zeros(0, object), np.zeros(0), np.zeros(0), np.zeros(0, object), np.zeros(0))

    @classmethod
    def concatenate(cls, parts: Iterable["DetectionSet"]) -> "DetectionSet":
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        return cls(
            np.concatenate([p.video for p in parts]),
            np.concatenate([p.start for p in parts]),
            np.concatenate([p.end for p in parts]),
            np.concatenate([p.label for p in parts]),
            np.concatenate([p.score for p in parts]),
        )

    def select(self, mask_or_index: np.ndarray) -> "DetectionSet":
        return DetectionSet(
            self.video[mask_or_index],
            self.start[mask_or_index],
            self.end[mask_or_index],
            self.label[mask_or_index],
            self.score[mask_or_index],
        )

    def videos(self) -> list[str]:
        return list(dict.fromkeys(self.video.tolist()))


@dataclass
class Window:
    """A fixed-length stretch of one video's features, the unit every model trains and infers on.

    Position ``p`` of the window (in feature steps, may be fractional) is at video time
    ``t0 + p * step`` seconds. Sliding windows: t0 = time of the window's first feature and
    step = seconds between features. Whole-video resampling to L steps: t0 = 0, step = duration / L.
    Ground truth is stored in the same window steps, so models never see seconds or fps.
    """

    video_id: str
    features: np.ndarray  # (T, D) float32, time-major
    t0: float
    step: float
    gt_segments: np.ndarray  # (N, 2) float32, [start, end] in window steps (relative to position 0)
    gt_labels: np.ndarray  # (N,) int64, 0-based class index (no background)
    valid_length: int  # steps backed by real features (the rest is padding)

    def to_seconds(self, positions: np.ndarray) -> np.ndarray:
        return self.t0 + np.asarray(positions, dtype=np.float64) * self.step
