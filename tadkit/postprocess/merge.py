"""From per-window model outputs to one detection set in video seconds, and set-level edits.

* :func:`windows_to_detections`: window steps -> seconds (``t0 + position * step``), class index ->
  class name, optional clipping to each video's duration.
* :func:`duplicate_labels`: A2Net's THUMOS14 trick (every CliffDiving detection also as Diving).
* :func:`top_k_per_video`, :func:`clip_to_durations`, :func:`drop_overlapping`: small vectorized
  set edits the methods' post-processing needs (A2Net top-200, ACRNet's Ambiguous filter).
* :func:`enclosing_detection`: which detections lie inside a better same-class one (the nested
  extents a multi-threshold CAS recipe proposes), so a listing can say so.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from tadkit.data.records import DetectionSet
from tadkit.errors import TadkitError
from tadkit.models.base import WindowDetections
from tadkit.postprocess.nms import first_appearance_codes, rank_within_groups

__all__ = [
    "windows_to_detections",
    "duplicate_labels",
    "top_k_per_video",
    "clip_to_durations",
    "drop_overlapping",
    "enclosing_detection",
    "THUMOS14_DUPLICATES",
]

# THUMOS14 annotates every CliffDiving instance also as Diving; A2Net copies detections the same way.
THUMOS14_DUPLICATES: dict[str, str] = {"CliffDiving": "Diving"}

_META_KEYS = ("video_id", "t0", "step", "valid_length")


def _to_numpy(value: Any, dtype: type, video: str, field: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().to("cpu")
        if value.is_floating_point() and dtype is np.int64:
            raise TadkitError(f"must hold integer class indices, got dtype {value.dtype}", video=video, field=field)
        return value.numpy().astype(dtype, copy=False)
    arr = np.asarray(value)
    if arr.dtype == object or (dtype is np.int64 and arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise TadkitError(f"cannot read as {dtype.__name__} (dtype {arr.dtype})", video=video, field=field)
    return arr.astype(dtype, copy=False)


def _check_meta(meta: Any, index: int) -> tuple[str, float, float]:
    if not isinstance(meta, Mapping):
        raise TadkitError(f"window {index}: meta must be a dict, got {type(meta).__name__}", field="meta")
    missing = [key for key in _META_KEYS if key not in meta]
    if missing:
        raise TadkitError(f"window {index}: meta lacks {missing}", video=str(meta.get("video_id")), field="meta")
    video = str(meta["video_id"])
    try:
        t0, step = float(meta["t0"]), float(meta["step"])
    except (TypeError, ValueError):
        raise TadkitError(f"window {index}: t0/step must be numbers", video=video, field="meta.t0") from None
    if not math.isfinite(t0):
        raise TadkitError(f"window {index}: t0 is {t0}", video=video, field="meta.t0")
    if not math.isfinite(step) or step <= 0:
        raise TadkitError(f"window {index}: step must be a positive number of seconds, got {step}", video=video,
                          field="meta.step")
    return video, t0, step


def windows_to_detections(
    window_dets: Sequence[WindowDetections],
    metas: Sequence[Mapping[str, Any]],
    class_names: Sequence[str],
    clip_to_video: Mapping[str, float] | None = None,
    *,
    drop_empty: bool = False,
) -> DetectionSet:
    """Convert per-window detections (window steps, class indices) to one :class:`DetectionSet`.

    Args:
        window_dets: one :class:`WindowDetections` per window (``model.decode`` output).
        metas: the batch ``meta`` dicts, aligned with ``window_dets``: ``video_id``, ``t0``, ``step``,
            ``valid_length`` (``valid_length`` is checked for presence only; clip with durations).
        class_names: class index -> name.
        clip_to_video: ``{video_id: duration_s}``; when given, every video in ``metas`` must be in
            it and segments are clipped to ``[0, duration]``. ``None`` leaves times unclipped
            (A2Net's THUMOS code only clips inside the window).
        drop_empty: drop segments whose clipped length is <= 0 (those lying wholly outside the
            video). Off by default because the official codes keep them.

    Returns:
        Rows in window order, then the model's order within each window.
    """
    if len(window_dets) != len(metas):
        raise TadkitError(f"{len(window_dets)} windows of detections but {len(metas)} metas", field="meta")
    names = np.asarray(list(class_names), dtype=object)
    if names.size == 0:
        raise TadkitError("class_names is empty", field="class_names")
    segments, scores, labels, t0s, steps, videos, counts = [], [], [], [], [], [], []
    for index, (dets, meta) in enumerate(zip(window_dets, metas)):
        video, t0, step = _check_meta(meta, index)
        seg = _to_numpy(dets.segments, np.float64, video, "segments")
        if seg.size == 0:
            seg = seg.reshape(0, 2)
        elif seg.ndim != 2 or seg.shape[1] != 2:
            raise TadkitError(f"window {index}: segments must have shape (K, 2), got {seg.shape}", video=video,
                              field="segments")
        sc = _to_numpy(dets.scores, np.float64, video, "scores").reshape(-1)
        lab = _to_numpy(dets.labels, np.int64, video, "labels").reshape(-1)
        if not (len(seg) == len(sc) == len(lab)):
            raise TadkitError(f"window {index}: {len(seg)} segments, {len(sc)} scores, {len(lab)} labels",
                              video=video, field="detections")
        if len(lab) and (lab.min() < 0 or lab.max() >= len(names)):
            bad = int(lab[(lab < 0) | (lab >= len(names))][0])
            raise TadkitError(f"window {index}: class index {bad} outside 0..{len(names) - 1}", video=video,
                              field="labels")
        if not (np.isfinite(seg).all() and np.isfinite(sc).all()):
            raise TadkitError(f"window {index}: NaN or infinite segment/score", video=video, field="detections")
        if clip_to_video is not None and video not in clip_to_video:
            raise TadkitError("no duration given for this video (clip_to_video)", video=video, field="duration")
        segments.append(seg)
        scores.append(sc)
        labels.append(lab)
        t0s.append(t0)
        steps.append(step)
        videos.append(video)
        counts.append(len(sc))
    if not counts or sum(counts) == 0:
        return DetectionSet.empty()

    counts_arr = np.asarray(counts)
    seg = np.concatenate(segments)
    row_t0 = np.repeat(np.asarray(t0s), counts_arr)
    row_step = np.repeat(np.asarray(steps), counts_arr)
    video_col = np.repeat(np.asarray(videos, dtype=object), counts_arr)
    start = row_t0 + seg[:, 0] * row_step
    end = row_t0 + seg[:, 1] * row_step
    if clip_to_video is not None:
        durations = _durations_for(video_col, clip_to_video)
        start = np.clip(start, 0.0, durations)
        end = np.clip(end, 0.0, durations)
    out = DetectionSet(video_col, start, end, names[np.concatenate(labels)], np.concatenate(scores))
    if drop_empty:
        out = out.select(out.end > out.start)
    return out


def _durations_for(video_col: np.ndarray, durations: Mapping[str, float]) -> np.ndarray:
    """Per-row duration, looked up once per distinct video."""
    uniq, inverse = np.unique(video_col, return_inverse=True)
    values = np.empty(len(uniq), dtype=np.float64)
    for i, video in enumerate(uniq):
        if video not in durations:
            raise TadkitError("no duration given for this video", video=str(video), field="duration")
        value = durations[video]
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise TadkitError(f"duration {value!r} is not a number", video=str(video), field="duration") from None
        if not math.isfinite(value) or value <= 0:
            raise TadkitError(f"duration must be a positive number of seconds, got {value}", video=str(video),
                              field="duration")
        values[i] = value
    return values[inverse.reshape(-1)]


def clip_to_durations(dets: DetectionSet, durations: Mapping[str, float], *, drop_empty: bool = False) -> DetectionSet:
    """Clip every segment to ``[0, duration of its video]`` (every video must have a duration)."""
    if len(dets) == 0:
        return DetectionSet.empty()
    dur = _durations_for(dets.video, durations)
    out = DetectionSet(dets.video, np.clip(dets.start, 0.0, dur), np.clip(dets.end, 0.0, dur), dets.label, dets.score)
    return out.select(out.end > out.start) if drop_empty else out


def duplicate_labels(dets: DetectionSet, mapping: Mapping[str, str]) -> DetectionSet:
    """Append a copy of every detection whose label is a key of ``mapping``, relabelled to its value.

    ``duplicate_labels(dets, {"CliffDiving": "Diving"})`` is A2Net's THUMOS14 step (run it before
    NMS, as A2Net does). Originals come first, then the copies in their original order.
    """
    if not isinstance(mapping, Mapping):
        raise TadkitError(f"mapping must be a dict, got {type(mapping).__name__}", field="mapping")
    for source, target in mapping.items():
        if not isinstance(source, str) or not isinstance(target, str):
            raise TadkitError(f"mapping entries must be str -> str, got {source!r} -> {target!r}", field="mapping")
    if len(dets) == 0 or not mapping:
        return dets
    uniq, inverse = np.unique(dets.label, return_inverse=True)
    inverse = inverse.reshape(-1)
    targets = np.asarray([mapping.get(label) for label in uniq], dtype=object)  # per distinct label, not per row
    rows = np.flatnonzero(np.asarray([t is not None for t in targets])[inverse])
    if len(rows) == 0:
        return dets
    copies = DetectionSet(dets.video[rows], dets.start[rows], dets.end[rows], targets[inverse[rows]], dets.score[rows])
    return DetectionSet.concatenate([dets, copies])


def top_k_per_video(dets: DetectionSet, k: int) -> DetectionSet:
    """Keep the ``k`` best-scoring rows of each video.

    Output: videos in first-appearance order, rows by score desc (ties: input order).
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise TadkitError(f"k must be a positive integer, got {k!r}", field="k")
    if len(dets) == 0:
        return DetectionSet.empty()
    video_code, _ = first_appearance_codes(dets.video)
    order, rank = rank_within_groups(video_code, dets.score)
    order = order[rank[order] < k]
    return dets.select(order)


def drop_overlapping(dets: DetectionSet, regions: Mapping[str, np.ndarray]) -> DetectionSet:
    """Drop every detection that overlaps (intersection > 0) any region of its own video.

    ACRNet's THUMOS14 step with ``regions`` = the Ambiguous segments per video; class-agnostic.
    Videos without regions keep all their detections.
    """
    if len(dets) == 0:
        return DetectionSet.empty()
    keep = np.ones(len(dets), dtype=bool)
    for video, spans in regions.items():  # loop over videos with regions (a few hundred at most)
        spans = np.asarray(spans, dtype=np.float64).reshape(-1, 2)
        if len(spans) == 0:
            continue
        rows = np.flatnonzero(dets.video == video)
        if len(rows) == 0:
            continue
        inter = np.minimum(dets.end[rows, None], spans[None, :, 1]) - np.maximum(dets.start[rows, None],
                                                                                 spans[None, :, 0])
        keep[rows[(inter > 0).any(axis=1)]] = False
    return dets.select(keep)


def enclosing_detection(dets: DetectionSet) -> np.ndarray:
    """For each row, the row of the best-scoring detection of the same video and label that scores
    higher (ties: the earlier row) and contains it (``start <= s`` and ``e <= end``), else -1.

    Multi-threshold CAS recipes (ECM, ACRNet, W-TALC, the zero-shot detector) propose one run per
    threshold, so one action yields nested extents of decreasing score; NMS keeps those whose tIoU
    with the better one is below its threshold. They are alternative hypotheses, not separate actions.
    """
    parent = np.full(len(dets), -1, dtype=np.int64)
    if len(dets) < 2:
        return parent
    video_code, _ = first_appearance_codes(dets.video)
    label_code, _ = first_appearance_codes(dets.label)
    rows = np.arange(len(dets))
    for code in np.unique(video_code):  # one pairwise block per video (detections of one video: hundreds)
        idx = rows[video_code == code]
        s, e, score, label = dets.start[idx], dets.end[idx], dets.score[idx], label_code[idx]
        tie = (score[None, :] == score[:, None]) & (idx[None, :] < idx[:, None])
        better = (score[None, :] > score[:, None]) | tie
        inside = (s[None, :] <= s[:, None]) & (e[:, None] <= e[None, :]) & (label[None, :] == label[:, None]) & better
        ranked = np.where(inside, score[None, :], -np.inf)  # the best container: highest score, then first row
        order = np.lexsort((np.broadcast_to(idx[None, :], ranked.shape), -ranked), axis=1)[:, 0]
        has = inside.any(axis=1)
        parent[idx[has]] = idx[order[has]]
    return parent
