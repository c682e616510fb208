"""Synthetic TAL benchmark: THUMOS- or ActivityNet-like timelines and I3D-like features, no download.

Two parts, each usable alone:

* **Timelines** (:func:`make_timelines`): drawn from built-in statistics of a preset, or taken
  unchanged from a real annotation file (``timeline=``), so only the features are synthetic.
  ``preset="thumos14"`` (default): 20 classes, 1-10 min videos, many short instances (per-class rates
  and log-normal durations with a long tail). ``preset="activitynet"``: 100 classes (or
  ``num_classes``), 2 s - 4 min videos, ~1.5 long instances per video covering most of it.
* **Features** (:func:`render_features`): a low-dimensional latent signal (class/phase prototypes,
  per-video scenes with shot cuts, smooth background, action-like distractors, noise) integrated over
  16-frame clips every 4 frames and mapped to ``dim`` channels ("rgb" half + "flow" half).

Every video draws from its own RNG seeded by ``(seed, video_id)``: a video's timeline and features do
not depend on which other videos or subsets are generated, nor on their order.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from tadkit.data.ids import check_video_id, is_usable_video_id
from tadkit.data.records import AnnotationSet, Segment, VideoAnnotation
from tadkit.errors import TadkitError
from tadkit.utils.io import write_json

if TYPE_CHECKING:
    from tadkit.data.features import FeatureSpec

GENERATOR_VERSION = "tadkit-synth-1"
DEFAULT_SUBSETS = ("validation", "test")  # the thumos14 preset's subsets
PRESETS = ("thumos14", "activitynet")
ACTIVITYNET_SUBSETS = ("training", "validation")
ACTIVITYNET_NUM_CLASSES = 100  # like v1.2 (W-TALC); 200 is v1.3


# --------------------------------------------------------------------------------------------------
# Built-in THUMOS14 statistics (our own summary of the public THUMOS14 temporal annotations).
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassStats:
    """Per-class timeline statistics: the THUMOS id, typical instance length and density."""

    name: str
    thumos_id: int
    median_seconds: float  # median instance duration
    per_minute: float  # mean instances per minute in a video whose main class this is
    video_seconds: float  # median length of a video of this class
    group: str  # confusable group: classes of a group share prototype and scene components


# Summarised from THUMOS14 val+test: instance and video medians per class (videos grouped by their
# most frequent class); rates tuned so class shares and ~15 instances/video match THUMOS. Groups are
# the visually confusable sports.
THUMOS14_STATS: tuple[ClassStats, ...] = (
    ClassStats("BaseballPitch", 7, 3.0, 1.5, 86.0, "swing"),
    ClassStats("BasketballDunk", 9, 1.5, 8.9, 238.0, "court"),
    ClassStats("Billiards", 12, 2.2, 2.7, 168.0, "billiards"),
    ClassStats("CleanAndJerk", 21, 8.8, 2.0, 166.0, "lift"),
    ClassStats("CliffDiving", 22, 2.7, 5.7, 170.0, "diving"),
    ClassStats("CricketBowling", 23, 1.2, 5.9, 124.0, "cricket"),
    ClassStats("CricketShot", 24, 1.1, 6.1, 101.0, "cricket"),
    ClassStats("Diving", 26, 2.5, 8.0, 172.0, "diving"),
    ClassStats("FrisbeeCatch", 31, 2.3, 3.2, 52.0, "field"),
    ClassStats("GolfSwing", 33, 4.2, 0.9, 130.0, "swing"),
    ClassStats("HammerThrow", 36, 7.1, 5.9, 288.0, "throw"),
    ClassStats("HighJump", 40, 4.5, 4.9, 258.0, "jump"),
    ClassStats("JavelinThrow", 45, 6.3, 3.6, 370.0, "throw"),
    ClassStats("LongJump", 51, 7.1, 4.2, 291.0, "jump"),
    ClassStats("PoleVault", 68, 6.4, 6.5, 295.0, "jump"),
    ClassStats("Shotput", 79, 4.7, 4.3, 121.0, "throw"),
    ClassStats("SoccerPenalty", 85, 2.9, 2.0, 76.0, "field"),
    ClassStats("TennisSwing", 92, 1.5, 3.7, 110.0, "swing"),
    ClassStats("ThrowDiscus", 93, 4.3, 3.9, 117.0, "throw"),
    ClassStats("VolleyballSpiking", 97, 1.7, 4.4, 103.0, "court"),
)
THUMOS14_CLASSES: tuple[str, ...] = tuple(s.name for s in THUMOS14_STATS)
_STATS_BY_NAME = {s.name: s for s in THUMOS14_STATS}


# --------------------------------------------------------------------------------------------------
# Built-in ActivityNet statistics (our own summary of v1.3 BSN train+val, 14,377 annotated videos,
# cross-checked with v1.2 W-TALC train+val, 7,202 videos; benchmarks/synth_activitynet_stats.py).
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActivityNetStats:
    """Timeline model of the activitynet preset. Every video has one class; the instance count grows
    with the video length; the instances' total share of the video (coverage) depends on the count."""

    # (quantile, seconds) knots of the video length distribution (v1.3 train+val; v1.2 within 5 s).
    duration_quantiles: tuple[tuple[float, float], ...]
    extra_per_video: float  # mean instances beyond the first in a 120 s video ...
    extra_exponent: float  # ... scaled by (duration / 120) ** exponent
    count_dispersion: float  # negative-binomial shape of the extra instances (small = over-dispersed)
    max_instances: int  # the real maximum is 23
    # quantile knots (at COVERAGE_QUANTILES) of the coverage of videos with 1, 2 and >= 3 instances, not
    # counting the "whole video" mode below
    coverage_quantiles: tuple[tuple[float, ...], ...]
    length_concentration: float  # Dirichlet concentration splitting the coverage between instances
    # (whole video, first instance at 0 s, last instance at the end) probabilities for 1 and >= 2 instances
    edge_modes: tuple[tuple[float, float, float], ...]
    alt_fps_fraction: float  # share of videos not at 30 fps
    alt_fps: tuple[tuple[float, float], ...]  # (fps, probability) of those
    min_video_seconds: float
    max_video_seconds: float


COVERAGE_QUANTILES = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
ACTIVITYNET_STATS = ActivityNetStats(
    duration_quantiles=(
        (0.0, 1.5), (0.01, 7.8), (0.05, 18.0), (0.1, 30.0), (0.2, 51.3), (0.3, 70.5), (0.4, 91.9),
        (0.5, 115.4), (0.6, 137.6), (0.7, 161.5), (0.8, 185.5), (0.9, 211.1), (0.95, 224.5),
        (0.99, 236.9), (1.0, 240.0),
    ),
    extra_per_video=0.55,
    extra_exponent=0.9,
    count_dispersion=0.3,
    max_instances=25,
    coverage_quantiles=(
        (0.01, 0.12, 0.23, 0.42, 0.57, 0.67, 0.75, 0.82, 0.87, 0.91, 0.95, 0.97, 0.99),
        (0.02, 0.09, 0.15, 0.25, 0.35, 0.45, 0.55, 0.64, 0.71, 0.78, 0.85, 0.89, 0.99),
        (0.03, 0.11, 0.15, 0.22, 0.29, 0.35, 0.41, 0.48, 0.55, 0.63, 0.72, 0.78, 0.99),
    ),
    length_concentration=1.5,
    edge_modes=((0.11, 0.14, 0.06), (0.03, 0.10, 0.05)),
    alt_fps_fraction=0.34,
    alt_fps=((25.0, 0.58), (24.0, 0.28), (15.0, 0.14)),
    min_video_seconds=1.5,
    max_video_seconds=240.0,
)


def activitynet_classes(num_classes: int = ACTIVITYNET_NUM_CLASSES) -> tuple[str, ...]:
    """Class names of the activitynet preset: ``activity_000`` ...; a smaller list is a prefix of a
    larger one (like the v1.2 classes are a subset of v1.3's)."""
    return tuple(f"activity_{i:03d}" for i in range(num_classes))


# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------


@dataclass
class SynthDifficulty:
    """Knobs that make localization harder or easier. Latent vectors are unit-norm; a clean action
    contributes a vector of norm ~1, so scales below are relative to one action."""

    noise: float = 1.0  # per-feature latent noise (clip-correlated), the main difficulty knob
    observation_noise: float = 0.5  # i.i.d. noise added to every output channel
    prototype_sharing: float = 0.65  # fraction of a class prototype shared with its confusable group
    intra_class: float = 0.7  # per-instance deviation from its class prototype
    phase_contrast: float = 0.5  # how different start / middle / end phases of an action look
    distractor_rate: float = 3.0  # action-like background bursts per minute
    distractor_similarity: float = 0.55  # squared cosine of a burst to the class prototype it mimics
    ramp_seconds: float = 0.5  # 10-90 % rise time of an action's onset and offset
    boundary_jitter: float = 0.3  # std (s) of visible vs annotated boundaries
    scene_scale: float = 1.0  # norm of the per-video scene offset
    scene_context: float = 0.5  # fraction of the scene explained by the video's class context
    background_scale: float = 0.7  # norm of the smooth background drift
    background_seconds: float = 4.0  # time constant of the background drift

    def validate(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise TadkitError(f"must be a finite number >= 0, got {value!r}", field=f"difficulty.{f.name}")
        for name in ("prototype_sharing", "phase_contrast", "distractor_similarity", "scene_context"):
            if getattr(self, name) > 1:
                raise TadkitError(f"must be in [0, 1], got {getattr(self, name)}", field=f"difficulty.{name}")
        if self.background_seconds <= 0:
            raise TadkitError("must be > 0", field="difficulty.background_seconds")


# Presets override some default knobs; "default" is the calibrated benchmark.
DIFFICULTY_PRESETS: dict[str, dict[str, float]] = {
    "easy": dict(noise=0.45, observation_noise=0.25, prototype_sharing=0.4, intra_class=0.35,
                 distractor_rate=1.0, distractor_similarity=0.5, ramp_seconds=0.25, boundary_jitter=0.1,
                 scene_scale=0.6),
    "default": {},
    "hard": dict(noise=1.3, observation_noise=0.7, prototype_sharing=0.75, intra_class=0.8,
                 distractor_rate=5.0, distractor_similarity=0.65, ramp_seconds=0.8, boundary_jitter=0.4,
                 scene_scale=1.3),
}


@dataclass
class SynthConfig:
    """Everything that determines a synthetic dataset (with ``seed``, byte-identical output)."""

    seed: int = 0
    dim: int = 2048  # output channels: first dim//2 "rgb", the rest "flow" (I3D two-stream layout)
    videos: int = 200  # videos per subset (default timelines only)
    preset: str = "thumos14"  # built-in timelines: "thumos14" or "activitynet"
    num_classes: int | None = None  # activitynet preset: class count (None = 100, like v1.2; 200 like v1.3)
    subsets: tuple[str, ...] | None = None  # None: all (thumos14: validation, test; activitynet: training, validation)
    timeline: str | None = None  # annotation file whose real segments are kept
    timeline_videos: int | None = None  # with `timeline`: the first N video ids (sorted) of each subset; None = all
    dtype: str = "float32"  # feature file dtype: float32 or float16
    fps: float = 30.0  # frame rate of generated videos (and of timeline videos without one)
    alt_fps_fraction: float | None = None  # share of generated videos at other fps (None: preset's, THUMOS 0.04)
    stride_frames: int = 4  # frames between consecutive features
    clip_frames: int = 16  # frames covered by one feature
    latent_dim: int = 64  # dimension of the semantic space before mapping to `dim`
    # Video lengths are truncated to [min, max]; None: the preset's range (thumos14 60-600 s, per-class
    # log-normal; activitynet 1.5-240 s, the real length distribution).
    min_video_seconds: float | None = None
    max_video_seconds: float | None = None
    density: float = 1.0  # multiplies the per-class instance rates (activitynet: the extra instances per video)
    duration_sigma: float = 0.55  # log-std of instance durations within a class
    tail_probability: float = 0.015  # share of instances drawn from the long tail (x3 .. x12 longer)
    secondary_class_probability: float = 0.1  # videos that also contain a second class
    overlap_probability: float = 0.03  # instances that start before the previous one ends
    cliffdiving_also_diving: bool = True  # THUMOS annotates every CliffDiving instance also as Diving
    timeline_margin: float = 5.0  # seconds after the last segment when a timeline video has no duration
    difficulty: SynthDifficulty = field(default_factory=SynthDifficulty)

    def validate(self) -> None:
        def bad(name: str, message: str) -> TadkitError:
            return TadkitError(message, file=self.timeline if name == "timeline" else None, field=name)

        if not isinstance(self.seed, int) or self.seed < 0:
            raise bad("seed", f"must be an integer >= 0, got {self.seed!r}")
        if self.preset not in PRESETS:
            raise bad("preset", f"must be one of {', '.join(PRESETS)}, got {self.preset!r}")
        if self.num_classes is not None:
            if self.preset != "activitynet":
                raise bad("num_classes", "only the activitynet preset has a class-count option "
                          "(thumos14 has the 20 THUMOS14 classes; --timeline takes the file's)")
            if not isinstance(self.num_classes, int) or self.num_classes < 1:
                raise bad("num_classes", f"must be an integer >= 1, got {self.num_classes!r}")
        if self.timeline is not None and self.preset != "thumos14":
            raise bad("preset", "--timeline keeps the file's timelines; a preset applies to built-in timelines only")
        if self.dim < 2:
            raise bad("dim", f"must be >= 2 (rgb half + flow half), got {self.dim}")
        if self.videos < 1:
            raise bad("videos", f"must be >= 1, got {self.videos}")
        if self.dtype not in ("float32", "float16"):
            raise bad("dtype", f"must be float32 or float16, got {self.dtype!r}")
        if not self.fps > 0:
            raise bad("fps", f"must be > 0, got {self.fps}")
        if self.stride_frames < 1 or self.clip_frames < self.stride_frames or self.clip_frames % self.stride_frames:
            raise bad("clip_frames", "need stride_frames >= 1 and clip_frames a multiple of stride_frames")
        if self.latent_dim < 8:
            raise bad("latent_dim", f"must be >= 8, got {self.latent_dim}")
        low, high = self.video_seconds_range()
        if not 0 < low < high:
            raise bad("max_video_seconds", f"need 0 < min_video_seconds < max_video_seconds, got {low} and {high}")
        for name in ("density", "duration_sigma", "timeline_margin"):
            if getattr(self, name) < 0:
                raise bad(name, f"must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.alt_fps_share() <= 1:
            raise bad("alt_fps_fraction", f"must be in [0, 1], got {self.alt_fps_fraction}")
        for name in ("tail_probability", "secondary_class_probability", "overlap_probability"):
            if not 0 <= getattr(self, name) <= 1:
                raise bad(name, f"must be in [0, 1], got {getattr(self, name)}")
        if self.timeline_videos is not None and self.timeline_videos < 1:
            raise bad("videos", f"must be >= 1, got {self.timeline_videos}")
        if self.timeline_videos is not None and self.timeline is None:
            raise bad("timeline_videos", "limits the videos of a --timeline file; built-in timelines use `videos`")
        if self.subsets is not None and not self.subsets:
            raise bad("subsets", "must name at least one subset")
        self.difficulty.validate()

    def video_seconds_range(self) -> tuple[float, float]:
        """(min, max) video length: the fields, or the preset's range where they are None."""
        low, high = (60.0, 600.0) if self.preset != "activitynet" else (
            ACTIVITYNET_STATS.min_video_seconds, ACTIVITYNET_STATS.max_video_seconds)
        return (
            low if self.min_video_seconds is None else float(self.min_video_seconds),
            high if self.max_video_seconds is None else float(self.max_video_seconds),
        )

    def alt_fps_share(self) -> float:
        """Share of generated videos not at ``fps``: the field, or the preset's (THUMOS 4 %, ActivityNet 34 %)."""
        if self.alt_fps_fraction is not None:
            return float(self.alt_fps_fraction)
        return ACTIVITYNET_STATS.alt_fps_fraction if self.preset == "activitynet" else 0.04

    def classes(self) -> list[str]:
        """Class list of the built-in timelines of this preset."""
        if self.preset == "activitynet":
            return list(activitynet_classes(self.num_classes or ACTIVITYNET_NUM_CLASSES))
        return list(THUMOS14_CLASSES)

    def default_subsets(self) -> tuple[str, ...]:
        return ACTIVITYNET_SUBSETS if self.preset == "activitynet" else DEFAULT_SUBSETS

    def to_dict(self) -> dict[str, Any]:
        """The config as written to ``synth.json``, with preset defaults resolved. The thumos14 preset
        omits ``preset``/``num_classes``, so its provenance is byte-identical to earlier versions
        (a missing ``preset`` means thumos14)."""
        out = asdict(self)
        out["subsets"] = None if self.subsets is None else list(self.subsets)
        out["min_video_seconds"], out["max_video_seconds"] = self.video_seconds_range()
        out["alt_fps_fraction"] = self.alt_fps_share()
        if self.preset == "thumos14":
            out.pop("preset")
            out.pop("num_classes")
        elif out["num_classes"] is None:
            out["num_classes"] = ACTIVITYNET_NUM_CLASSES
        return out


def difficulty_from_spec(spec: Sequence[str], base: SynthDifficulty | None = None) -> SynthDifficulty:
    """Parse CLI difficulty items: preset names (easy/default/hard) and KEY=VALUE overrides, in order."""
    result = base or SynthDifficulty()
    names = {f.name for f in fields(SynthDifficulty)}
    for item in spec:
        if "=" not in item:
            if item not in DIFFICULTY_PRESETS:
                raise TadkitError(
                    f"unknown preset {item!r}; use one of {sorted(DIFFICULTY_PRESETS)} or KEY=VALUE",
                    field="difficulty",
                )
            result = replace(SynthDifficulty(), **DIFFICULTY_PRESETS[item])
            continue
        key, _, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if key not in names:
            raise TadkitError(f"unknown knob {key!r}; knobs: {', '.join(sorted(names))}", field="difficulty")
        try:
            value = float(raw)
        except ValueError:
            raise TadkitError(f"{key} needs a number, got {raw!r}", field=f"difficulty.{key}") from None
        result = replace(result, **{key: value})
    result.validate()
    return result


# --------------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------------


def _rng(seed: int, *keys: str | int) -> np.random.Generator:
    """Independent stream for (seed, keys); keys are hashed so ids of any length work."""
    words = [int(seed)]
    for key in keys:
        digest = hashlib.blake2b(str(key).encode("utf-8"), digest_size=8).digest()
        words.append(int.from_bytes(digest, "little"))
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(words)))


def _unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (last axis)."""
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def num_frames(duration: float, fps: float) -> int:
    """Frame count of a video: nearest integer to duration x fps (durations are rounded in files)."""
    return int(round(float(duration) * float(fps)))


def num_features(duration: float, fps: float, stride_frames: int = 4) -> int:
    """Feature count T = floor(num_frames / stride) (at least 1): feature k starts at frame stride*k."""
    return max(1, num_frames(duration, fps) // stride_frames)


def video_num_features(video: VideoAnnotation, config: SynthConfig) -> int:
    """T of one video: from its frame count when the annotations give one, else from duration x fps."""
    fps = float(video.fps or config.fps)
    frames = video.num_frames if video.num_frames else num_frames(float(video.duration), fps)
    return max(1, int(frames) // config.stride_frames)


# --------------------------------------------------------------------------------------------------
# Timelines
# --------------------------------------------------------------------------------------------------


def _overlap_some(rng: np.random.Generator, starts: np.ndarray, ends: np.ndarray, durations: np.ndarray,
                  probability: float) -> tuple[np.ndarray, np.ndarray]:
    """Move each instance (but the first), with ``probability``, to start 10-50 % of the previous
    instance's length before that one ends; two draws of len-1 values, in this order."""
    count = len(starts)
    overlap = np.zeros(count, dtype=bool)
    overlap[1:] = rng.random(count - 1) < probability
    shift = np.zeros(count)
    shift[1:] = np.maximum(0.0, starts[1:] - ends[:-1] + rng.uniform(0.1, 0.5, count - 1) * durations[:-1])
    return np.where(overlap, starts - shift, starts), np.where(overlap, ends - shift, ends)


def _truncated_lognormal(rng: np.random.Generator, median: float, sigma: float, low: float, high: float) -> float:
    """One draw of a log-normal truncated to [low, high] by inverse-CDF sampling (no clipping mass)."""
    from scipy import special  # lazily: `tadkit data --help` must not import scipy

    a = special.ndtr((math.log(low) - math.log(median)) / sigma)
    b = special.ndtr((math.log(high) - math.log(median)) / sigma)
    u = min(max(rng.uniform(a, b), 1e-12), 1 - 1e-12)  # far tails: keep ndtri finite
    return float(np.clip(math.exp(math.log(median) + sigma * special.ndtri(u)), low, high))


def _default_video(config: SynthConfig, subset: str, index: int) -> VideoAnnotation:
    """One THUMOS-like video: a main class, maybe a second (usually confusable) class, instances with
    class-specific log-normal durations (rare long tail), separated by random background gaps."""
    video_id = f"video_{subset}_{index:07d}"
    rng = _rng(config.seed, "timeline", video_id)
    stats = THUMOS14_STATS

    fps = config.fps
    if rng.random() < config.alt_fps_share():
        fps = float(rng.choice([25.0, 24.0], p=[0.8, 0.2]))
    main = int(rng.integers(len(stats)))
    duration = _truncated_lognormal(rng, stats[main].video_seconds, 0.7, *config.video_seconds_range())
    duration = math.floor(duration * 100) / 100  # 0.01 s like THUMOS files
    mean_count = stats[main].per_minute * config.density * duration / 60.0
    shape = 2.0  # negative binomial: over-dispersed counts (THUMOS has videos with 1 and with 200 instances)
    count = max(1, int(rng.negative_binomial(shape, shape / (shape + mean_count))))

    labels = np.full(count, main)
    if count > 1 and rng.random() < config.secondary_class_probability:
        same_group = [i for i, s in enumerate(stats) if s.group == stats[main].group and i != main]
        others = [i for i in range(len(stats)) if i != main]
        pool = same_group if same_group and rng.random() < 0.7 else others
        second = int(rng.choice(pool))
        labels[rng.random(count) < rng.uniform(0.2, 0.5)] = second

    medians = np.array([s.median_seconds for s in stats])[labels]
    durations = medians * np.exp(config.duration_sigma * rng.standard_normal(count))
    tail = rng.random(count) < config.tail_probability
    durations[tail] *= np.exp(rng.uniform(math.log(3.0), math.log(12.0), int(tail.sum())))
    durations = np.clip(durations, 0.2, 0.5 * duration)

    # Keep actions under ~80 % of the video so there is background around them (THUMOS 95th pct ~80 %).
    keep = np.cumsum(durations) <= 0.8 * duration
    keep[0] = True
    durations, labels = durations[keep], labels[keep]
    count = len(durations)
    durations[0] = min(durations[0], 0.8 * duration)

    gaps = rng.dirichlet(np.ones(count + 1)) * (duration - durations.sum())
    starts = np.cumsum(gaps[:-1]) + np.concatenate([[0.0], np.cumsum(durations[:-1])])
    ends = starts + durations
    # A few instances start before the previous one ends (THUMOS has some overlaps besides duplicates).
    starts, ends = _overlap_some(rng, starts, ends, durations, config.overlap_probability)

    # Annotations are at 0.1 s like THUMOS; keep every instance at least 0.1 s long and inside the video.
    limit = math.floor(duration * 10) / 10
    starts = np.clip(np.round(starts, 1), 0.0, limit - 0.1)
    ends = np.clip(np.maximum(np.round(ends, 1), starts + 0.1), 0.1, limit)
    starts, ends = np.round(starts, 1), np.round(ends, 1)

    names = [stats[i].name for i in labels]
    segments = [Segment(float(s), float(e), n) for s, e, n in zip(starts, ends, names)]
    if config.cliffdiving_also_diving:
        segments += [Segment(s.start, s.end, "Diving") for s in segments if s.label == "CliffDiving"]
    segments.sort(key=lambda s: (s.start, s.end, s.label))
    return VideoAnnotation(
        video_id=video_id,
        subset=subset,
        duration=duration,
        fps=fps,
        segments=segments,
        num_frames=num_frames(duration, fps),
    )


def _quantile_draw(
    rng: np.random.Generator, knots: Sequence[tuple[float, float]], low: float, high: float
) -> float:
    """One draw from the piecewise-linear quantile function ``knots`` truncated to [low, high]
    (inverse-CDF sampling between the CDF values of the bounds)."""
    q = np.array([k[0] for k in knots])
    x = np.array([k[1] for k in knots])
    u_low, u_high = np.interp([low, high], x, q)  # CDF of the bounds (0 / 1 outside the table)
    value = float(np.interp(rng.uniform(u_low, u_high), q, x))
    return min(max(value, low), high)


def _activitynet_video(config: SynthConfig, subset: str, index: int, classes: Sequence[str]) -> VideoAnnotation:
    """One ActivityNet-like video: one class, 1 + negative-binomial instances (more in longer videos),
    their total share of the video drawn by count, split between instances by a Dirichlet, with
    background gaps; some instances start at 0 s or end at the video's end, some span the whole video."""
    stats = ACTIVITYNET_STATS
    video_id = f"v_{subset}_{index:07d}"
    rng = _rng(config.seed, "timeline", video_id)

    fps = config.fps
    if rng.random() < config.alt_fps_share():
        fps = float(rng.choice([f for f, _ in stats.alt_fps], p=[p for _, p in stats.alt_fps]))
    duration = _quantile_draw(rng, stats.duration_quantiles, *config.video_seconds_range())
    duration = max(math.floor(duration * 100) / 100, 0.5)  # 0.01 s like ActivityNet files

    mean_extra = stats.extra_per_video * config.density * (duration / 120.0) ** stats.extra_exponent
    k = stats.count_dispersion
    extra = int(rng.negative_binomial(k, k / (k + mean_extra))) if mean_extra > 0 else 0
    # every instance keeps >= 0.5 s on average: very short videos hold few instances
    count = int(min(1 + extra, stats.max_instances, max(1, int(duration / 2.0))))

    coverage = float(np.interp(rng.random(), COVERAGE_QUANTILES, stats.coverage_quantiles[min(count, 3) - 1]))
    full, lead, trail = stats.edge_modes[0 if count == 1 else 1]
    mode = rng.choice(4, p=[full, lead, trail, 1.0 - full - lead - trail])  # whole / at 0 / at end / inside
    lengths = rng.dirichlet(np.full(count, stats.length_concentration))
    weights = rng.dirichlet(np.ones(count + 1))  # background gaps before, between and after
    if mode in (0, 1):
        weights[0] = 0.0
    if mode in (0, 2):
        weights[-1] = 0.0
    if weights.sum() <= 0:  # one instance touching both ends: it is the whole video
        coverage, weights = 1.0, np.ones(count + 1)
    weights /= weights.sum()
    durations = np.maximum(coverage * duration * lengths, min(0.2, duration / count))
    gaps = weights * max(duration - durations.sum(), 0.0)
    starts = np.cumsum(gaps[:-1]) + np.concatenate([[0.0], np.cumsum(durations[:-1])])
    ends = starts + durations
    # a few instances start before the previous one ends (ActivityNet: 3-4 % of consecutive pairs)
    starts, ends = _overlap_some(rng, starts, ends, durations, config.overlap_probability)

    starts = np.clip(np.round(starts, 2), 0.0, duration - 0.01)
    ends = np.round(np.clip(np.maximum(np.round(ends, 2), starts + 0.01), 0.01, duration), 2)
    # drawn last, from one uniform: timelines do not depend on the class count, and label // 2 of a
    # 200-class dataset is the label of the 100-class one
    label = classes[int(rng.random() * len(classes))]
    segments = sorted((Segment(float(s), float(e), label) for s, e in zip(starts, ends)),
                      key=lambda seg: (seg.start, seg.end))
    return VideoAnnotation(
        video_id=video_id,
        subset=subset,
        duration=duration,
        fps=fps,
        segments=segments,
        num_frames=num_frames(duration, fps),
    )


def default_timelines(config: SynthConfig) -> AnnotationSet:
    """Built-in timelines of ``config.preset``: ``config.videos`` videos for each requested subset."""
    subsets = config.subsets or config.default_subsets()
    classes = config.classes()
    videos: dict[str, VideoAnnotation] = {}
    for subset in subsets:
        for index in range(1, config.videos + 1):
            if config.preset == "activitynet":
                video = _activitynet_video(config, subset, index, classes)
            else:
                video = _default_video(config, subset, index)
            videos[video.video_id] = video
    return AnnotationSet(
        videos=videos,
        classes=classes,
        source="<synthetic>",
        format="synthetic",
        external_ids={s.name: s.thumos_id for s in THUMOS14_STATS} if config.preset == "thumos14" else {},
        version=GENERATOR_VERSION,
    )


def timeline_stats(aset: AnnotationSet) -> dict[str, float]:
    """Timeline statistics the presets are built to match, over the videos that have instances and a
    duration (vectorised over all segments). Segments are clipped to [0, duration].

    ``coverage`` is the share of a video inside the union of its instances; ``instance_share`` is one
    instance's length over its video's length; ``overlap_pairs`` the share of consecutive instances
    (by start) where the second starts before the first ends."""
    videos = [v for v in aset.videos.values() if v.segments and v.duration]
    if not videos:
        raise TadkitError("no video with both instances and a duration", file=aset.source or None, field="segments")
    duration = np.array([float(v.duration) for v in videos])
    counts = np.array([len(v.segments) for v in videos])
    vid = np.repeat(np.arange(len(videos)), counts)
    seg = np.concatenate([v.segment_array() for v in videos])
    seg = np.clip(seg, 0.0, duration[vid, None])
    order = np.lexsort((seg[:, 0], vid))
    vid, seg = vid[order], seg[order]
    # union per video: shift each video to its own stretch of a global line, then one sweep
    offset = np.concatenate([[0.0], np.cumsum(duration + 1.0)])[vid]
    start, end = seg[:, 0] + offset, seg[:, 1] + offset
    reach = np.maximum.accumulate(end)
    previous = np.concatenate([[-np.inf], reach[:-1]])
    new_run = start > previous  # starts after everything before it: a new piece of the union
    run_start = start[new_run]
    run_end = np.maximum.reduceat(end, np.flatnonzero(new_run))
    union = np.bincount(vid[new_run], weights=run_end - run_start, minlength=len(videos))
    coverage = np.minimum(union / duration, 1.0)
    lengths = seg[:, 1] - seg[:, 0]
    share = lengths / duration[vid]
    same_video = vid[1:] == vid[:-1]
    overlapping = seg[1:, 0] < seg[:-1, 1]  # starts before the previous instance (by start) ends
    labels = [{s.label for s in v.segments} for v in videos]
    fps = np.array([float(v.fps) if v.fps else np.nan for v in videos])
    return {
        "videos": float(len(videos)),
        "classes": float(len(aset.classes)),
        "classes_present": float(len({s.label for v in videos for s in v.segments})),
        "instances_per_video_mean": float(counts.mean()),
        "instances_per_video_median": float(np.median(counts)),
        "videos_with_1_instance": float(np.mean(counts == 1)),
        "videos_with_3_or_more": float(np.mean(counts >= 3)),
        "instances_per_video_max": float(counts.max()),
        "coverage_median": float(np.median(coverage)),
        "coverage_mean": float(coverage.mean()),
        "coverage_p25": float(np.percentile(coverage, 25)),
        "coverage_p75": float(np.percentile(coverage, 75)),
        "videos_covered_over_95pct": float(np.mean(coverage > 0.95)),
        "instance_share_median": float(np.median(share)),
        "instance_share_p25": float(np.percentile(share, 25)),
        "instance_share_p75": float(np.percentile(share, 75)),
        "instance_seconds_median": float(np.median(lengths)),
        "video_seconds_median": float(np.median(duration)),
        "video_seconds_p5": float(np.percentile(duration, 5)),
        "video_seconds_p95": float(np.percentile(duration, 95)),
        "single_class_videos": float(np.mean([len(x) == 1 for x in labels])),
        "overlap_pairs": float(overlapping[same_video].mean()) if same_video.any() else 0.0,
        "videos_at_30fps": float(np.mean(np.round(fps) == 30)) if np.isfinite(fps).all() else math.nan,
    }


def _load_annotation_file(path: str) -> AnnotationSet:
    """Read any format `tadkit.data.annotations` understands (files or, e.g. the evalkit, directories)."""
    if not Path(path).exists():
        raise TadkitError("timeline annotation file not found", file=path, field="timeline")
    from tadkit.data.annotations import load_annotations  # lazy: keeps this module's import light

    return load_annotations(path)


# Bounds on what an annotation file may ask `data synth --timeline` to generate: the longest real video
# datasets hold runs for hours, not days, and no camera records at thousands of frames per second.
MAX_TIMELINE_SECONDS = 24 * 3600.0
MAX_TIMELINE_FPS = 1000.0


def _check_timeline_size(file: str | None, video_id: str, duration: float, fps: float) -> None:
    if not duration <= MAX_TIMELINE_SECONDS:
        raise TadkitError(f"duration {duration:g} s is longer than any real video ({MAX_TIMELINE_SECONDS:g} s at most); "
                          "synthesizing it would allocate its features", file=file, video=video_id, field="duration")
    if not fps <= MAX_TIMELINE_FPS:
        raise TadkitError(f"fps {fps:g} is above {MAX_TIMELINE_FPS:g}", file=file, video=video_id, field="fps")


def timeline_from_annotations(source: AnnotationSet, config: SynthConfig) -> AnnotationSet:
    """Keep every real segment; fill in durations (last end + margin) and fps (config.fps) when missing."""
    if config.subsets is not None:
        from tadkit.data.annotations import select_subset  # lazy, like the reader

        source = select_subset(source, list(config.subsets))
    if config.timeline_videos is not None:
        # the first N video ids of each subset, in sorted order: independent of the file's video order
        keep: set[str] = set()
        for subset in source.subsets:
            keep.update(sorted(source.subset(subset).videos)[: config.timeline_videos])
        source = source.with_videos({k: v for k, v in source.videos.items() if k in keep})
    videos: dict[str, VideoAnnotation] = {}
    for video_id, video in source.videos.items():
        duration = video.duration
        if duration is None or not duration > 0:
            ends = [s.end for s in video.segments] + [e for _, e in video.ambiguous]
            duration = (max(ends) if ends else 0.0) + config.timeline_margin
            if duration <= 0:
                raise TadkitError(
                    "no duration, no segments and timeline_margin 0: cannot size the video",
                    file=config.timeline, video=video_id, field="duration",
                )
        fps = video.fps if video.fps and video.fps > 0 else config.fps
        _check_timeline_size(config.timeline, video_id, float(duration), float(fps))  # before any allocation
        frames = video.num_frames if video.num_frames and video.fps else num_frames(duration, fps)
        videos[video_id] = replace(
            video, duration=float(duration), fps=float(fps), segments=list(video.segments),
            ambiguous=list(video.ambiguous), num_frames=int(frames),
        )
    return source.with_videos(videos)


def make_timelines(config: SynthConfig) -> AnnotationSet:
    """Timelines for ``config``: real ones from ``config.timeline`` or the built-in THUMOS-like ones."""
    config.validate()
    if config.timeline is None:
        return default_timelines(config)
    return timeline_from_annotations(_load_annotation_file(config.timeline), config)


# --------------------------------------------------------------------------------------------------
# Feature world: prototypes and channel mixing shared by all videos of a dataset
# --------------------------------------------------------------------------------------------------

# Per-stream gains for (scene, action, background): rgb sees appearance, flow sees motion.
_STREAM_GAINS = {"rgb": (1.0, 0.8, 1.0), "flow": (0.35, 1.0, 0.5)}
_ACTIONNESS_SHARE = 0.15  # every action shares a little "something is happening" component
_SHOT_SECONDS = 30.0  # mean shot length; a cut changes the scene vector
_SHOT_CHANGE = 0.4  # how far a shot's scene moves from the video's base scene


@dataclass
class SynthWorld:
    """Dataset-level latent structure: prototypes live in R^latent_dim, mixing maps them to channels."""

    classes: list[str]
    groups: np.ndarray  # (C,) group index per class
    class_protos: np.ndarray  # (C, r) unit
    phase_protos: np.ndarray  # (C, 3, r) unit: start, middle, end
    contexts: np.ndarray  # (C, r) unit scene context of a class
    mix_rgb: np.ndarray  # (r, D_rgb) float32
    mix_flow: np.ndarray  # (r, D_flow) float32


def _class_groups(classes: Sequence[str], rng: np.random.Generator) -> np.ndarray:
    """THUMOS classes use their semantic groups; other class lists get random groups of 2-3."""
    if all(name in _STATS_BY_NAME for name in classes):
        names = sorted({_STATS_BY_NAME[c].group for c in classes})
        return np.array([names.index(_STATS_BY_NAME[c].group) for c in classes], dtype=np.int64)
    order = rng.permutation(len(classes))
    groups = np.empty(len(classes), dtype=np.int64)
    groups[order] = np.arange(len(classes)) * 2 // 5  # consecutive sizes 3, 2, 3, 2, ...
    return groups


def make_world(classes: Sequence[str], config: SynthConfig) -> SynthWorld:
    """Prototypes from (seed, class names); mixing matrices from (seed, dim), so the latent structure
    is the same at every ``dim``."""
    r = config.latent_dim
    d = config.difficulty
    rng = _rng(config.seed, "world", r, *classes)
    c = len(classes)
    groups = _class_groups(classes, rng)
    g = int(groups.max()) + 1 if c else 0

    actionness = _unit(rng.standard_normal(r))
    group_vecs = _unit(rng.standard_normal((g, r)))
    own = _unit(rng.standard_normal((c, r)))
    shared = math.sqrt(d.prototype_sharing) * group_vecs[groups] + math.sqrt(1 - d.prototype_sharing) * own
    class_protos = _unit(math.sqrt(_ACTIONNESS_SHARE) * actionness + math.sqrt(1 - _ACTIONNESS_SHARE) * _unit(shared))

    # Phases: a component common to all classes (onset/offset look alike) plus a class-specific one.
    generic_phase = _unit(rng.standard_normal((3, r)))
    own_phase = _unit(rng.standard_normal((c, 3, r)))
    phase_part = _unit(math.sqrt(0.5) * generic_phase[None] + math.sqrt(0.5) * own_phase)
    phase_protos = _unit(
        math.sqrt(1 - d.phase_contrast) * class_protos[:, None, :] + math.sqrt(d.phase_contrast) * phase_part
    )

    group_ctx = _unit(rng.standard_normal((g, r)))
    contexts = _unit(math.sqrt(0.5) * group_ctx[groups] + math.sqrt(0.5) * _unit(rng.standard_normal((c, r))))

    d_rgb = config.dim // 2
    mix_rng = _rng(config.seed, "mixing", r, config.dim)
    mix = mix_rng.standard_normal((r, config.dim), dtype=np.float32)
    return SynthWorld(
        classes=list(classes),
        groups=groups,
        class_protos=class_protos,
        phase_protos=phase_protos,
        contexts=contexts,
        mix_rgb=np.ascontiguousarray(mix[:, :d_rgb]),
        mix_flow=np.ascontiguousarray(mix[:, d_rgb:]),
    )


# --------------------------------------------------------------------------------------------------
# Feature rendering
# --------------------------------------------------------------------------------------------------


def _presence(tau: np.ndarray, starts: np.ndarray, ends: np.ndarray, rho: float) -> np.ndarray:
    """(J, N) soft indicator of tick time inside [start, end]: logistic ramps of scale ``rho``."""
    t = tau[:, None]
    from scipy import special

    return (special.expit((t - starts) / rho) * special.expit((ends - t) / rho)).astype(np.float32)


def _phase_weights(tau: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """(J, N, 3) start/middle/end weights: linear tents over the relative position u in [0, 1]."""
    u = np.clip((tau[:, None] - starts) / np.maximum(ends - starts, 1e-3), 0.0, 1.0).astype(np.float32)
    return np.stack([np.maximum(0.0, 1 - 2 * u), 1 - np.abs(2 * u - 1), np.maximum(0.0, 2 * u - 1)], axis=-1)


def _smooth_background(rng: np.random.Generator, ticks: int, r: int, tick_seconds: float, tau_s: float) -> np.ndarray:
    """Stationary AR(1) drift per latent coordinate (unit variance, correlation time ``tau_s``)."""
    a = math.exp(-tick_seconds / tau_s)
    b = math.sqrt(1 - a * a)
    white = rng.standard_normal((ticks, r))
    # zi makes y[0] = white[0], so the process starts in its stationary distribution.
    from scipy import signal

    out, _ = signal.lfilter([b], [1.0, -a], white, axis=0, zi=((1 - b) * white[:1]))
    return out


def _clip_average(ticks: np.ndarray, per_clip: int, count: int) -> np.ndarray:
    """Feature k = mean of ticks k .. k+per_clip-1 (a clip spans several strides): (count, r)."""
    c = np.concatenate([np.zeros((1, ticks.shape[1]), ticks.dtype), np.cumsum(ticks, axis=0)])
    return (c[per_clip : per_clip + count] - c[:count]) / per_clip


def _label_indices(video: VideoAnnotation, classes: Sequence[str], source: str | None) -> np.ndarray:
    index = {name: i for i, name in enumerate(classes)}
    missing = sorted({s.label for s in video.segments} - index.keys())
    if missing:
        raise TadkitError(
            f"labels {missing} are not in the class list", file=source, video=video.video_id, field="label"
        )
    return np.array([index[s.label] for s in video.segments], dtype=np.int64)


def _action_signal(
    rng: np.random.Generator, world: SynthWorld, segments: np.ndarray, labels: np.ndarray,
    tau: np.ndarray, rho: float, d: SynthDifficulty,
) -> np.ndarray:
    """(J, r) latent of the labelled actions: per-instance phase prototypes under soft presence.

    Identical segments (e.g. CliffDiving + Diving duplicates) are one visual event, so they share
    boundary jitter; overlapping instances blend instead of adding up.
    """
    r = world.class_protos.shape[1]
    if not len(segments):
        return np.zeros((len(tau), r), dtype=np.float32)
    unique, inverse = np.unique(segments, axis=0, return_inverse=True)
    length = np.maximum(unique[:, 1] - unique[:, 0], 1e-3)
    bound = 0.25 * length[:, None]  # jitter never flips or swallows a short action
    jitter = np.clip(rng.normal(0.0, d.boundary_jitter, (len(unique), 2)), -bound, bound)
    starts = (unique[:, 0] + jitter[:, 0])[inverse.ravel()]
    ends = (unique[:, 1] + jitter[:, 1])[inverse.ravel()]
    deviation = _unit(rng.standard_normal((len(labels), r))) * d.intra_class
    amplitude = np.exp(0.15 * rng.standard_normal(len(labels)))
    instance = _unit(world.phase_protos[labels] + deviation[:, None, :]) * amplitude[:, None, None]
    presence = _presence(tau, starts, ends, rho)
    presence /= np.maximum(1.0, presence.sum(axis=1, keepdims=True))
    weights = presence[:, :, None] * _phase_weights(tau, starts, ends)  # (J, N, 3)
    return weights.reshape(len(tau), -1) @ instance.reshape(-1, r).astype(np.float32)


def _distractor_signal(
    rng: np.random.Generator, world: SynthWorld, video: VideoAnnotation, segments: np.ndarray, main: int,
    tau: np.ndarray, rho: float, d: SynthDifficulty,
) -> np.ndarray:
    """(J, r) latent of phase-less background bursts that weakly resemble a class (half the time the
    video's own), plus Ambiguous ranges rendered as unlabelled action-like events."""
    r = world.class_protos.shape[1]
    num_classes = len(world.classes)
    duration = float(video.duration)
    bursts = int(rng.poisson(d.distractor_rate * duration / 60.0))
    burst_len = np.clip(2.0 * np.exp(0.6 * rng.standard_normal(bursts)), 0.3, max(0.3, 0.3 * duration))
    burst_start = rng.uniform(0.0, 1.0, bursts) * np.maximum(duration - burst_len, 0.0)
    burst_class = np.where(rng.random(bursts) < 0.5, main, rng.integers(0, max(num_classes, 1), bursts))
    burst_noise = _unit(rng.standard_normal((bursts, r)))
    burst_gain = rng.uniform(0.6, 1.0, bursts)
    burst_end = burst_start + burst_len
    keep = np.ones(bursts, dtype=bool)
    if len(segments):  # a burst on top of a labelled action would be an unlabelled positive
        hits = (burst_start[:, None] < segments[None, :, 1]) & (burst_end[:, None] > segments[None, :, 0])
        keep = ~hits.any(axis=1)
    signal_ = np.zeros((len(tau), r), dtype=np.float32)
    if num_classes and keep.any():
        sim = d.distractor_similarity
        vecs = _unit(math.sqrt(sim) * world.class_protos[burst_class[keep]] + math.sqrt(1 - sim) * burst_noise[keep])
        vecs *= burst_gain[keep, None]
        signal_ = _presence(tau, burst_start[keep], burst_end[keep], rho) @ vecs.astype(np.float32)
    if video.ambiguous and num_classes:  # THUMOS "Ambiguous": action-like but unlabelled
        amb = np.asarray(video.ambiguous, dtype=np.float64).reshape(-1, 2)
        vec = (0.8 * world.class_protos[main]).astype(np.float32)
        signal_ += _presence(tau, amb[:, 0], amb[:, 1], rho).sum(axis=1, keepdims=True) * vec
    return signal_


def _scene_signal(
    rng: np.random.Generator, world: SynthWorld, main: int, duration: float, tau: np.ndarray, d: SynthDifficulty
) -> np.ndarray:
    """(J, r) per-video scene (partly the main class's context) that shifts at random shot cuts."""
    r = world.class_protos.shape[1]
    base = _unit(rng.standard_normal(r))
    if main >= 0:
        base = _unit(math.sqrt(d.scene_context) * world.contexts[main] + math.sqrt(1 - d.scene_context) * base)
    cuts = np.sort(rng.uniform(0.0, duration, rng.poisson(duration / _SHOT_SECONDS)))
    shots = _unit(base + _SHOT_CHANGE * _unit(rng.standard_normal((len(cuts) + 1, r)))) * d.scene_scale
    return shots[np.searchsorted(cuts, tau)]


def render_features(world: SynthWorld, video: VideoAnnotation, config: SynthConfig) -> np.ndarray:
    """(T, dim) float32 features of one video; T = :func:`video_num_features`.

    Latent signals are built per *tick* (one stride of frames), summed, averaged over the ticks of a
    16-frame clip (so feature k covers frames [4k, 4k+16)) and mapped to channels per stream.
    """
    d = config.difficulty
    r = config.latent_dim
    fps = float(video.fps or config.fps)
    duration = float(video.duration)
    count = video_num_features(video, config)
    per_clip = config.clip_frames // config.stride_frames
    ticks = count + per_clip - 1
    tick_seconds = config.stride_frames / fps
    tau = (np.arange(ticks) + 0.5) * tick_seconds  # tick centres in seconds
    rho = max(d.ramp_seconds / (2 * math.log(9.0)), 1e-3)  # logistic 10-90 % rise = 2 ln 9 * rho
    rng = _rng(config.seed, "features", video.video_id)
    num_classes = len(world.classes)

    labels = _label_indices(video, world.classes, config.timeline)
    segments = video.segment_array()
    action = _action_signal(rng, world, segments, labels, tau, rho, d)
    if len(labels):
        main = int(np.bincount(labels).argmax())
    else:
        main = int(rng.integers(num_classes)) if num_classes else -1
    distract = _distractor_signal(rng, world, video, segments, main, tau, rho, d)
    scene = _scene_signal(rng, world, main, duration, tau, d)
    background = _smooth_background(rng, ticks, r, tick_seconds, d.background_seconds)
    background *= d.background_scale / math.sqrt(r)  # unit variance per coordinate -> norm background_scale
    # White tick noise, scaled so that after clip averaging its per-feature norm is ~ d.noise.
    noise_scale = d.noise * math.sqrt(per_clip / r)

    streams = []
    for name in ("rgb", "flow"):
        g_scene, g_action, g_background = _STREAM_GAINS[name]
        z = g_scene * scene + g_action * (action + distract) + g_background * background
        z = z + noise_scale * rng.standard_normal((ticks, r))
        streams.append(_clip_average(z, per_clip, count).astype(np.float32))  # float64 cumsum: no drift

    # Channel noise comes from its own stream so the latent part is identical at every dim.
    obs_rng = _rng(config.seed, "channels", video.video_id)
    features = obs_rng.standard_normal((count, config.dim), dtype=np.float32)
    features *= np.float32(d.observation_noise)
    d_rgb = world.mix_rgb.shape[1]
    features[:, :d_rgb] += streams[0] @ world.mix_rgb
    features[:, d_rgb:] += streams[1] @ world.mix_flow
    return features


def center_labels(video: VideoAnnotation, classes: Sequence[str], count: int, config: SynthConfig) -> np.ndarray:
    """(count,) class index of the instance covering each feature's clip centre; -1 = background.

    For frame-level sanity checks; where instances overlap, the later one in the list wins.
    """
    fps = float(video.fps or config.fps)
    centre = (np.arange(count) * config.stride_frames + config.clip_frames / 2) / fps
    labels = _label_indices(video, classes, config.timeline)
    segments = video.segment_array()
    inside = (centre[:, None] >= segments[None, :, 0]) & (centre[:, None] < segments[None, :, 1])
    last = inside.shape[1] - 1 - np.argmax(inside[:, ::-1], axis=1) if inside.shape[1] else np.zeros(count, int)
    return np.where(inside.any(axis=1), labels[last] if len(labels) else -1, -1)


# --------------------------------------------------------------------------------------------------
# Dataset writer
# --------------------------------------------------------------------------------------------------


def _summary(annotations: AnnotationSet, config: SynthConfig) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for subset in annotations.subsets:
        part = annotations.subset(subset)
        arrays = [v.segment_array() for v in part.videos.values()]
        lengths = np.concatenate([a[:, 1] - a[:, 0] for a in arrays] + [np.zeros(0)])
        out[subset] = {
            "videos": len(part.videos),
            "instances": part.num_instances(),
            "features": int(sum(video_num_features(v, config) for v in part.videos.values())),
            "median_instance_seconds": round(float(np.median(lengths)), 3) if len(lengths) else None,
        }
    return out


def feature_spec(config: SynthConfig) -> "FeatureSpec":
    """The ``features/features.json`` contents: clip-start timing, per-video fps, rgb + flow concatenated."""
    from tadkit.data.features import FeatureSpec

    return FeatureSpec(
        fps=None,
        stride_frames=config.stride_frames,
        clip_frames=config.clip_frames,
        offset_frames=0,
        dim=config.dim,
        streams=("rgb", "flow"),
        layout="concat",
    )


def generate_dataset(
    out_dir: str | Path, config: SynthConfig, *, overwrite: bool = False, progress: bool = True
) -> Path:
    """Write ``annotations.json`` (tadkit JSON), ``features/<video>.npy`` + ``features/features.json``
    and ``synth.json`` (config and summary) under ``out_dir``; return ``out_dir`` as a Path.

    Annotations are written last, so a directory with ``annotations.json`` is complete.
    """
    from tadkit.utils.progress import progress as progress_bar  # tqdm on a TTY, plain lines in a log

    from tadkit.data.annotations import write_tadkit_json
    from tadkit.data.features import save_features

    config.validate()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise TadkitError("output path exists and is not a directory", file=str(out), field="out")
    feature_dir = out / "features"
    provenance = out / "synth.json"
    holds_data = (out / "annotations.json").exists() or (feature_dir.is_dir() and any(feature_dir.iterdir()))
    if holds_data and not overwrite:
        raise TadkitError(
            "directory already holds a dataset; pass --overwrite to replace it", file=str(out), field="out"
        )

    annotations = make_timelines(config)
    for video_id in annotations.videos:  # before anything is written
        check_video_id(video_id, file=config.timeline)
    world = make_world(annotations.classes, config)
    spec = feature_spec(config)

    if overwrite and provenance.is_file():  # drop features of videos the previous run wrote but this one does not
        try:
            previous = json.loads(provenance.read_text(encoding="utf-8")).get("videos", [])
        except (OSError, ValueError, AttributeError):
            previous = []
        for video_id in set(previous) - set(annotations.videos):
            if not is_usable_video_id(video_id):
                continue  # synth.json is data: its ids never reach a path unchecked
            stale = feature_dir / f"{video_id}.npy"
            if stale.is_file():
                stale.unlink()

    dtype = np.dtype(config.dtype)
    for video in progress_bar(annotations.videos.values(), total=len(annotations.videos), desc="synth features",
                              unit="video", disable=not progress):
        features = render_features(world, video, config)
        save_features(feature_dir, video.video_id, features.astype(dtype, copy=False), spec)
    spec.save(feature_dir)
    write_json(
        provenance,
        {
            "generator": GENERATOR_VERSION,
            "config": config.to_dict(),
            "summary": _summary(annotations, config),
            "videos": list(annotations.videos),
        },
    )
    write_tadkit_json(annotations, out / "annotations.json", indent=1)
    return out


# --------------------------------------------------------------------------------------------------
# CLI: `tadkit data synth`
# --------------------------------------------------------------------------------------------------


def _split_names(values: Sequence[str] | None) -> tuple[str, ...] | None:
    if not values:
        return None
    return tuple(name for value in values for name in value.split(",") if name)


def config_from_args(args: argparse.Namespace) -> SynthConfig:
    with_timeline = args.timeline is not None
    return SynthConfig(
        seed=args.seed,
        dim=args.dim,
        videos=SynthConfig.videos if args.videos is None or with_timeline else args.videos,
        timeline_videos=args.videos if with_timeline else None,
        subsets=_split_names(args.subset),
        timeline=args.timeline,
        preset=args.preset,
        num_classes=args.classes,
        dtype=args.dtype,
        difficulty=difficulty_from_spec(args.difficulty or []),
    )


def run_synth(args: argparse.Namespace) -> int:
    if getattr(args, "video", False):  # pixels for end-to-end methods: tadkit.data.synthetic_video
        from tadkit.data.synthetic_video import run_video_synth

        return run_video_synth(args)
    config = config_from_args(args)
    started = time.perf_counter()
    out = generate_dataset(args.out, config, overwrite=args.overwrite)
    elapsed = time.perf_counter() - started
    summary = json.loads((out / "synth.json").read_text(encoding="utf-8"))["summary"]
    parts = ", ".join(f"{name} {part['videos']}" for name, part in summary.items())
    videos = sum(part["videos"] for part in summary.values())
    instances = sum(part["instances"] for part in summary.values())
    size = sum(p.stat().st_size for p in (out / "features").glob("*.npy"))
    print(
        f"wrote {out}: {videos} videos ({parts}), {instances} instances; "
        f"features {config.dim}-d {config.dtype}, {size / 1e6:.1f} MB, {elapsed:.1f} s"
    )
    return 0


def register_synth_command(data_subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``synth`` to the ``tadkit data`` sub-commands and set its ``func``."""
    parser = data_subparsers.add_parser(
        "synth",
        help="write a synthetic THUMOS- or ActivityNet-like dataset (annotations + I3D-like features)",
        description=(
            "Write annotations.json, features/<video>.npy and features/features.json. Built-in timelines follow "
            "THUMOS14 statistics (--preset thumos14, the default) or ActivityNet's (--preset activitynet); "
            "--timeline keeps the real segments of an annotation file and synthesizes only the features. "
            "Same seed -> identical files."
        ),
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--preset", choices=PRESETS, default="thumos14",
        help="built-in timelines: thumos14 (default; 20 classes, ~15 short instances per 1-10 min video, subsets "
             "validation/test) or activitynet (~1.5 long instances per 2 s-4 min video covering ~70%% of it, "
             "subsets training/validation)",
    )
    parser.add_argument(
        "--classes", type=int, default=None, metavar="N",
        help="activitynet preset: number of classes (default 100 like v1.2; 200 like v1.3)",
    )
    parser.add_argument("--timeline", metavar="ANNOTATION_FILE", help="keep the real segments of this annotation file")
    parser.add_argument(
        "--subset", action="extend", nargs="+", metavar="NAME",
        help="subsets to write, repeatable or comma-separated (default: all; thumos14: validation test, "
             "activitynet: training validation)",
    )
    parser.add_argument("--dim", type=int, default=2048, help="feature channels, half rgb / half flow (default 2048)")
    parser.add_argument(
        "--videos", type=int, default=None, metavar="N",
        help="videos per subset: built-in timelines generate N (default 200); with --timeline, the first N video "
             "ids (sorted) of each subset of the file are kept (default all). Combines with --subset.",
    )
    parser.add_argument(
        "--difficulty", nargs="+", metavar="PRESET|KNOB=VALUE",
        help=f"preset ({', '.join(DIFFICULTY_PRESETS)}) and/or knobs, e.g. 'hard noise=1.2'; knobs: "
        + ", ".join(f.name for f in fields(SynthDifficulty)),
    )
    parser.add_argument("--dtype", choices=("float32", "float16"), default="float32", help="feature file dtype")
    parser.add_argument("--overwrite", action="store_true", help="replace a dataset already in --out")
    from tadkit.data.synthetic_video import add_video_arguments  # --video: rendered mp4 videos instead

    add_video_arguments(parser)
    parser.set_defaults(func=run_synth)
    return parser
