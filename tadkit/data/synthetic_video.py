"""Synthetic THUMOS-like *videos* (pixels) for end-to-end methods: ``tadkit data synth --video``.

Timelines come from :mod:`tadkit.data.synthetic` (the THUMOS14 preset, drawn over short videos, or a
real annotation file's), then every video is rendered at 10 fps as small uint8 RGB frames:

* a per-video background texture (coloured gratings + static grain), a camera that shakes by a pixel
  or two, a brightness flicker and per-pixel sensor noise;
* distractors (discs and squares) that wander at random all the time;
* one **actor**, an elongated bar, that stands still outside the annotated instances and, during an
  instance of class k, performs class k's motion pattern (:data:`MOTIONS`: sway, bounce, circle, pulse,
  spin, zigzag, figure-8, shake, squash, rock; classes 10-19 are faster variants). The actor's colour
  does not depend on the class; its size does, a little (a weak appearance hint).

Frame i shows time ``i / 10`` s; a video of ``duration`` seconds (on a 0.1 s grid) has exactly
``round(duration * 10)`` frames; frame i is inside instance [s, e) when ``s <= i / 10 < e``.
Every video draws from its own RNG seeded by ``(seed, video_id)``: same seed -> identical frames.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tadkit.data.ids import check_video_id, is_usable_video_id
from tadkit.data.records import AnnotationSet, Segment, VideoAnnotation
from tadkit.data.synthetic import (
    DEFAULT_SUBSETS,
    THUMOS14_CLASSES,
    SynthConfig,
    _rng,
    default_timelines,
    make_timelines,
    num_frames,
)
from tadkit.errors import TadkitError
from tadkit.utils.io import write_json

VIDEO_GENERATOR_VERSION = "tadkit-synth-video-1"
VIDEO_FPS = 10.0
MIN_SIZE, MAX_SIZE = 64, 112


@dataclass(frozen=True)
class Motion:
    """One class's motion pattern: a family (what moves), its frequency and the actor's size hint."""

    name: str
    family: str
    hz: float  # cycles per second (spin: half-turns look alike, the bar is symmetric)
    size: float  # actor length as a fraction of the frame side (the weak appearance hint)


_FAMILIES: tuple[tuple[str, float], ...] = (
    ("sway", 0.8),  # horizontal oscillation
    ("bounce", 0.9),  # vertical bounce |sin|, upwards
    ("circle", 0.6),  # circular path
    ("pulse", 0.9),  # size grows and shrinks
    ("spin", 0.4),  # the bar rotates
    ("zigzag", 0.7),  # back and forth along a diagonal (triangle wave)
    ("figure8", 0.5),  # Lissajous 1:2
    ("shake", 2.0),  # small fast horizontal shake
    ("squash", 1.0),  # aspect ratio oscillates (longer/thinner, shorter/thicker)
    ("rock", 0.8),  # the bar tilts back and forth
)
_FAST = 1.6  # classes 10-19: the same families, this much faster
# Actor length per class (fraction of the side): a permutation of 0.18..0.30, so the size hint is
# unrelated to family and speed; per-instance jitter makes neighbouring sizes overlap.
_SIZES = tuple(0.18 + 0.12 * ((7 * k) % 20) / 19 for k in range(20))
MOTIONS: tuple[Motion, ...] = tuple(
    Motion(name if k < 10 else f"{name}_fast", name, hz if k < 10 else hz * _FAST, _SIZES[k])
    for k, (name, hz) in enumerate(_FAMILIES + _FAMILIES)
)
VIDEO_CLASSES: tuple[str, ...] = tuple(m.name for m in MOTIONS)


@dataclass
class VideoSynthConfig:
    """Everything that determines a synthetic video dataset (with ``seed``, identical frames)."""

    seed: int = 0
    videos: int = 20  # per subset (built-in timelines); with `timeline`: the first N ids of each subset
    subsets: tuple[str, ...] | None = None  # None: validation, test
    num_classes: int = 20  # built-in timelines: the first N of VIDEO_CLASSES
    size: int = 64  # frame side in pixels (square, even, 64..112)
    duration: float = 32.0  # typical video length (s): lengths are drawn in [0.7, 1.3] x this
    density: float = 1.5  # multiplies the THUMOS per-class instance rates
    distractors: int = 4  # randomly moving objects besides the actor
    # libx264 quality; 0 = lossless (default): x264's lossy output differed between identical encodes here
    # (decoded frames up to 36 grey levels apart), lossless decodes to the same frames every time
    crf: int = 0
    timeline: str | None = None  # annotation file whose real segments are rendered instead
    # nuisance knobs (tests switch them off to measure the actor alone)
    shake: float = 0.8  # camera jitter std (pixels)
    flicker: float = 0.04  # brightness gain std
    noise: float = 3.0  # per-pixel sensor noise std (grey levels)
    batch_frames: int = 64  # frames rendered per vectorised batch (memory only; output does not depend on it)

    def validate(self) -> None:
        def bad(name: str, message: str) -> TadkitError:
            return TadkitError(message, file=self.timeline if name == "timeline" else None, field=name)

        if not isinstance(self.seed, int) or self.seed < 0:
            raise bad("seed", f"must be an integer >= 0, got {self.seed!r}")
        if self.videos < 1:
            raise bad("videos", f"must be >= 1, got {self.videos}")
        if not 1 <= self.num_classes <= len(MOTIONS):
            raise bad("video_classes", f"must be in 1..{len(MOTIONS)} (one motion pattern per class), "
                      f"got {self.num_classes}")
        if not MIN_SIZE <= self.size <= MAX_SIZE or self.size % 2:
            raise bad("video_size", f"must be an even number in {MIN_SIZE}..{MAX_SIZE} (yuv420p), got {self.size}")
        if not (math.isfinite(self.duration) and self.duration >= 5.0):
            raise bad("video_duration", f"must be >= 5 s, got {self.duration}")
        if not (math.isfinite(self.density) and self.density > 0):
            raise bad("density", f"must be > 0, got {self.density}")
        if self.distractors < 0:
            raise bad("video_distractors", f"must be >= 0, got {self.distractors}")
        if not 0 <= self.crf <= 51:
            raise bad("video_crf", f"must be in 0..51, got {self.crf}")
        for name in ("shake", "flicker", "noise"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise bad(name, f"must be a finite number >= 0, got {value!r}")
        if self.batch_frames < 1:
            raise bad("batch_frames", f"must be >= 1, got {self.batch_frames}")
        if self.subsets is not None and not self.subsets:
            raise bad("subsets", "must name at least one subset")

    def classes(self) -> list[str]:
        return list(VIDEO_CLASSES[: self.num_classes])

    def timeline_config(self) -> SynthConfig:
        """The feature generator's config whose timelines are rendered: THUMOS14 statistics over short
        10 fps videos, no CliffDiving->Diving duplicates (one actor does one thing at a time)."""
        if self.timeline is not None:
            return SynthConfig(seed=self.seed, timeline=self.timeline, timeline_videos=self.videos,
                               subsets=self.subsets, fps=VIDEO_FPS)
        return SynthConfig(
            seed=self.seed, videos=self.videos, subsets=self.subsets, fps=VIDEO_FPS, alt_fps_fraction=0.0,
            min_video_seconds=0.7 * self.duration, max_video_seconds=1.3 * self.duration,
            density=self.density, cliffdiving_also_diving=False,
        )


# --------------------------------------------------------------------------------------------------
# Timelines (drawn by tadkit.data.synthetic; here only relabelled and put on the 10 fps grid)
# --------------------------------------------------------------------------------------------------


def make_video_timelines(config: VideoSynthConfig) -> AnnotationSet:
    """Timelines to render. Built-in: the THUMOS14 preset's (per-class rates and durations, gaps,
    overlaps) over ``config.duration``-long videos; the j-th video of a subset is mostly of class ``j mod K`` (a
    rare second class of the video becomes another class), so every class gets as many videos;
    durations floored to 0.1 s, so a video has exactly duration x 10 frames."""
    config.validate()
    if config.timeline is not None:
        source = make_timelines(config.timeline_config())
        if len(source.classes) > len(MOTIONS):
            raise TadkitError(f"{len(source.classes)} classes, but there are only {len(MOTIONS)} motion patterns",
                              file=config.timeline, field="classes")
        videos = {}
        for video_id, video in source.videos.items():
            duration = math.floor(float(video.duration) * 10 + 1e-6) / 10
            segments = [s for s in video.segments if s.start < duration]
            videos[video_id] = replace(video, duration=duration, fps=VIDEO_FPS, segments=segments,
                                       num_frames=num_frames(duration, VIDEO_FPS))
        return source.with_videos(videos)

    base = default_timelines(config.timeline_config())
    classes = config.classes()
    k = len(classes)
    videos: dict[str, VideoAnnotation] = {}
    position: dict[str, int] = {}
    for video_id, video in base.videos.items():
        j = position[video.subset] = position.get(video.subset, -1) + 1
        duration = math.floor(float(video.duration) * 10 + 1e-6) / 10  # the generator's segment limit
        names = [s.label for s in video.segments]
        main = max(dict.fromkeys(names), key=names.count)
        # balanced classes: the j-th video of a subset is mostly class j mod K; a second THUMOS class
        # (rare) becomes another class
        relabel = {name: classes[(j + (0 if name == main else 1 + THUMOS14_CLASSES.index(name) % max(k - 1, 1))) % k]
                   for name in dict.fromkeys(names)}
        segments = [Segment(s.start, min(s.end, duration), relabel[s.label]) for s in video.segments]
        segments.sort(key=lambda s: (s.start, s.end, s.label))
        videos[video_id] = VideoAnnotation(
            video_id=video_id, subset=video.subset, duration=duration, fps=VIDEO_FPS, segments=segments,
            num_frames=num_frames(duration, VIDEO_FPS),
        )
    return AnnotationSet(videos=videos, classes=classes, source="<synthetic video>", format="synthetic",
                         version=VIDEO_GENERATOR_VERSION)


def frame_labels(video: VideoAnnotation, classes: Sequence[str], count: int | None = None) -> np.ndarray:
    """(T,) index of the instance (into ``video.segments``) frame i is inside, -1 for none; where
    instances overlap, the one starting last wins (that is the one the actor performs)."""
    count = num_frames(float(video.duration), VIDEO_FPS) if count is None else count
    t = np.arange(count) / VIDEO_FPS
    seg = video.segment_array()
    if not len(seg):
        return np.full(count, -1, dtype=np.int64)
    inside = (t[:, None] >= seg[None, :, 0] - 1e-9) & (t[:, None] < seg[None, :, 1] - 1e-9)
    starts = np.where(inside, seg[None, :, 0], -np.inf)
    # latest start; ties -> the later segment in the list
    best = len(seg) - 1 - np.argmax(starts[:, ::-1], axis=1)
    return np.where(inside.any(axis=1), best, -1)


# --------------------------------------------------------------------------------------------------
# Scene: per-video tracks of the actor and distractors (no pixels yet)
# --------------------------------------------------------------------------------------------------

_PALETTE = np.array([[230, 60, 50], [40, 170, 230], [240, 200, 40]], dtype=np.float32)  # actor colours


@dataclass
class Scene:
    """Per-frame state of one video (positions in pixels of the padded-free frame)."""

    background: np.ndarray  # (S + 2 pad, S + 2 pad, 3) float32
    pad: int
    shake: np.ndarray  # (T, 2) int: camera offset (dy, dx)
    gain: np.ndarray  # (T,) brightness gain
    actor_xy: np.ndarray  # (T, 2) centre (x, y)
    actor_len: np.ndarray  # (T,) bar length
    actor_wid: np.ndarray  # (T,) bar width
    actor_angle: np.ndarray  # (T,) radians
    actor_colour: np.ndarray  # (3,)
    distractor_xy: np.ndarray  # (D, T, 2)
    distractor_radius: np.ndarray  # (D,)
    distractor_square: np.ndarray  # (D,) bool
    distractor_colour: np.ndarray  # (D, 3)
    instance: np.ndarray  # (T,) instance index per frame, -1 outside


def _ar1(rng: np.random.Generator, count: int, shape: tuple[int, ...], steps: float) -> np.ndarray:
    """(count, *shape) stationary unit-variance AR(1) series along axis 0, correlation time ``steps`` frames."""
    from scipy import signal  # lazily, like tadkit.data.synthetic

    a = math.exp(-1.0 / max(steps, 1e-6))
    b = math.sqrt(1 - a * a)
    white = rng.standard_normal((count, *shape))
    if not count:
        return white
    zi = ((1 - b) * white[:1])  # y[0] = white[0]: starts in the stationary distribution
    out, _ = signal.lfilter([b], [1.0, -a], white, axis=0, zi=zi)
    return out


def _fold(raw: np.ndarray, low: np.ndarray | float, high: np.ndarray | float) -> np.ndarray:
    """Reflect a free path into [low, high] (a ball bouncing between walls)."""
    span = np.maximum(np.asarray(high) - np.asarray(low), 1e-6)
    p = np.mod(raw - low, 2 * span)
    return low + span - np.abs(p - span)


def _triangle(theta: np.ndarray) -> np.ndarray:
    """Triangle wave in [-1, 1] with period 2 pi, 0 at theta = 0."""
    return 2.0 / math.pi * np.arcsin(np.sin(theta))


def _background(rng: np.random.Generator, side: int) -> np.ndarray:
    """(side, side, 3) float32 texture: a muted base colour, a few coloured gratings, static grain."""
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / side
    base = rng.uniform(60, 150, 3).astype(np.float32)
    image = np.broadcast_to(base, (side, side, 3)).copy()
    for _ in range(5):
        angle = rng.uniform(0, math.pi)
        cycles = rng.uniform(1.0, 4.0)
        phase = rng.uniform(0, 2 * math.pi)
        wave = np.sin(2 * math.pi * cycles * (xx * math.cos(angle) + yy * math.sin(angle)) + phase)
        image += wave[..., None] * rng.uniform(-14, 14, 3).astype(np.float32)
    image += rng.normal(0.0, 5.0, (side, side, 1)).astype(np.float32)
    return image


def _actor_motion(video: VideoAnnotation, classes: Sequence[str], instance: np.ndarray, rng: np.random.Generator,
                  side: int) -> dict[str, np.ndarray]:
    """Per-frame displacement (dx, dy), size/aspect multipliers, angle offset and class size of the actor."""
    count = len(instance)
    t = np.arange(count) / VIDEO_FPS
    seg = video.segment_array()
    n = len(seg)
    label_index = {name: i for i, name in enumerate(classes)}
    motion_of = np.array([label_index[s.label] for s in video.segments], dtype=np.int64)
    # per-instance variation: frequency +-10 %, phase, amplitude, size jitter, direction sign
    freq_jitter = np.exp(0.07 * rng.standard_normal(n))
    phase = rng.uniform(0, 2 * math.pi, n)
    amp_jitter = np.exp(0.1 * rng.standard_normal(n))
    size_jitter = np.exp(0.08 * rng.standard_normal(n))
    sign = np.where(rng.random(n) < 0.5, -1.0, 1.0)

    out = {k: np.zeros(count) for k in ("dx", "dy", "angle")}
    out.update(scale=np.ones(count), aspect=np.ones(count), size=np.zeros(count), env=np.zeros(count))
    active = instance >= 0
    if not active.any():
        return out
    i = instance[active]
    ta = t[active]
    s, e = seg[i, 0], seg[i, 1]
    ramp = np.minimum(0.3, (e - s) / 3)  # 0.3 s ease-in/out: the actor starts and stops smoothly
    u = np.clip(np.minimum(ta - s, e - ta) / np.maximum(ramp, 1e-6), 0.0, 1.0)
    env = u * u * (3 - 2 * u)
    motions = [MOTIONS[k] for k in motion_of[i]]
    hz = np.array([m.hz for m in motions]) * freq_jitter[i]
    theta = 2 * math.pi * hz * (ta - s) + phase[i]
    amp = 0.2 * side * amp_jitter[i]
    family = np.array([m.family for m in motions])
    dx, dy = np.zeros(len(i)), np.zeros(len(i))
    scale, aspect, angle = np.zeros(len(i)), np.zeros(len(i)), np.zeros(len(i))  # log-scale, log-aspect
    f = family == "sway"
    dx[f] = amp[f] * np.sin(theta[f])
    f = family == "bounce"
    dy[f] = -amp[f] * np.abs(np.sin(theta[f] / 2))
    f = family == "circle"
    dx[f], dy[f] = 0.8 * amp[f] * np.cos(theta[f]), 0.8 * amp[f] * sign[i][f] * np.sin(theta[f])
    f = family == "pulse"
    scale[f] = 0.45 * np.sin(theta[f])
    f = family == "spin"
    angle[f] = sign[i][f] * 2 * math.pi * hz[f] * (ta[f] - s[f])
    f = family == "zigzag"
    dx[f] = 0.8 * amp[f] * _triangle(theta[f])
    dy[f] = -sign[i][f] * 0.8 * amp[f] * _triangle(theta[f])
    f = family == "figure8"
    dx[f], dy[f] = amp[f] * np.sin(theta[f]), 0.5 * amp[f] * np.sin(2 * theta[f])
    f = family == "shake"
    dx[f] = 0.3 * amp[f] * np.sin(theta[f])
    f = family == "squash"
    aspect[f] = 0.5 * np.sin(theta[f])
    f = family == "rock"
    angle[f] = 0.7 * np.sin(theta[f])
    out["dx"][active], out["dy"][active] = env * dx, env * dy
    out["scale"][active] = np.exp(env * scale)
    out["aspect"][active] = np.exp(env * aspect)
    out["angle"][active] = env * angle
    out["size"][active] = np.array([m.size for m in motions]) * size_jitter[i] * side
    out["env"][active] = env
    return out


def build_scene(video: VideoAnnotation, classes: Sequence[str], config: VideoSynthConfig) -> Scene:
    """Draw every random choice of one video (from its own RNG streams) and the per-frame tracks."""
    side = config.size
    count = num_frames(float(video.duration), VIDEO_FPS)
    label_index = {name: i for i, name in enumerate(classes)}
    missing = sorted({s.label for s in video.segments} - label_index.keys())
    if missing:
        raise TadkitError(f"labels {missing} are not in the class list", file=config.timeline,
                          video=video.video_id, field="label")
    if len(classes) > len(MOTIONS):
        raise TadkitError(f"{len(classes)} classes, but there are only {len(MOTIONS)} motion patterns",
                          file=config.timeline, field="classes")
    instance = frame_labels(video, classes, count)

    # camera: background texture (with a margin for the shake), shake and flicker
    rng = _rng(config.seed, "video-camera", video.video_id)
    pad = max(1, int(math.ceil(3 * config.shake)))
    background = _background(rng, side + 2 * pad)
    shake = np.clip(np.rint(config.shake * _ar1(rng, count, (2,), 8.0)), -pad, pad).astype(np.int64)
    gain = 1.0 + config.flicker * _ar1(rng, count, (), 5.0)

    # actor: colour (class-independent), idle pose, then the motion of each instance
    rng = _rng(config.seed, "video-actor", video.video_id)
    colour = _PALETTE[int(rng.integers(len(_PALETTE)))] + rng.uniform(-15, 15, 3).astype(np.float32)
    home = rng.uniform(0.38, 0.62, 2) * side
    idle_len = rng.uniform(0.2, 0.26) * side
    idle_angle = rng.uniform(-0.3, 0.3)
    m = _actor_motion(video, classes, instance, rng, side)
    length = (idle_len * (1 - m["env"]) + m["size"] * m["env"]) * m["scale"] * m["aspect"]
    width = np.maximum(length / (2.3 * m["aspect"] ** 2), 2.0)
    xy = np.stack([home[0] + m["dx"], home[1] + m["dy"]], axis=1)

    # distractors: discs and squares wandering at random (smooth random velocity, bouncing off the borders)
    rng = _rng(config.seed, "video-distractors", video.video_id)
    d = config.distractors
    radius = rng.uniform(0.04, 0.09, d) * side
    square = rng.random(d) < 0.5
    dcolour = rng.uniform(30, 235, (d, 3)).astype(np.float32)
    speed = rng.uniform(0.15, 0.35, d) * side / VIDEO_FPS  # pixels per frame (rms)
    velocity = _ar1(rng, count, (d, 2), 10.0) * speed[None, :, None]
    start = rng.uniform(0, side, (d, 2))
    raw = start[None] + np.cumsum(velocity, axis=0)  # (T, D, 2)
    low, high = radius[None, :, None], side - radius[None, :, None]
    dxy = _fold(raw, low, high).transpose(1, 0, 2)

    return Scene(background=background, pad=pad, shake=shake, gain=gain, actor_xy=xy, actor_len=length,
                 actor_wid=width, actor_angle=idle_angle + m["angle"], actor_colour=colour,
                 distractor_xy=dxy, distractor_radius=radius, distractor_square=square,
                 distractor_colour=dcolour, instance=instance)


def _composite(frames: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> None:
    """In place: frames (B, H, W, 3) <- frames over-painted by ``colour`` with coverage ``alpha`` (B, H, W)."""
    a = alpha[..., None]
    frames *= 1.0 - a
    frames += a * colour


def render_video_frames(video: VideoAnnotation, classes: Sequence[str],
                        config: VideoSynthConfig | None = None) -> np.ndarray:
    """(T, S, S, 3) uint8 RGB frames of one video at 10 fps; T = round(duration x 10).

    Vectorised over batches of ``config.batch_frames`` frames; the per-object work is a handful of
    array operations per batch. Identical output for the same (seed, video, config)."""
    config = config or VideoSynthConfig()
    config.validate()
    scene = build_scene(video, classes, config)
    side, pad = config.size, scene.pad
    count = len(scene.instance)
    out = np.empty((count, side, side, 3), dtype=np.uint8)
    grid = np.arange(side, dtype=np.float32) + 0.5  # pixel centres
    noise_rng = _rng(config.seed, "video-noise", video.video_id)
    for lo in range(0, count, config.batch_frames):
        hi = min(count, lo + config.batch_frames)
        sl = slice(lo, hi)
        shake = scene.shake[sl]  # (B, 2) dy, dx
        rows = pad + shake[:, 0, None] + np.arange(side)  # (B, S)
        cols = pad + shake[:, 1, None] + np.arange(side)
        frames = scene.background[rows[:, :, None], cols[:, None, :]]  # (B, S, S, 3)
        # objects move with the camera
        ox = shake[:, 1].astype(np.float32)[:, None, None]
        oy = shake[:, 0].astype(np.float32)[:, None, None]
        x = grid[None, None, :]  # (1, 1, S)
        y = grid[None, :, None]
        for k in range(len(scene.distractor_radius)):
            cx = scene.distractor_xy[k, sl, 0][:, None, None] - ox
            cy = scene.distractor_xy[k, sl, 1][:, None, None] - oy
            r = scene.distractor_radius[k]
            if scene.distractor_square[k]:
                alpha = np.clip(r + 0.5 - np.abs(x - cx), 0, 1) * np.clip(r + 0.5 - np.abs(y - cy), 0, 1)
            else:
                alpha = np.clip(r + 0.5 - np.sqrt((x - cx) ** 2 + (y - cy) ** 2), 0, 1)
            _composite(frames, alpha.astype(np.float32), scene.distractor_colour[k])
        # the actor: a rotated bar with anti-aliased edges, drawn last (on top)
        cx = scene.actor_xy[sl, 0][:, None, None] - ox
        cy = scene.actor_xy[sl, 1][:, None, None] - oy
        cos = np.cos(scene.actor_angle[sl])[:, None, None]
        sin = np.sin(scene.actor_angle[sl])[:, None, None]
        u = (x - cx) * cos + (y - cy) * sin
        v = -(x - cx) * sin + (y - cy) * cos
        half_len = scene.actor_len[sl][:, None, None] / 2
        half_wid = scene.actor_wid[sl][:, None, None] / 2
        alpha = np.clip(half_len + 0.5 - np.abs(u), 0, 1) * np.clip(half_wid + 0.5 - np.abs(v), 0, 1)
        _composite(frames, alpha.astype(np.float32), scene.actor_colour)
        frames *= scene.gain[sl].astype(np.float32)[:, None, None, None]
        if config.noise > 0:
            frames += noise_rng.standard_normal(frames.shape, dtype=np.float32) * np.float32(config.noise)
        np.clip(np.rint(frames), 0, 255, out=frames)
        out[sl] = frames.astype(np.uint8)
    return out


# --------------------------------------------------------------------------------------------------
# Encoding and the dataset writer
# --------------------------------------------------------------------------------------------------


def encode_mp4(frames: np.ndarray, path: str | Path, *, fps: float = VIDEO_FPS, crf: int = 0) -> Path:
    """Write (T, H, W, 3) uint8 RGB frames as H.264 (libx264, yuv420p, ``crf``; 0 = lossless, so decoding
    gives the same frames on every run) mp4, atomically."""
    import av  # lazily: `tadkit data --help` must not import PyAV

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial.mp4")
    try:
        with av.open(str(partial), "w") as container:
            stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
            stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
            stream.options = {"crf": str(crf), "preset": "veryfast", "threads": "1"}
            for image in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        os.replace(partial, path)
    finally:
        if partial.exists():
            partial.unlink()
    return path


def _summary(annotations: AnnotationSet) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for subset in annotations.subsets:
        part = annotations.subset(subset)
        lengths = [s.end - s.start for v in part.videos.values() for s in v.segments]
        out[subset] = {
            "videos": len(part.videos),
            "instances": part.num_instances(),
            "frames": int(sum(v.num_frames or 0 for v in part.videos.values())),
            "median_instance_seconds": round(float(np.median(lengths)), 3) if lengths else None,
        }
    return out


def generate_video_dataset(out_dir: str | Path, config: VideoSynthConfig, *, overwrite: bool = False,
                           progress: bool = True) -> Path:
    """Write ``videos/<video>.mp4``, ``synth.json`` (config, summary, render speed) and, last,
    ``annotations.json`` (tadkit JSON, fps 10, num_frames) under ``out_dir``; return it as a Path."""
    from tadkit.data.annotations import write_tadkit_json
    from tadkit.utils.progress import progress as progress_bar

    config.validate()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise TadkitError("output path exists and is not a directory", file=str(out), field="out")
    video_dir = out / "videos"
    provenance = out / "synth.json"
    holds_data = (out / "annotations.json").exists() or (video_dir.is_dir() and any(video_dir.iterdir()))
    if holds_data and not overwrite:
        raise TadkitError("directory already holds a dataset; pass --overwrite to replace it", file=str(out),
                          field="out")
    annotations = make_video_timelines(config)
    for video_id in annotations.videos:  # before anything is written (FFmpeg would stop a name at a NUL)
        check_video_id(video_id, file=config.timeline)
    if overwrite and provenance.is_file():  # drop videos of the previous run that this one does not write
        try:
            previous = json.loads(provenance.read_text(encoding="utf-8")).get("videos", [])
        except (OSError, ValueError, AttributeError):
            previous = []
        for video_id in set(previous) - set(annotations.videos):
            if not is_usable_video_id(video_id):
                continue  # synth.json is data: its ids never reach a path unchecked
            stale = video_dir / f"{video_id}.mp4"
            if stale.is_file():
                stale.unlink()

    render_seconds = encode_seconds = 0.0
    frames_total = 0
    for video in progress_bar(annotations.videos.values(), total=len(annotations.videos), desc="synth videos",
                              unit="video", disable=not progress):
        started = time.perf_counter()
        frames = render_video_frames(video, annotations.classes, config)
        rendered = time.perf_counter()
        encode_mp4(frames, video_dir / f"{video.video_id}.mp4", crf=config.crf)
        render_seconds += rendered - started
        encode_seconds += time.perf_counter() - rendered
        frames_total += len(frames)
    config_dict = asdict(config)
    config_dict["subsets"] = list(config.subsets or DEFAULT_SUBSETS) if config.timeline is None else config.subsets
    write_json(provenance, {
        "generator": VIDEO_GENERATOR_VERSION,
        "config": config_dict,
        "fps": VIDEO_FPS,
        "classes": {name: asdict(MOTIONS[i]) for i, name in enumerate(annotations.classes)},
        "summary": _summary(annotations),
        "speed": {"frames": frames_total, "render_seconds": round(render_seconds, 3),
                  "encode_seconds": round(encode_seconds, 3)},
        "videos": list(annotations.videos),
    })
    write_tadkit_json(annotations, out / "annotations.json", indent=1)
    return out


# --------------------------------------------------------------------------------------------------
# CLI: `tadkit data synth --video`
# --------------------------------------------------------------------------------------------------


def add_video_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``--video`` flag and its options on the ``tadkit data synth`` parser."""
    group = parser.add_argument_group("synthetic videos (--video)")
    group.add_argument(
        "--video", action="store_true",
        help="write pixels instead of features: videos/<video>.mp4 (10 fps, H.264) + annotations.json; an actor "
             "performs one motion pattern per class among wandering distractors and camera noise",
    )
    group.add_argument("--video-size", type=int, default=VideoSynthConfig.size, metavar="PX",
                       help=f"frame side in pixels, even, {MIN_SIZE}..{MAX_SIZE} (default {VideoSynthConfig.size})")
    group.add_argument("--video-classes", type=int, default=VideoSynthConfig.num_classes, metavar="K",
                       help=f"number of classes (motion patterns), 1..{len(MOTIONS)} (default "
                            f"{VideoSynthConfig.num_classes})")
    group.add_argument("--video-duration", type=float, default=VideoSynthConfig.duration, metavar="SECONDS",
                       help=f"typical video length; lengths are drawn in [0.7, 1.3] x this (default "
                            f"{VideoSynthConfig.duration:g}; --videos defaults to {VideoSynthConfig.videos} per subset)")
    group.add_argument("--video-distractors", type=int, default=VideoSynthConfig.distractors, metavar="N",
                       help=f"randomly moving distractor objects (default {VideoSynthConfig.distractors})")
    group.add_argument("--video-crf", type=int, default=VideoSynthConfig.crf, metavar="CRF",
                       help=f"libx264 constant rate factor (default {VideoSynthConfig.crf} = lossless: the same decoded frames "
                       "on every run; lossy encodes differed between runs here)")


def video_config_from_args(args: argparse.Namespace) -> VideoSynthConfig:
    if args.preset != "thumos14":
        raise TadkitError("--video renders THUMOS-like timelines; --preset activitynet is for features only",
                          field="preset")
    for name, flag in (("classes", "--classes"), ("difficulty", "--difficulty")):
        if getattr(args, name, None):
            raise TadkitError(f"{flag} is for features; with --video use --video-classes / the --video-* options",
                              field=name)
    subsets = tuple(n for value in args.subset or [] for n in value.split(",") if n) or None
    return VideoSynthConfig(
        seed=args.seed,
        videos=VideoSynthConfig.videos if args.videos is None else args.videos,
        subsets=subsets,
        num_classes=args.video_classes,
        size=args.video_size,
        duration=args.video_duration,
        distractors=args.video_distractors,
        crf=args.video_crf,
        timeline=args.timeline,
    )


def run_video_synth(args: argparse.Namespace) -> int:
    config = video_config_from_args(args)
    started = time.perf_counter()
    out = generate_video_dataset(args.out, config, overwrite=args.overwrite)
    elapsed = time.perf_counter() - started
    info = json.loads((out / "synth.json").read_text(encoding="utf-8"))
    summary, speed = info["summary"], info["speed"]
    parts = ", ".join(f"{name} {part['videos']}" for name, part in summary.items())
    videos = sum(part["videos"] for part in summary.values())
    instances = sum(part["instances"] for part in summary.values())
    size = sum(p.stat().st_size for p in (out / "videos").glob("*.mp4"))
    busy = speed["render_seconds"] + speed["encode_seconds"]
    print(
        f"wrote {out}: {videos} videos ({parts}), {instances} instances, {len(config.classes()) if config.timeline is None else 'file'} "
        f"classes; {speed['frames']} frames {config.size}x{config.size} at 10 fps, {size / 1e6:.1f} MB, {elapsed:.1f} s "
        f"({speed['frames'] / max(busy, 1e-9):.0f} frames/s render+encode)"
    )
    return 0
