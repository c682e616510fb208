"""Detection timelines: ground truth vs detections of a few videos, with what matched at a tIoU.

Each class present gets a row: the ground truth is the upper bar, the detections the lower lane(s).
With ground truth, detections are matched one-to-one by the chosen protocol's own matching
(:func:`tadkit.evaluation.detection.match_detections`) at ``match_tiou`` (0.5): true positives have a
thick black outline, missed ground truth is hatched with a red outline. Every detection with a score
at or above ``min_score`` is drawn (not a top-k: a top-k makes found GT look missed); overlapping or
touching detections of one class go to separate lanes so each stays visible. Opacity = score on a
fixed scale, shown as a colour bar; the legend has one swatch per class in its colour.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from tadkit.data.records import AnnotationSet, DetectionSet, Segment, VideoAnnotation
from tadkit.errors import TadkitError
from tadkit.viz import plots as _base

__all__ = ["plot_timeline", "MAX_TIMELINE_VIDEOS", "MAX_LANES"]

MAX_TIMELINE_VIDEOS = 12
MAX_LANES = 3  # detection lanes per class row; more overlapping detections share the least busy lane
MAX_LEGEND_CLASSES = 20
_GUIDE_GREY = (0.35, 0.35, 0.35, 1.0)  # legend style swatches and the score bar: a style, never a class
_MISSED_EDGE = (0.85, 0.1, 0.1, 1.0)
_TP_EDGE_WIDTH, _FP_EDGE_WIDTH = 1.6, 0.5


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


def score_alpha(score: np.ndarray, score_range: tuple[float, float]) -> np.ndarray:
    """Opacity of a detection bar on a fixed scale: ``score_range[0]`` -> 0.15, ``score_range[1]`` -> 0.95
    (clipped), the same in every figure drawn with the same range so they compare by eye."""
    lo, hi = score_range
    return 0.15 + 0.8 * np.clip((np.asarray(score, dtype=np.float64) - lo) / (hi - lo), 0.0, 1.0)


def pack_lanes(start: np.ndarray, end: np.ndarray, max_lanes: int = MAX_LANES) -> np.ndarray:
    """Lane of each interval so that no two overlapping or touching intervals share a lane while
    ``max_lanes`` suffice (greedy interval partitioning by start); beyond that, the lane that frees first."""
    lanes = np.zeros(len(start), dtype=np.int64)
    lane_end = np.full(max_lanes, -np.inf)
    for i in np.lexsort((end, start)):  # drawing a few videos: hundreds of bars at most
        free = np.flatnonzero(lane_end < start[i])
        lane = int(free[0]) if len(free) else int(np.argmin(lane_end))
        lanes[i] = lane
        lane_end[lane] = max(lane_end[lane], end[i])
    return lanes


def _match(gt: dict[str, list[Segment]], dets: DetectionSet, names: list[str], protocol: str,
           tiou: float) -> tuple[np.ndarray, dict[str, tuple[np.ndarray, list[str], np.ndarray]]]:
    """(TP flag per detection row, {video: (GT (N, 2), labels, found flags)}) under ``protocol``'s
    one-to-one matching at ``tiou``; the GT of each video in the problem's order."""
    from tadkit.evaluation.detection import match_detections
    from tadkit.evaluation.problem import prepare

    videos = {vid: VideoAnnotation(vid, "timeline", segments=segs) for vid, segs in gt.items()}
    problem = prepare(AnnotationSet(videos, list(names)), dets, unknown_videos="drop")
    pred_gt, gt_pred = match_detections(problem, protocol, tiou)
    tp = np.zeros(len(dets), dtype=bool)
    tp[problem.pred_index] = pred_gt >= 0
    out = {}
    for code, video in enumerate(problem.video_names[: problem.num_gt_videos]):
        rows = np.flatnonzero(problem.gt_video == code)
        spans = np.column_stack([problem.gt_start[rows], problem.gt_end[rows]])
        out[video] = (spans, [problem.classes[c] for c in problem.gt_class[rows]], gt_pred[rows] >= 0)
    return tp, out


def plot_timeline(
    gt_segments: Sequence[Segment] | Mapping[str, Sequence[Segment] | VideoAnnotation] | VideoAnnotation,
    detections: DetectionSet,
    duration: float | Mapping[str, float],
    class_names: Sequence[str],
    path: str | os.PathLike,
    title: str | None = None,
    *,
    min_score: float | None = None,
    max_detections: int | None = None,
    score_range: tuple[float, float] = (0.0, 1.0),
    total_detections: int | Mapping[str, int] | None = None,
    protocol: str = "activitynet",
    match_tiou: float = 0.5,
) -> Path:
    """Ground truth vs detections for one or a few videos, one panel per video.

    Args:
        gt_segments: segments of one video, ``{video_id: segments}`` or a :class:`VideoAnnotation`;
            empty (``[]``) for detections without ground truth (``tadkit detect``).
        detections: a :class:`DetectionSet`; rows of other videos are ignored.
        duration: seconds (one video) or ``{video_id: seconds}``; sets the x range.
        class_names: fixes colours and row order; every label must be one of them.
        path: output ``.png``.
        min_score: draw every detection scoring at least this (default: all of them).
        max_detections: at most this many per video, the best first (default: no cap).
        score_range: scores mapped to the faintest and the most opaque bar (clipped).
        total_detections: how many detections the video really had, when the caller passes only a
            pre-selection (int for one video or ``{video_id: N}``); default: rows of ``detections``.
        protocol, match_tiou: the matching that marks true positives and missed GT.
    """
    path = _base._check_path(path)
    if not isinstance(detections, DetectionSet):
        raise TadkitError(f"expected a DetectionSet, got {type(detections).__name__}", field="detections")
    names = [str(c) for c in class_names]
    if not names:
        raise TadkitError("class_names is empty", field="class_names")
    class_row = {name: i for i, name in enumerate(names)}
    gt = _gt_by_video(gt_segments, detections)
    if not gt:
        raise TadkitError("no video to plot", field="gt_segments")
    if len(gt) > MAX_TIMELINE_VIDEOS:
        raise TadkitError(f"{len(gt)} videos; a timeline shows at most {MAX_TIMELINE_VIDEOS}", field="gt_segments")
    if max_detections is not None and (isinstance(max_detections, bool) or not isinstance(max_detections, int)
                                       or max_detections < 1):
        raise TadkitError(f"must be a positive integer, got {max_detections!r}", field="max_detections")
    if min_score is not None:
        min_score = _base._finite_number(min_score, "min_score")
    try:
        s_lo, s_hi = (_base._finite_number(v, "score_range") for v in score_range)
    except TypeError:
        raise TadkitError(f"must be (low, high), got {score_range!r}", field="score_range") from None
    if not s_hi > s_lo:
        raise TadkitError(f"must be (low, high) with high > low, got {score_range!r}", field="score_range")

    panels = []
    keep_rows = []
    for video, segs in gt.items():
        dur = _base._finite_number(duration.get(video) if isinstance(duration, Mapping) else duration, "duration",
                                   video)
        if dur <= 0:
            raise TadkitError(f"duration must be > 0, got {dur}", video=video, field="duration")
        for i, seg in enumerate(segs):
            if not isinstance(seg, Segment):
                raise TadkitError(f"GT entry {i} is {type(seg).__name__}, not a Segment", video=video,
                                  field="gt_segments")
            start = _base._finite_number(seg.start, "gt_segments.start", video)
            end = _base._finite_number(seg.end, "gt_segments.end", video)
            if end < start:
                raise TadkitError(f"GT segment {i} ends ({end}) before it starts ({start})", video=video,
                                  field="gt_segments")
            if seg.label not in class_row:
                raise TadkitError(f"GT label {seg.label!r} is not in class_names", video=video, field="label")
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
        keep_rows.append(rows)
        panels.append((video, dur, available))
    has_gt = any(len(segs) for segs in gt.values())
    drawn = detections.select(np.concatenate(keep_rows)) if keep_rows else DetectionSet.empty()
    if not has_gt and len(drawn) == 0:
        raise TadkitError("nothing to plot: no ground truth and no detections", field="detections")
    if has_gt:
        tp, gt_drawn = _match(gt, drawn, names, protocol, match_tiou)
    else:
        tp, gt_drawn = np.zeros(len(drawn), dtype=bool), {}
    return _draw(panels, gt, gt_drawn, drawn, tp, names, (s_lo, s_hi), path, title,
                 _caption(min_score, max_detections, (s_lo, s_hi), drawn, has_gt, protocol, match_tiou))


def _caption(min_score: float | None, max_detections: int | None, score_range: tuple[float, float],
             drawn: DetectionSet, has_gt: bool, protocol: str, tiou: float) -> str:
    what = "all detections" if min_score is None else f"every detection with score >= {min_score:.3g}"
    if max_detections is not None:
        what += f" (at most {max_detections} per video)"
    clipped = int(((drawn.score < score_range[0]) | (drawn.score > score_range[1])).sum())
    scale = f"opacity = score on a fixed {score_range[0]:.3g}..{score_range[1]:.3g} scale"
    if clipped:
        scale += f" ({clipped} score(s) outside it clipped)"
    lines = [f"{what}; colour = class, {scale}"]
    if has_gt:
        lines.append(f"black outline = true positive, hatched red = missed GT, at tIoU {tiou:g} ({protocol} matching)")
    return "\n".join(lines)


def _draw(panels: list, gt: dict, gt_drawn: dict, drawn: DetectionSet, tp: np.ndarray, names: list[str],
          score_range: tuple[float, float], path: Path, title: str | None, caption: str) -> Path:
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import ListedColormap, Normalize
    from matplotlib.patches import Patch

    class_row = {name: i for i, name in enumerate(names)}
    colours = _base.class_colors(names)
    empty = (np.zeros((0, 2)), [], np.zeros(0, dtype=bool))
    rows_of = {video: sorted(set(gt_drawn.get(video, empty)[1]) | set(drawn.label[drawn.video == video].tolist()),
                             key=class_row.__getitem__) for video, *_ in panels}
    heights = [0.7 + 0.5 * max(1, len(rows_of[video])) for video, *_ in panels]
    fig = _base._new_figure(12.0, 2.3 + sum(heights) + 0.15 * len(caption.splitlines()))
    axes = fig.subplots(len(panels), 1, squeeze=False, height_ratios=heights)[:, 0]
    present: dict[str, None] = {}
    for ax, (video, dur, available) in zip(axes, panels):
        spans, labels, found = gt_drawn.get(video, empty)
        in_video = np.flatnonzero(drawn.video == video)
        for r, name in enumerate(rows_of[video]):
            present[name] = None
            colour = colours[name]
            mask = np.asarray([label == name for label in labels], dtype=bool)
            for kind, sel in (("gt", mask & found), ("gt-missed", mask & ~found)):
                if sel.any():
                    missed = kind == "gt-missed"
                    ax.broken_barh([(s, e - s) for s, e in spans[sel]], (r + 0.06, 0.3),
                                   facecolors=[(*colour[:3], 0.45) if missed else colour],
                                   hatch="////" if missed else None,
                                   edgecolors=[_MISSED_EDGE if missed else (0, 0, 0, 1)],
                                   linewidth=1.4 if missed else 0.6, label=f"{kind}:{name}")
            rows = in_video[drawn.label[in_video] == name]
            if len(rows):
                rows = rows[np.argsort(drawn.score[rows], kind="stable")]  # best drawn last, on top
                lanes = pack_lanes(drawn.start[rows], drawn.end[rows])
                n_lanes = int(lanes.max()) + 1
                lane_h = 0.52 / n_lanes
                alpha = score_alpha(drawn.score[rows], score_range)
                is_tp = tp[rows]
                for lane in range(n_lanes):  # one collection per lane (a y range each)
                    sel = lanes == lane
                    ax.broken_barh(
                        [(s, e - s) for s, e in zip(drawn.start[rows][sel], drawn.end[rows][sel])],
                        (r + 0.42 + lane * lane_h, lane_h * 0.85),
                        facecolors=[(*colour[:3], float(a)) for a in alpha[sel]],
                        edgecolors=[(0, 0, 0, 1) if t else (*colour[:3], 1.0) for t in is_tp[sel]],
                        linewidths=[_TP_EDGE_WIDTH if t else _FP_EDGE_WIDTH for t in is_tp[sel]],
                        label=f"det:{name}" if lane == 0 else f"det:{name}:lane{lane}")
        ax.set_xlim(0.0, dur)
        ax.set_ylim(0.0, max(1, len(rows_of[video])))
        ax.set_yticks(np.arange(len(rows_of[video])) + 0.5, rows_of[video])
        ax.invert_yaxis()  # first class on top; within a row the GT bar (smaller y) is drawn above
        ax.set_title(_panel_title(video, len(spans), int(found.sum()), len(in_video), available,
                                  int(tp[in_video].sum()), bool(gt_drawn)), fontsize=9, loc="left")
        ax.grid(axis="x", alpha=0.3)
    axes[-1].set_xlabel("time (s)")

    handles = [Patch(facecolor=colours[name], edgecolor="black", linewidth=0.5, label=name)
               for name in list(present)[:MAX_LEGEND_CLASSES]]
    if len(present) > MAX_LEGEND_CLASSES:
        handles.append(Patch(facecolor="none", edgecolor="none", label=f"+{len(present) - MAX_LEGEND_CLASSES} more"))
    grey = _GUIDE_GREY[:3]
    if gt_drawn:
        handles += [
            Patch(facecolor=(*grey, 1.0), edgecolor="black", linewidth=0.6, label="ground truth, found (upper bar)"),
            Patch(facecolor=(*grey, 0.3), edgecolor=_MISSED_EDGE, hatch="////", linewidth=1.4,
                  label="ground truth, missed"),
            Patch(facecolor=(*grey, 0.55), edgecolor="black", linewidth=_TP_EDGE_WIDTH,
                  label="detection, true positive"),
            Patch(facecolor=(*grey, 0.55), edgecolor=grey, linewidth=_FP_EDGE_WIDTH, label="detection, false positive"),
        ]
    else:
        handles.append(Patch(facecolor=(*grey, 0.55), edgecolor=grey, linewidth=_FP_EDGE_WIDTH,
                             label="detection"))
    legend = fig.legend(handles=handles, loc="outside lower center", ncols=min(6, len(handles)), fontsize=8,
                        frameon=False)
    legend.set_title("colour = class", prop={"size": 8})
    ramp = ListedColormap([(*grey, float(a)) for a in np.linspace(0.15, 0.95, 64)])
    bar = fig.colorbar(ScalarMappable(Normalize(*score_range), ramp), ax=list(axes), location="right",
                       fraction=0.02, pad=0.01, aspect=max(8, 12 * len(axes)))
    bar.set_label("detection score (bar opacity)", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    fig.suptitle(f"{title}\n{caption}" if title else caption, fontsize=10)
    return _base._save(fig, path)


def _panel_title(video: str, n_gt: int, n_found: int, n_drawn: int, available: int, n_tp: int,
                 with_gt: bool) -> str:
    drawn = f"all {available} detection{'s' if available != 1 else ''}" if n_drawn == available else \
        f"{n_drawn} of {available} detections"
    if available == 0:
        drawn = "no detections"
    if not with_gt:
        return f"{video}: {drawn}"
    return f"{video}: {n_gt} GT ({n_found} found), {drawn} ({n_tp} true positive{'s' if n_tp != 1 else ''})"
