"""PNG plots for reports: detection timelines, mAP per duration bin, training curves, PR curves.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot state, no display needed, safe in
worker processes) and written atomically. Every function validates its input and raises
:class:`TadkitError` naming the offending field instead of producing an empty or broken image.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from tadkit.data.records import DetectionSet, Segment, VideoAnnotation
from tadkit.errors import TadkitError
from tadkit.utils.io import atomic_open

__all__ = ["plot_timeline", "plot_duration_map", "plot_training_curves", "plot_pr_curve", "class_colors"]

_DPI = 100
_MAX_TIMELINE_VIDEOS = 12


def class_colors(class_names: Sequence[str]) -> dict[str, tuple[float, float, float, float]]:
    """A stable colour per class (tab20, cycling), fixed by the class order."""
    from matplotlib import colormaps

    cmap = colormaps["tab20"]
    # tab20 comes in dark/light pairs: use the 10 dark shades first so neighbours differ clearly.
    order = list(range(0, 20, 2)) + list(range(1, 20, 2))
    return {name: to_rgba(cmap(order[i % 20])) for i, name in enumerate(class_names)}


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _check_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise TadkitError("plots are written as PNG; give a path ending in .png", file=str(path), field="path")
    return path


def _save(fig: Figure, path: Path) -> Path:
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=_DPI)
    return path


def _finite_number(value: Any, field: str, video: str | None = None) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TadkitError(f"{value!r} is not a number", video=video, field=field) from None
    if not math.isfinite(number):
        raise TadkitError(f"{value!r} is not finite", video=video, field=field)
    return number


# --------------------------------------------------------------------------------------------- #
# Timeline
# --------------------------------------------------------------------------------------------- #


def _gt_by_video(gt_segments: Any, detections: DetectionSet) -> dict[str, list[Segment]]:
    if isinstance(gt_segments, VideoAnnotation):
        return {gt_segments.video_id: list(gt_segments.segments)}
    if isinstance(gt_segments, Mapping):
        out = {}
        for video, segs in gt_segments.items():
            out[str(video)] = list(segs.segments) if isinstance(segs, VideoAnnotation) else list(segs)
        return out
    if isinstance(gt_segments, Sequence) and not isinstance(gt_segments, (str, bytes)):
        videos = detections.videos()
        if len(videos) > 1:
            raise TadkitError(
                f"a plain list of GT segments is for one video, but detections cover {len(videos)} videos; "
                "pass {video_id: segments}", field="gt_segments")
        return {videos[0] if videos else "video": list(gt_segments)}
    raise TadkitError(f"expected segments or {{video_id: segments}}, got {type(gt_segments).__name__}",
                      field="gt_segments")


def plot_timeline(
    gt_segments: Sequence[Segment] | Mapping[str, Sequence[Segment] | VideoAnnotation] | VideoAnnotation,
    detections: DetectionSet,
    duration: float | Mapping[str, float],
    class_names: Sequence[str],
    path: str | os.PathLike,
    title: str | None = None,
    *,
    max_detections: int = 30,
    min_score: float | None = None,
) -> Path:
    """Ground truth vs detections for one or a few videos, one panel per video.

    Each class present gets a row: ground truth is the solid upper bar, detections the lower bars
    with opacity rising with score (scores min-max scaled over the figure). Only the
    ``max_detections`` best detections of each video (and those >= ``min_score``) are drawn.

    Args:
        gt_segments: segments of one video, ``{video_id: segments}`` or a :class:`VideoAnnotation`.
        detections: a :class:`DetectionSet`; rows of other videos are ignored.
        duration: seconds (one video) or ``{video_id: seconds}``; sets the x range.
        class_names: fixes colours and row order; every label must be one of them.
        path: output ``.png``.
    """
    path = _check_path(path)
    if not isinstance(detections, DetectionSet):
        raise TadkitError(f"expected a DetectionSet, got {type(detections).__name__}", field="detections")
    names = [str(c) for c in class_names]
    if not names:
        raise TadkitError("class_names is empty", field="class_names")
    class_row = {name: i for i, name in enumerate(names)}
    colours = class_colors(names)
    gt = _gt_by_video(gt_segments, detections)
    if not gt:
        raise TadkitError("no video to plot", field="gt_segments")
    if len(gt) > _MAX_TIMELINE_VIDEOS:
        raise TadkitError(f"{len(gt)} videos; a timeline shows at most {_MAX_TIMELINE_VIDEOS}", field="gt_segments")
    if isinstance(max_detections, bool) or not isinstance(max_detections, int) or max_detections < 1:
        raise TadkitError(f"must be a positive integer, got {max_detections!r}", field="max_detections")

    panels = []
    for video, segs in gt.items():
        dur = _finite_number(duration.get(video) if isinstance(duration, Mapping) else duration, "duration", video)
        if dur <= 0:
            raise TadkitError(f"duration must be > 0, got {dur}", video=video, field="duration")
        gt_arr = np.zeros((len(segs), 2))
        gt_labels = []
        for i, seg in enumerate(segs):
            if not isinstance(seg, Segment):
                raise TadkitError(f"GT entry {i} is {type(seg).__name__}, not a Segment", video=video,
                                  field="gt_segments")
            start = _finite_number(seg.start, "gt_segments.start", video)
            end = _finite_number(seg.end, "gt_segments.end", video)
            if end < start:
                raise TadkitError(f"GT segment {i} ends ({end}) before it starts ({start})", video=video,
                                  field="gt_segments")
            if seg.label not in class_row:
                raise TadkitError(f"GT label {seg.label!r} is not in class_names", video=video, field="label")
            gt_arr[i] = start, end
            gt_labels.append(seg.label)
        rows = np.flatnonzero(detections.video == video)
        if min_score is not None:
            rows = rows[detections.score[rows] >= min_score]
        rows = rows[np.lexsort((rows, -detections.score[rows]))][:max_detections]
        det = detections.select(rows)
        if not (np.isfinite(det.start).all() and np.isfinite(det.end).all() and np.isfinite(det.score).all()):
            raise TadkitError("detections contain NaN or infinite values", video=video, field="detections")
        unknown = sorted({str(label) for label in det.label} - set(class_row))
        if unknown:
            raise TadkitError(f"detection label(s) {unknown} not in class_names", video=video, field="label")
        panels.append((video, dur, gt_arr, gt_labels, det))
    if all(len(p[2]) == 0 and len(p[4]) == 0 for p in panels):
        raise TadkitError("nothing to plot: no ground truth and no detections", field="detections")

    all_scores = np.concatenate([p[4].score for p in panels])
    lo, hi = (float(all_scores.min()), float(all_scores.max())) if all_scores.size else (0.0, 1.0)

    row_counts = [max(1, len(set(p[3]) | set(p[4].label.tolist()))) for p in panels]
    height = 0.9 + sum(0.6 + 0.42 * n for n in row_counts)
    fig = _new_figure(12.0, height)
    axes = fig.subplots(len(panels), 1, squeeze=False, height_ratios=[0.6 + 0.42 * n for n in row_counts])[:, 0]
    for ax, (video, dur, gt_arr, gt_labels, det) in zip(axes, panels):
        present = sorted(set(gt_labels) | set(det.label.tolist()), key=class_row.__getitem__)
        for r, name in enumerate(present):
            colour = colours[name]
            mask = np.asarray([label == name for label in gt_labels], dtype=bool)
            if mask.any():
                spans = [(s, e - s) for s, e in gt_arr[mask]]
                ax.broken_barh(spans, (r + 0.1, 0.38), facecolors=[colour], edgecolors="black", linewidth=0.6)
            dmask = det.label == name
            if dmask.any():
                strength = (det.score[dmask] - lo) / (hi - lo) if hi > lo else np.ones(int(dmask.sum()))
                faces = [(*colour[:3], 0.15 + 0.8 * float(a)) for a in strength]
                spans = [(s, e - s) for s, e in zip(det.start[dmask], det.end[dmask])]
                ax.broken_barh(spans, (r + 0.52, 0.38), facecolors=faces, edgecolors=[(0, 0, 0, 0.5)],
                               linewidth=0.4)
        ax.set_xlim(0.0, dur)
        ax.set_ylim(0.0, max(1, len(present)))
        ax.set_yticks(np.arange(len(present)) + 0.5, present if present else [])
        ax.invert_yaxis()  # first class on top; within a row the GT bar (smaller y) is drawn above
        ax.set_title(f"{video}  ({len(gt_arr)} GT, {len(det)} detections shown)", fontsize=9, loc="left")
        ax.grid(axis="x", alpha=0.3)
    axes[-1].set_xlabel("time (s)")
    caption = "per class: upper bar = ground truth, lower bars = detections (opacity ~ score"
    caption += f", {lo:.3g}..{hi:.3g})" if all_scores.size else ")"
    fig.suptitle(f"{title}\n{caption}" if title else caption, fontsize=10)
    return _save(fig, path)


# --------------------------------------------------------------------------------------------- #
# mAP per duration bin
# --------------------------------------------------------------------------------------------- #


def plot_duration_map(
    bins: Mapping[str, float] | Mapping[str, Mapping[str, float]],
    path: str | os.PathLike,
    title: str | None = None,
    *,
    ylabel: str = "mAP@0.5",
) -> Path:
    """Bars of a metric per GT-duration bin (A2Net Fig. 1 / Table I style).

    ``bins`` is ``{bin: value}`` for one method or ``{method: {bin: value}}`` for several methods
    side by side (all with the same bins; bar order = the first method's bin order).
    """
    path = _check_path(path)
    if not isinstance(bins, Mapping) or not bins:
        raise TadkitError("needs at least one bin", field="bins")
    first = next(iter(bins.values()))
    methods: dict[str, Mapping[str, Any]] = dict(bins) if isinstance(first, Mapping) else {"": bins}
    bin_names: list[str] | None = None
    table: dict[str, list[float]] = {}
    for method, values in methods.items():
        if not isinstance(values, Mapping) or not values:
            raise TadkitError(f"method {method!r} has no bins", field="bins")
        names = [str(k) for k in values]
        if bin_names is None:
            bin_names = names
        elif set(names) != set(bin_names):
            raise TadkitError(f"method {method!r} has bins {names}, expected {bin_names}", field="bins")
        table[method] = [_finite_number(values[b], f"bins.{b}") for b in bin_names]
        if any(v < 0 for v in table[method]):
            raise TadkitError(f"negative value for method {method!r}", field="bins")
    assert bin_names is not None
    fig = _new_figure(max(5.0, 1.1 * len(bin_names) * max(1, len(methods) * 0.6) + 2), 4.0)
    ax = fig.add_subplot()
    x = np.arange(len(bin_names))
    width = 0.8 / len(methods)
    palette = class_colors(list(methods))
    for i, (method, values) in enumerate(table.items()):
        offset = (i - (len(methods) - 1) / 2) * width
        bars = ax.bar(x + offset, values, width, label=method or None, color=palette[method], edgecolor="black",
                      linewidth=0.5)
        ax.bar_label(bars, labels=[f"{v:.3g}" for v in values], fontsize=8, padding=2)
    ax.set_xticks(x, bin_names)
    ax.set_xlabel("ground-truth duration bin")
    ax.set_ylabel(ylabel)
    top = max(max(v) for v in table.values())
    ax.set_ylim(0, top * 1.15 if top > 0 else 1.0)
    if len(methods) > 1:
        ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    if title:
        ax.set_title(title)
    return _save(fig, path)


# --------------------------------------------------------------------------------------------- #
# Training curves
# --------------------------------------------------------------------------------------------- #


def plot_training_curves(
    history: Mapping[str, Sequence[float]],
    path: str | os.PathLike,
    title: str | None = None,
    *,
    xlabel: str = "epoch",
) -> Path:
    """One panel per series (losses, learning rate, mAP...), x = 1..len(series).

    NaN entries are gaps (e.g. a metric evaluated every few epochs); each series needs at least
    one finite value.
    """
    path = _check_path(path)
    if not isinstance(history, Mapping) or not history:
        raise TadkitError("history is empty", field="history")
    series: dict[str, np.ndarray] = {}
    for name, values in history.items():
        try:
            arr = np.asarray(values, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise TadkitError(f"series {name!r} is not a list of numbers", field=f"history.{name}") from None
        if np.isinf(arr).any():
            raise TadkitError(f"series {name!r} contains infinite values", field=f"history.{name}")
        if not np.isfinite(arr).any():
            raise TadkitError(f"series {name!r} has no finite value", field=f"history.{name}")
        series[str(name)] = arr
    cols = min(3, len(series))
    rows = math.ceil(len(series) / cols)
    fig = _new_figure(4.2 * cols, 3.0 * rows + (0.4 if title else 0))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, (name, arr) in zip(axes, series.items()):
        x = np.arange(1, len(arr) + 1)
        finite = np.isfinite(arr)
        ax.plot(x[finite], arr[finite], marker="o" if finite.sum() <= 30 else None, markersize=3, linewidth=1.2)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        lowered = name.lower()
        if lowered in ("lr", "learning_rate") or lowered.endswith("/lr"):
            continue  # the best learning rate means nothing
        kind, best = ("min", int(np.nanargmin(arr))) if "loss" in lowered else ("max", int(np.nanargmax(arr)))
        right_half = x[best] > (x[0] + x[-1]) / 2
        ax.annotate(f"{kind} {arr[best]:.4g}", (x[best], arr[best]), fontsize=7, textcoords="offset points",
                    xytext=(-4 if right_half else 4, 4), ha="right" if right_half else "left")
    for ax in axes[len(series):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


# --------------------------------------------------------------------------------------------- #
# Precision-recall
# --------------------------------------------------------------------------------------------- #


def plot_pr_curve(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    path: str | os.PathLike,
    title: str | None = None,
) -> Path:
    """Precision-recall curves: ``{name: (recall, precision)}``, values in [0, 1]."""
    path = _check_path(path)
    if not isinstance(curves, Mapping) or not curves:
        raise TadkitError("no curve to plot", field="curves")
    fig = _new_figure(5.5, 4.5)
    ax = fig.add_subplot()
    for name, pair in curves.items():
        try:
            recall, precision = (np.asarray(v, dtype=np.float64).reshape(-1) for v in pair)
        except (TypeError, ValueError):
            raise TadkitError(f"curve {name!r} must be (recall, precision)", field=f"curves.{name}") from None
        if recall.size == 0 or recall.shape != precision.shape:
            raise TadkitError(f"curve {name!r}: recall and precision must be non-empty and equally long",
                              field=f"curves.{name}")
        both = np.concatenate([recall, precision])
        if not np.isfinite(both).all() or both.min() < 0 or both.max() > 1:
            raise TadkitError(f"curve {name!r}: values must be finite and in [0, 1]", field=f"curves.{name}")
        ax.plot(recall, precision, label=str(name), linewidth=1.2)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return _save(fig, path)
