"""Decoded frames for end-to-end methods (AFSD from pixels): the store written by ``tadkit data frames``
and the clip dataset read from it (spec ``methods/afsd.md`` §1, official ``AFSD/common/thumos_dataset.py``).

Store layout (``tadkit data frames VIDEO_DIR --out DIR``)::

    DIR/frames.json          {"format": "tadkit-frames", "version": 1, "fps": 10.0, "size": [H, W],
                              "streams": ["rgb", ...], "videos": {VIDEO: {"num_frames": n, ...}}}
                             (``--max-frames N``: "fps": null, "max_frames": N, each video its own "fps")
    DIR/rgb/VIDEO.npy        uint8 (n, H, W, 3)
    DIR/flow/VIDEO.npy       uint8 (n, H, W, 2)   (optional)

Clips follow the official code:

* training clips of ``clip_length`` frames every ``stride`` frames (plus the last offset); a GT goes
  with a clip when >= 50 % of it is inside (clipped to ``[1, L]`` in clip frames) and a clip is kept
  only if one GT lies wholly inside; per video, ``th`` = ceil of the shortest GT part seen in any clip
  (at most L) for the boundary-contrastive augmentation;
* training: random ``crop`` x ``crop`` crop and horizontal flip (p = 0.5), pixels ``/ 255 * 2 - 1``;
  a short clip is zero-padded BEFORE normalisation (-> -1); test: centre crop, padded AFTER it (-> 0),
  as the official loops do (spec pitfall 10);
* the augmented copy for the triplet loss (official ``augment_``): a background chunk of ``th`` frames
  is pasted into a GT longer than ``2 th`` and the displaced frames shift; its segments are
  A (first action part), B (second part), G (the pasted background).

``clip_plan="activitynet"`` follows ``AFSD/common/anet_dataset.py`` instead (its videos were sampled to at most
``clip_length`` frames): one training clip per video at offset 0 with every GT of positive length, unclipped
(no ioa rule; a video without GT is skipped), a short clip padded with 127.5 before normalisation (-> 0) in
training too, ``th = int(floor(shortest GT) / 4)`` and a GT at least ``2 th`` long (``>=``) for the augmented
copy, which is dropped when the official slice assignment would fail (its ``except RuntimeError``).

Random draws come from torch's RNG (seeded by the engine, per DataLoader worker), not Python's
``random`` as in the official code: same distributions, other streams.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from tadkit.data.annotations import AnnotationSet
from tadkit.data.choices import CLIP_PLANS
from tadkit.data.dataset import subset_with_videos, video_targets
from tadkit.data.ids import check_video_id
from tadkit.errors import TadkitError
from tadkit.video.frames import FORMAT, STREAM_CHANNELS, read_index
from tadkit.video.frames import INDEX_FILE as MANIFEST


# --------------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FrameVideo:
    num_frames: int
    duration: float | None
    fps: float | None = None  # its own rate (a --max-frames store); None = the store's


class FrameStore:
    """Frames of one stream (``rgb`` or ``flow``) under ``root``, memory-mapped on read; ``rgb+flow``
    reads both and concatenates their channels (5), for testing an RGB and a flow model fused."""

    def __init__(self, root: str | Path, stream: str = "rgb") -> None:
        self.root = Path(root)
        manifest = self.root / MANIFEST
        meta = read_index(self.root)  # the writer's reader: format, version and the videos object checked
        if meta is None:
            raise TadkitError(f"no {MANIFEST} here: make frames with `tadkit data frames VIDEO_DIR --out {self.root}`",
                              file=str(manifest), field="data.frames")
        parts = stream.split("+")
        if not parts or any(part not in STREAM_CHANNELS for part in parts) or len(set(parts)) != len(parts):
            raise TadkitError(f"unknown stream {stream!r}; rgb, flow or rgb+flow", field="data.stream")
        for part in parts:
            if part not in meta.get("streams", []):
                raise TadkitError(f"stream {part!r} was not extracted (streams: {meta.get('streams')}); "
                                  + ("run `tadkit data frames ... --flow`" if part == "flow" else ""),
                                  file=str(manifest), field="streams")
        self.manifest = manifest
        self.stream = stream
        self.parts = parts
        self.channels = sum(STREAM_CHANNELS[part] for part in parts)

        def optional(value: Any) -> float | None:
            return None if value is None else float(value)

        try:
            # a --max-frames store (ActivityNet) has no common rate: each video has its own
            self.max_frames = None if meta.get("max_frames") is None else int(meta["max_frames"])
            self.fps = None if self.max_frames else float(meta["fps"])
            self.size = tuple(int(v) for v in meta["size"])
            self.videos = {
                str(v): FrameVideo(int(info["num_frames"]), optional(info.get("duration")),
                                   float(info["fps"]) if self.max_frames else None)
                for v, info in meta["videos"].items()
            }
        except (KeyError, TypeError, ValueError) as error:
            raise TadkitError(f"malformed frame manifest: {error!r}", file=str(manifest), field="videos") from None
        if (self.fps is not None and not (math.isfinite(self.fps) and self.fps > 0)) or len(self.size) != 2:
            raise TadkitError("fps must be > 0 and size [H, W]", file=str(manifest), field="fps")
        for video, info in self.videos.items():
            if info.fps is not None and not (math.isfinite(info.fps) and info.fps > 0):
                raise TadkitError(f"fps must be > 0, got {info.fps}", file=str(manifest), video=video,
                                  field=f"videos.{video}.fps")

    def video_fps(self, video: str) -> float:
        """Frames per second of one video (the store's rate, or its own in a --max-frames store)."""
        own = self.videos[video].fps
        return float(own if own is not None else self.fps)

    def path(self, video: str, part: str | None = None) -> Path:
        return self.root / (part or self.parts[0]) / f"{check_video_id(video, file=self.manifest)}.npy"

    def __contains__(self, video: str) -> bool:
        return video in self.videos

    def frames(self, video: str, part: str | None = None) -> np.ndarray:
        """(n, H, W, C) uint8 of one stored stream (default: the first), memory-mapped; shape checked
        against the manifest."""
        if video not in self.videos:
            raise TadkitError(f"no frames for this video in {self.manifest}", file=str(self.manifest), video=video,
                              field="videos")
        part = part or self.parts[0]
        path = self.path(video, part)
        try:
            array = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as error:
            raise TadkitError(f"cannot read frames: {error}", file=str(path), video=video) from None
        expected = (self.videos[video].num_frames, *self.size, STREAM_CHANNELS[part])
        if array.dtype != np.uint8 or tuple(array.shape) != expected:
            raise TadkitError(f"frames are {array.dtype} {tuple(array.shape)}, the manifest says uint8 {expected}",
                              file=str(path), video=video, field="shape")
        return array

    def clip(self, video: str, start: int, stop: int) -> np.ndarray:
        """Frames ``start:stop`` (L, H, W, channels): a memory-mapped slice, or both streams concatenated."""
        if len(self.parts) == 1:
            return self.frames(video)[start:stop]
        return np.concatenate([self.frames(video, part)[start:stop] for part in self.parts], axis=-1)


# --------------------------------------------------------------------------------------------------
# Clip plans (official split_videos)
# --------------------------------------------------------------------------------------------------


def clip_offsets(num_frames: int, clip_length: int, stride: int) -> list[int]:
    """0, stride, ... up to ``num_frames - clip_length``, plus that last offset when off the grid;
    a video no longer than a clip has the single offset 0."""
    if num_frames <= clip_length:
        return [0]
    offsets = list(range(0, num_frames - clip_length + 1, stride))
    if (num_frames - clip_length) % stride:
        offsets.append(num_frames - clip_length)
    return offsets


def clip_gts(gts: np.ndarray, offsets: Sequence[int], clip_length: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Per offset: the (M, 3) GTs ``(start, end, class)`` attached to that clip (ioa >= 0.5, clipped to
    ``[1, L]`` in clip frames) and whether a GT lies wholly inside (ioa >= 1), vectorised over offsets x GTs."""
    g = np.asarray(gts, dtype=np.float64).reshape(-1, 3)
    off = np.asarray(offsets, dtype=np.float64)[:, None]
    left, right = off + 1, off + clip_length
    with np.errstate(divide="ignore", invalid="ignore"):
        ioa = (np.minimum(right, g[None, :, 1]) - np.maximum(left, g[None, :, 0])) / (g[None, :, 1] - g[None, :, 0])
    attached = ioa >= 0.5
    inside = (ioa >= 1.0).any(axis=1) if len(g) else np.zeros(len(off), dtype=bool)
    per_clip = []
    for k in range(len(off)):
        rows = g[attached[k]]
        per_clip.append(np.stack([np.maximum(rows[:, 0] - off[k, 0], 1), np.minimum(rows[:, 1] - off[k, 0], clip_length),
                                  rows[:, 2]], axis=1) if len(rows) else np.zeros((0, 3)))
    return per_clip, inside


def contrastive_th(gts: np.ndarray, per_clip: Sequence[np.ndarray], num_frames: int, clip_length: int) -> int:
    """Official ``min_anno_dict``: ceil of the shortest GT part over every clip (kept or not), starting
    from L; a video no longer than a clip also counts its whole GTs."""
    shortest = float(clip_length)
    g = np.asarray(gts, dtype=np.float64).reshape(-1, 3)
    if num_frames <= clip_length and len(g):
        shortest = min(shortest, float((g[:, 1] - g[:, 0]).min()))
    for rows in per_clip:
        if len(rows):
            shortest = min(shortest, float((rows[:, 1] - rows[:, 0]).min()))
    return math.ceil(shortest)


# --------------------------------------------------------------------------------------------------
# Augmentation
# --------------------------------------------------------------------------------------------------


def _choice(n: int) -> int:
    return int(torch.randint(0, n, (1,)).item())


def background_gap(gts: np.ndarray, clip_length: int, th: int, choice: Callable[[int], int] = _choice) -> tuple[int, int] | None:
    """Official ``get_bg``: a random gap between GT boundaries / clip borders (not a GT itself) with
    ``floor(end) - ceil(start) > th``, as integer frames ``(ceil(start), floor(end))``."""
    bounds = sorted([float(v) for row in gts for v in row[:2]] + [0.0, float(clip_length - 1)])
    spans = {(float(r[0]), float(r[1])) for r in gts}
    gaps = [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if (a, b) not in spans and math.floor(b) - math.ceil(a) > th]
    if not gaps:
        return None
    a, b = gaps[choice(len(gaps))]
    return math.ceil(a), math.floor(b)


def contrastive_augment(
    clip: torch.Tensor, gts: np.ndarray, th: int, choice: Callable[[int], int] = _choice, plan: str = "thumos14"
) -> tuple[torch.Tensor, np.ndarray] | None:
    """Official ``augment_`` on a (C, L, H, W) clip: (augmented clip, (3, 2) segments A, B, G in clip frames)
    or None when no GT is longer than ``2 th`` (ActivityNet: at least) or no background gap fits. ``choice(n)``
    draws an index in ``[0, n)`` (the official ``random.choice`` calls, in the same order)."""
    g = np.asarray(gts, dtype=np.float64).reshape(-1, 3)
    length = g[:, 1] - g[:, 0]
    long = g[length >= 2 * th] if plan == "activitynet" else g[length > 2 * th]
    if th <= 0 or not len(long):
        return None
    gt = long[choice(len(long))]
    split_choices = range(math.floor(th), math.ceil(gt[1] - gt[0] - th))
    if not len(split_choices):
        return None
    t = split_choices[choice(len(split_choices))] + math.ceil(gt[0])
    gap = background_gap(g, clip.shape[1], th, choice)
    if gap is None:
        return None
    start = choice(gap[1] - gap[0] - th) + gap[0]
    end = start + th
    out = clip.clone()
    try:
        if gt[1] < start:  # background after the action: paste at t, shift [t, start) right by th
            out[:, t:t + th] = clip[:, start:end]
            out[:, t + th:end] = clip[:, t:start]
            segments = [[gt[0], t], [t + th, th + gt[1]], [t + 1, t + th - 1]]
        else:  # background before: shift (end, t] left by th, paste just before t
            out[:, start:t - th] = clip[:, end:t]
            out[:, t - th:t] = clip[:, start:end]
            segments = [[gt[0] - th, t - th], [t, gt[1]], [t - th + 1, t - 1]]
    except RuntimeError:  # slices of different sizes: ActivityNet's augment_ catches it (no copy), THUMOS's does not
        if plan != "activitynet":
            raise
        return None
    return out, np.asarray(segments, dtype=np.float64)


def normalise(frames: np.ndarray) -> torch.Tensor:
    """(L, H, W, C) uint8 -> (C, L, H, W) float32 in [-1, 1] (official ``/ 255 * 2 - 1``)."""
    # one copy of the (memory-mapped, read-only) uint8 slice; torch wants writable memory
    return torch.from_numpy(np.array(frames, dtype=np.uint8)).permute(3, 0, 1, 2).float().div_(255.0).mul_(2.0).sub_(1.0)


# --------------------------------------------------------------------------------------------------
# Dataset
# --------------------------------------------------------------------------------------------------


@dataclass
class FrameClip:
    """One clip: offset in frames, GTs (M, 3) ``(start, end, class 0-based)`` in clip frames."""

    video_id: str
    offset: int
    gts: np.ndarray
    th: int


class FrameClipDataset:
    """Clips of decoded frames for an end-to-end detector (see module doc).

    Samples: ``clip`` (C, L, crop, crop) float32, ``segments`` (M, 2) clip frames, ``labels`` (M,),
    ``meta`` {video_id, t0 (s), step (s per frame), valid_length}; training samples add ``ssl_clip`` /
    ``ssl_segments`` / ``ssl_valid`` (the contrastive copy) when ``contrastive`` is on.
    """

    def __init__(
        self,
        annotations: AnnotationSet,
        store: FrameStore,
        *,
        subset: str | list[str] | None,
        clip_length: int = 256,
        stride: int | None = None,
        crop: int = 96,
        training: bool = True,
        contrastive: bool = True,
        clip_plan: str = "thumos14",
    ) -> None:
        if clip_plan not in CLIP_PLANS:
            raise TadkitError(f"must be one of {CLIP_PLANS}, got {clip_plan!r}", field="data.clip_plan")
        self.clip_plan = clip_plan
        self.annotations = subset_with_videos(annotations, subset)
        self.store = store
        self.clip_length = int(clip_length)
        self.stride = int(stride if stride is not None else (30 if training else clip_length // 2))
        self.crop = int(crop)
        self.training = training
        self.contrastive = contrastive and training
        if min(store.size) < self.crop:
            raise TadkitError(f"crop {self.crop} is larger than the stored frames {store.size}",
                              file=str(store.manifest), field="data.crop_size")
        self.clips: list[FrameClip] = []
        self.skipped: list[str] = []
        for video in self.annotations.videos.values():
            if video.video_id not in store:
                raise TadkitError(f"video of subset {subset!r} has no frames in {store.manifest}",
                                  file=str(store.manifest), video=video.video_id, field="videos")
            seconds, labels = video_targets(self.annotations, video)
            gts = np.concatenate([seconds * store.video_fps(video.video_id), labels[:, None].astype(np.float64)], axis=1)
            self.clips.extend(self._plan(video.video_id, gts))
        if not self.clips:
            raise TadkitError(f"no {'training ' if training else ''}clips in subset {subset!r}",
                              file=str(store.manifest), field="subset")

    @property
    def classes(self) -> list[str]:
        return list(self.annotations.classes)

    def _plan(self, video_id: str, gts: np.ndarray) -> list[FrameClip]:
        n = self.store.videos[video_id].num_frames
        offsets = clip_offsets(n, self.clip_length, self.stride)
        if not self.training:
            return [FrameClip(video_id, o, np.zeros((0, 3)), 0) for o in offsets]
        if self.clip_plan == "activitynet":  # anet_dataset.split_videos: offset 0, every GT as it is
            rows = gts[gts[:, 1] > gts[:, 0]]
            if not len(rows):
                return []
            shortest = min(float(self.clip_length), float((rows[:, 1] - rows[:, 0]).min()))
            return [FrameClip(video_id, 0, rows, int(math.floor(shortest) / 4))]
        per_clip, inside = clip_gts(gts, offsets, self.clip_length)
        th = contrastive_th(gts, per_clip, n, self.clip_length)
        return [FrameClip(video_id, o, rows, th) for o, rows, keep in zip(offsets, per_clip, inside) if keep]

    def __len__(self) -> int:
        return len(self.clips)

    def _pixels(self, clip: FrameClip) -> tuple[torch.Tensor, int]:
        raw = self.store.clip(clip.video_id, clip.offset, clip.offset + self.clip_length)
        valid = raw.shape[0]
        h, w = raw.shape[1:3]
        if self.training:  # random crop + flip, pad raw zeros (-> -1)
            top, left = _choice(h - self.crop + 1), _choice(w - self.crop + 1)
            pixels = normalise(raw[:, top:top + self.crop, left:left + self.crop])
            if torch.rand(()) < 0.5:
                pixels = pixels.flip(-1)
            if valid < self.clip_length:  # THUMOS pads 0 (-> -1), ActivityNet 127.5 (-> 0)
                value = 0.0 if self.clip_plan == "activitynet" else -1.0
                pad = torch.full((pixels.shape[0], self.clip_length - valid, self.crop, self.crop), value)
                pixels = torch.cat([pixels, pad], dim=1)
        else:  # centre crop, pad normalised zeros
            top, left = (h - self.crop) // 2, (w - self.crop) // 2
            pixels = normalise(raw[:, top:top + self.crop, left:left + self.crop])
            if valid < self.clip_length:
                pad = torch.zeros((pixels.shape[0], self.clip_length - valid, self.crop, self.crop))
                pixels = torch.cat([pixels, pad], dim=1)
        return pixels, valid

    def __getitem__(self, index: int) -> dict[str, Any]:
        clip = self.clips[index]
        pixels, valid = self._pixels(clip)
        fps = self.store.video_fps(clip.video_id)
        sample: dict[str, Any] = {
            "clip": pixels,
            "segments": clip.gts[:, :2].astype(np.float32),
            "labels": clip.gts[:, 2].astype(np.int64),
            "meta": {"video_id": clip.video_id, "t0": clip.offset / fps, "step": 1.0 / fps,
                     "valid_length": valid},
        }
        if self.contrastive:
            augmented = contrastive_augment(pixels, clip.gts, clip.th, plan=self.clip_plan)
            sample["ssl_valid"] = augmented is not None
            sample["ssl_clip"] = augmented[0] if augmented else pixels
            sample["ssl_segments"] = (augmented[1] if augmented else np.zeros((3, 2))).astype(np.float32)
        return sample


def collate_clips(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch clips: ``clip`` (B, C, L, h, w); ``targets`` per clip (segments in clip frames, labels);
    ``meta``; with the contrastive copy: ``ssl_clip`` (S, ...) of the S valid ones, ``ssl_segments``
    (S, 3, 2), ``ssl_index`` (S,) their rows in the batch."""
    if not samples:
        raise ValueError("cannot collate an empty list of clips")
    batch: dict[str, Any] = {
        "clip": torch.stack([s["clip"] for s in samples]),
        "targets": [{"segments": torch.from_numpy(s["segments"].reshape(-1, 2)),
                     "labels": torch.from_numpy(s["labels"].reshape(-1))} for s in samples],
        "meta": [dict(s["meta"]) for s in samples],
    }
    if "ssl_valid" in samples[0]:
        rows = [i for i, s in enumerate(samples) if s["ssl_valid"]]
        batch["ssl_index"] = torch.tensor(rows, dtype=torch.int64)
        if rows:
            batch["ssl_clip"] = torch.stack([samples[i]["ssl_clip"] for i in rows])
            batch["ssl_segments"] = torch.stack([torch.from_numpy(samples[i]["ssl_segments"]) for i in rows])
    return batch


__all__ = [
    "CLIP_PLANS",
    "FORMAT",
    "MANIFEST",
    "FrameClip",
    "FrameClipDataset",
    "FrameStore",
    "FrameVideo",
    "background_gap",
    "clip_gts",
    "clip_offsets",
    "collate_clips",
    "contrastive_augment",
    "contrastive_th",
    "normalise",
]
