"""PNG plots for reports: detection timelines, mAP per duration bin, PR curves (training curves:
:mod:`tadkit.viz.curves`).

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

from tadkit.data.records import DetectionSet, Segment, VideoAnnotation
from tadkit.errors import TadkitError
from tadkit.utils.io import atomic_open

__all__ = ["plot_timeline", "plot_duration_map", "plot_pr_curve", "class_colors"]

_DPI = 100
_MAX_TIMELINE_VIDEOS = 12


def _palette() -> list[tuple[float, float, float, float]]:
    """Distinct, non-grey colours: tab20's 9 dark then 9 light shades (its grey pair left out, so
    grey never stands for a real class), then tab20b's 20 colours."""
    from matplotlib import colormaps

    tab20, tab20b = colormaps["tab20"], colormaps["tab20b"]
    # tab20 comes in dark/light pairs: the dark shades first so neighbours differ clearly.
    dark = [i for i in range(0, 20, 2) if i != _TAB20_GREY]
    light = [i for i in range(1, 20, 2) if i != _TAB20_GREY + 1]
    return [to_rgba(tab20(i)) for i in dark + light] + [to_rgba(tab20b(i)) for i in range(20)]


_TAB20_GREY = 14  # tab20 indices 14/15 are the grey pair


def class_colors(class_names: Sequence[str]) -> dict[str, tuple[float, float, float, float]]:
    """A stable colour per class, fixed by the class order; never grey (38 colours, then cycling)."""
    palette = _palette()
    return {name: palette[i % len(palette)] for i, name in enumerate(class_names)}


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


_GUIDE_GREY = (0.35, 0.35, 0.35, 1.0)  # legend swatches only: a style, never a class


def _score_alpha(score: np.ndarray, score_range: tuple[float, float]) -> np.ndarray:
    """Opacity of a detection bar on a fixed scale: ``score_range[0]`` -> 0.15, ``score_range[1]`` -> 0.95
    (clipped), the same in every figure so two plots compare by eye."""
    lo, hi = score_range
    return 0.15 + 0.8 * np.clip((np.asarray(score, dtype=np.float64) - lo) / (hi - lo), 0.0, 1.0)


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
    score_range: tuple[float, float] = (0.0, 1.0),
    total_detections: int | Mapping[str, int] | None = None,
) -> Path:
    """Ground truth vs detections for one or a few videos, one panel per video.

    Each class present gets a row: ground truth is the solid upper bar, detections the lower bars
    with opacity rising with score on a fixed scale (``score_range``, default 0..1, clipped; the same
    in every figure). Only the ``max_detections`` best detections of each video (and those >=
    ``min_score``) are drawn; each panel says "top k of N". A legend explains the bars.

    Args:
        gt_segments: segments of one video, ``{video_id: segments}`` or a :class:`VideoAnnotation`.
        detections: a :class:`DetectionSet`; rows of other videos are ignored.
        duration: seconds (one video) or ``{video_id: seconds}``; sets the x range.
        class_names: fixes colours and row order; every label must be one of them.
        path: output ``.png``.
        score_range: scores mapped to the faintest and the most opaque bar.
        total_detections: how many detections the video really had, when the caller passes only a
            pre-selection (int for one video or ``{video_id: N}``); default: rows of ``detections``.
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
    try:
        s_lo, s_hi = (_finite_number(v, "score_range") for v in score_range)
    except TypeError:
        raise TadkitError(f"must be (low, high), got {score_range!r}", field="score_range") from None
    if not s_hi > s_lo:
        raise TadkitError(f"must be (low, high) with high > low, got {score_range!r}", field="score_range")

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
        available = len(rows)
        if total_detections is not None:
            given = total_detections.get(video) if isinstance(total_detections, Mapping) else total_detections
            if given is not None:
                if isinstance(given, bool) or not isinstance(given, (int, np.integer)) or given < available:
                    raise TadkitError(f"must be an integer >= the {available} detections passed, got {given!r}",
                                      video=video, field="total_detections")
                available = int(given)
        if min_score is not None:
            rows = rows[detections.score[rows] >= min_score]
        rows = rows[np.lexsort((rows, -detections.score[rows]))][:max_detections]
        det = detections.select(rows)
        if not (np.isfinite(det.start).all() and np.isfinite(det.end).all() and np.isfinite(det.score).all()):
            raise TadkitError("detections contain NaN or infinite values", video=video, field="detections")
        unknown = sorted({str(label) for label in det.label} - set(class_row))
        if unknown:
            raise TadkitError(f"detection label(s) {unknown} not in class_names", video=video, field="label")
        panels.append((video, dur, gt_arr, gt_labels, det, available))
    if all(len(p[2]) == 0 and len(p[4]) == 0 for p in panels):
        raise TadkitError("nothing to plot: no ground truth and no detections", field="detections")

    all_scores = np.concatenate([p[4].score for p in panels])
    clipped = int(((all_scores < s_lo) | (all_scores > s_hi)).sum())

    row_counts = [max(1, len(set(p[3]) | set(p[4].label.tolist()))) for p in panels]
    height = 1.5 + sum(0.6 + 0.42 * n for n in row_counts)
    fig = _new_figure(12.0, height)
    axes = fig.subplots(len(panels), 1, squeeze=False, height_ratios=[0.6 + 0.42 * n for n in row_counts])[:, 0]
    for ax, (video, dur, gt_arr, gt_labels, det, available) in zip(axes, panels):
        present = sorted(set(gt_labels) | set(det.label.tolist()), key=class_row.__getitem__)
        for r, name in enumerate(present):
            colour = colours[name]
            mask = np.asarray([label == name for label in gt_labels], dtype=bool)
            if mask.any():
                spans = [(s, e - s) for s, e in gt_arr[mask]]
                ax.broken_barh(spans, (r + 0.1, 0.38), facecolors=[colour], edgecolors="black", linewidth=0.6,
                               label=f"gt:{name}")
            dmask = det.label == name
            if dmask.any():
                alpha = _score_alpha(det.score[dmask], (s_lo, s_hi))
                faces = [(*colour[:3], float(a)) for a in alpha]
                spans = [(s, e - s) for s, e in zip(det.start[dmask], det.end[dmask])]
                ax.broken_barh(spans, (r + 0.52, 0.38), facecolors=faces, edgecolors=[(0, 0, 0, 0.5)],
                               linewidth=0.4, label=f"det:{name}")
        ax.set_xlim(0.0, dur)
        ax.set_ylim(0.0, max(1, len(present)))
        ax.set_yticks(np.arange(len(present)) + 0.5, present if present else [])
        ax.invert_yaxis()  # first class on top; within a row the GT bar (smaller y) is drawn above
        shown = len(det)
        if available == 0:
            what = "no detections"
        elif shown == available:
            what = f"all {available} detection{'s' if available != 1 else ''}"
        else:
            what = f"top {shown} of {available} detections"
        if min_score is not None and available:
            what += f" (score >= {min_score:g})"
        ax.set_title(f"{video}: {len(gt_arr)} GT, {what}", fontsize=9, loc="left")
        ax.grid(axis="x", alpha=0.3)
    axes[-1].set_xlabel("time (s)")
    from matplotlib.patches import Patch

    def swatch(alpha: float, label: str, edge: Any = (0, 0, 0, 0.5)) -> Patch:
        return Patch(facecolor=(*_GUIDE_GREY[:3], alpha), edgecolor=edge, linewidth=0.6, label=label)

    mid = 0.5 * (s_lo + s_hi)
    handles = [swatch(1.0, "ground truth (upper bar, black outline)", "black")] + [
        swatch(float(_score_alpha(np.array([v]), (s_lo, s_hi))[0]), f"detection (lower bar), score {v:.3g}")
        for v in (s_hi, mid, s_lo)
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=4, fontsize=8, frameon=False)
    caption = (f"top {max_detections} detections per video by score; colour = class, "
               f"opacity = score on a fixed {s_lo:g}..{s_hi:g} scale")
    if clipped:
        caption += f" ({clipped} score(s) outside it clipped)"
    fig.suptitle(f"{title}\n{caption}" if title else caption, fontsize=10)
    return _save(fig, path)

# --------------------------------------------------------------------------------------------- #
# mAP per duration bin
# --------------------------------------------------------------------------------------------- #


def _range_text(low: Any, high: Any, bin_name: str) -> str:
    lo = _finite_number(low, f"ranges.{bin_name}")
    if high is None or (isinstance(high, float) and math.isinf(high) and high > 0):
        return f">= {lo:g} s"
    hi = _finite_number(high, f"ranges.{bin_name}")
    if hi <= lo:
        raise TadkitError(f"bin {bin_name!r}: range ({lo:g}, {hi:g}) is empty", field="ranges")
    return f"{lo:g}-{hi:g} s"


def plot_duration_map(
    bins: Mapping[str, float] | Mapping[str, Mapping[str, float]],
    path: str | os.PathLike,
    title: str | None = None,
    *,
    ylabel: str = "mAP@0.5",
    unit: str | None = None,
    ranges: Mapping[str, tuple[float, float | None]] | None = None,
    counts: Mapping[str, int] | None = None,
) -> Path:
    """Bars of a metric per GT-duration bin (A2Net Fig. 1 / Table I style).

    ``bins`` is ``{bin: value}`` for one method or ``{method: {bin: value}}`` for several methods
    side by side (all with the same bins; bar order = the first method's bin order).

    Keyword arguments (all optional): ``unit`` is appended to the axis label ("%" -> "mAP@0.5 (%)",
    and the axis then ends at 100 at most); ``ranges`` ``{bin: (low_s, high_s or None)}`` and
    ``counts`` ``{bin: GT instances}`` are written under each bin name ("S / 1.5-2.5 s / 712 GT");
    a bin with 0 GT is marked "no GT" instead of showing a bar value.
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
    tick_lines: list[list[str]] = [[b] for b in bin_names]
    for extra, field in ((ranges, "ranges"), (counts, "counts")):
        if extra is None:
            continue
        if not isinstance(extra, Mapping) or set(map(str, extra)) != set(bin_names):
            got = sorted(map(str, extra)) if isinstance(extra, Mapping) else type(extra).__name__
            raise TadkitError(f"must give every bin {bin_names} exactly, got {got}", field=field)
    gt_counts: dict[str, int] = {}
    if counts is not None:
        for b in bin_names:
            n = counts[b]
            if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
                raise TadkitError(f"bin {b!r}: GT count must be a non-negative integer, got {n!r}", field="counts")
            gt_counts[b] = int(n)
    for i, b in enumerate(bin_names):
        if ranges is not None:
            pair = ranges[b]
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise TadkitError(f"bin {b!r}: range must be (low, high), got {pair!r}", field="ranges")
            tick_lines[i].append(_range_text(pair[0], pair[1], b))
        if counts is not None:
            tick_lines[i].append(f"{gt_counts[b]} GT")
    percent = unit is not None and unit.strip() == "%"
    if percent and any(v > 100 for values in table.values() for v in values):
        raise TadkitError("a value above 100 with unit '%' (pass fractions x 100)", field="bins")
    fig = _new_figure(max(5.0, 1.1 * len(bin_names) * max(1, len(methods) * 0.6) + 2), 4.0 + 0.25 * (len(tick_lines[0]) - 1))
    ax = fig.add_subplot()
    x = np.arange(len(bin_names))
    width = 0.8 / len(methods)
    palette = class_colors(list(methods))
    for i, (method, values) in enumerate(table.items()):
        offset = (i - (len(methods) - 1) / 2) * width
        bars = ax.bar(x + offset, values, width, label=method or None, color=palette[method], edgecolor="black",
                      linewidth=0.5)
        texts = [("no GT" if gt_counts.get(b, 1) == 0 else (f"{v:.1f}" if percent else f"{v:.3g}"))
                 for b, v in zip(bin_names, values)]
        ax.bar_label(bars, labels=texts, fontsize=8, padding=2)
    ax.set_xticks(x, ["\n".join(lines) for lines in tick_lines])
    ax.set_xlabel("ground-truth duration bin")
    ax.set_ylabel(f"{ylabel} ({unit.strip()})" if unit else ylabel)
    top = max(max(v) for v in table.values())
    ax.set_ylim(0, (min(top * 1.15, 105.0) if percent else top * 1.15) if top > 0 else (100.0 if percent else 1.0))
    if len(methods) > 1:
        ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    if title:
        ax.set_title(title)
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
