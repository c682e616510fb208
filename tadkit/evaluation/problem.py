"""Turning an AnnotationSet + DetectionSet into the flat integer-coded arrays the protocols score.

Everything protocol-independent happens here once: subset selection, blocked videos, id spelling
(see :mod:`tadkit.evaluation.ids`), unknown labels/videos and the counts every report carries.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from tadkit.data.records import AnnotationSet, DetectionSet
from tadkit.errors import TadkitError
from tadkit.evaluation.ids import VideoIdResolver, is_blocked, load_blocked

UNKNOWN_VIDEO_POLICIES = ("fp", "drop")


@dataclass
class EvalProblem:
    """Integer-coded ground truth and predictions of one evaluation.

    Videos: codes ``0..num_gt_videos-1`` are ground-truth videos (in AnnotationSet order); larger
    codes are prediction-only videos. Classes: codes index ``classes`` (labels with >= 1 GT instance).
    GT rows keep file order (video order, then segment order), which THUMOS14 matching relies on.
    """

    classes: list[str]
    npos: np.ndarray  # (C,) GT instances per class
    video_names: list[str]
    num_gt_videos: int
    gt_video: np.ndarray
    gt_class: np.ndarray
    gt_start: np.ndarray
    gt_end: np.ndarray
    amb_video: np.ndarray
    amb_start: np.ndarray
    amb_end: np.ndarray
    pred_video: np.ndarray
    pred_class: np.ndarray
    pred_start: np.ndarray
    pred_end: np.ndarray
    pred_score: np.ndarray
    pred_index: np.ndarray  # row of the kept prediction in the caller's DetectionSet (tie-break)
    subset: str | None
    video_list: str
    counts: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # e.g. the time-unit check

    @property
    def num_videos(self) -> int:
        return len(self.video_names)

    def video_name_rank(self) -> np.ndarray:
        """Rank of each video code in sorted-name order (the THUMOS14 evalkit visits videos so)."""
        order = sorted(range(len(self.video_names)), key=self.video_names.__getitem__)
        rank = np.empty(len(order), dtype=np.int64)
        rank[np.asarray(order, dtype=np.int64)] = np.arange(len(order))
        return rank


def describe_video_list(gt: AnnotationSet, subset: str | None, video_ids: list[str]) -> str:
    """The videos scored, named by their annotation file, its version and the subset, e.g.
    ``thumos14.json [Thumos14-30fps] test: 213 videos, ids 1a2b3c4d``.

    The reader's format is named only when the file has no version: THUMOS data in ActivityNet-format
    JSON is not "activitynet". The short hash of the sorted ids tells apart lists of equal size
    (OpenTAD 211 vs AFSD 210 ...).
    """
    digest = hashlib.sha1("\n".join(sorted(video_ids)).encode("utf-8")).hexdigest()[:8]
    name = "annotations"
    if gt.source:
        source = Path(gt.source)
        name = f"{source.name}/" if source.is_dir() else source.name
    edition = gt.version or (f"{gt.format} format" if gt.format else "no version")
    return f"{name} [{edition}] {subset or 'all'}: {len(video_ids)} videos, ids {digest}"


def _column_problem(name: str, values: np.ndarray, bad: np.ndarray, dets: DetectionSet, what: str) -> None:
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise TadkitError(
            f"{int(bad.sum())} prediction(s) with {what} (first: row {i}, value {float(values[i])!r})",
            video=str(dets.video[i]),
            field=name,
        )


def validate_detections(dets: DetectionSet, strict: bool = False) -> None:
    """Reject NaN/inf times or scores with one clear error; reversed segments too when ``strict``.

    Otherwise degenerate predictions (end <= start) are scored as the official codes score them
    (see :mod:`tadkit.evaluation.detection`) and counted.
    """
    for name, column in (("start", dets.start), ("end", dets.end), ("score", dets.score)):
        _column_problem(name, column, ~np.isfinite(column), dets, "a non-finite value")
    if strict:
        _column_problem("segment", dets.start, dets.end < dets.start, dets, "end < start (strict mode)")


#: share of predictions (on GT videos of known duration) starting after the video's end above which
#: a report warns about the time unit
BEYOND_DURATION_WARN_SHARE = 0.2


def time_unit_check(
    pred_video: np.ndarray, pred_start: np.ndarray, durations: np.ndarray, fps: np.ndarray
) -> tuple[dict, list[str]]:
    """Counts and a warning when many predictions start after their video's end.

    ``pred_video`` codes index ``durations``/``fps`` (NaN = unknown); codes beyond them (videos
    without GT) are not checked. The usual cause is times in frames (or feature steps) instead of
    seconds, which silently scores 0: the warning names it, with the median start / duration ratio
    and, when the GT knows frame rates, that rate for comparison.
    """
    n_known = len(durations)
    on_gt = pred_video < n_known
    dur = np.full(len(pred_video), np.nan)
    dur[on_gt] = durations[pred_video[on_gt]]
    known = np.isfinite(dur) & (dur > 0)
    beyond = known & (pred_start > dur)
    n_known_preds, n_beyond = int(known.sum()), int(beyond.sum())
    counts = {"preds_with_known_duration": n_known_preds, "preds_beyond_duration": n_beyond}
    warnings: list[str] = []
    if n_known_preds and n_beyond > BEYOND_DURATION_WARN_SHARE * n_known_preds:
        ratio = float(np.median(pred_start[beyond] / dur[beyond]))
        rates = fps[pred_video[beyond]] if len(fps) else np.zeros(0)
        rates = rates[np.isfinite(rates)]
        hint = f"; the GT frame rate is {float(np.median(rates)):.4g} fps" if len(rates) else ""
        warnings.append(
            f"{n_beyond} of {n_known_preds} predictions ({100 * n_beyond / n_known_preds:.0f}%) start after the "
            f"end of their video (median start / duration = {ratio:.3g}{hint}): the prediction times are "
            "probably in frames (or feature steps) instead of seconds"
        )
    return counts, warnings


def _gt_arrays(gt: AnnotationSet, class_code: dict[str, int], video_code: dict[str, int]):
    vids, starts, ends, labels = [], [], [], []
    a_vids, a_starts, a_ends = [], [], []
    for vid, ann in gt.videos.items():
        code = video_code[vid]
        for seg in ann.segments:
            vids.append(code)
            starts.append(seg.start)
            ends.append(seg.end)
            labels.append(class_code[seg.label])
        for s, e in ann.ambiguous:
            a_vids.append(code)
            a_starts.append(s)
            a_ends.append(e)
    as_i = lambda x: np.asarray(x, dtype=np.int64)  # noqa: E731
    as_f = lambda x: np.asarray(x, dtype=np.float64)  # noqa: E731
    return (as_i(vids), as_i(labels), as_f(starts), as_f(ends)), (as_i(a_vids), as_f(a_starts), as_f(a_ends))


def _select_subset(gt: AnnotationSet, subset: str | Iterable[str] | None) -> AnnotationSet:
    """The subset's videos; "val"/"validation"-style aliases via the annotation module's rule."""
    from tadkit.data.annotations import select_subset

    sub = select_subset(gt, subset)
    if not sub.videos:
        raise TadkitError(
            f"no ground-truth video in subset {subset!r} (subsets present: {', '.join(gt.subsets) or 'none'})",
            file=gt.source or None,
            field="subset",
        )
    return sub


def prepare(
    gt: AnnotationSet,
    pred: DetectionSet,
    subset: str | Iterable[str] | None = None,
    blocked: str | os.PathLike | Iterable[str] | None = None,
    strict: bool = False,
    unknown_videos: str = "fp",
) -> EvalProblem:
    """Select, clean and encode; raises :class:`TadkitError` for unusable input.

    ``unknown_videos``: ``"fp"`` (official behaviour of both protocols: predictions on videos that
    have no ground truth are false positives) or ``"drop"`` (ignore them, e.g. when the GT list is a
    reduced copy of the official one). Either way they are counted.
    """
    if unknown_videos not in UNKNOWN_VIDEO_POLICIES:
        raise TadkitError(f"unknown_videos must be one of {UNKNOWN_VIDEO_POLICIES}", field="unknown_videos")
    if not isinstance(pred, DetectionSet):
        raise TadkitError("predictions must be a DetectionSet", field="pred")
    validate_detections(pred, strict=strict)
    sub = _select_subset(gt, subset)
    blocked_ids = load_blocked(blocked)
    gt_ids = [vid for vid in sub.videos if not (blocked_ids and is_blocked(vid, blocked_ids))]
    blocked_gt = len(sub.videos) - len(gt_ids)
    if not gt_ids:
        raise TadkitError("every ground-truth video of the subset is blocked", field="blocked")
    kept_videos = {vid: sub.videos[vid] for vid in gt_ids}

    # classes: every label with >= 1 GT instance, in the AnnotationSet's class order
    present: dict[str, int] = {}
    for ann in kept_videos.values():
        for seg in ann.segments:
            present[seg.label] = present.get(seg.label, 0) + 1
    if not present:
        raise TadkitError("no ground-truth instances to evaluate against", file=gt.source or None, field="subset")
    ordered = [c for c in sub.classes if c in present] + [c for c in present if not sub.has_class(c)]
    class_code = {c: i for i, c in enumerate(ordered)}
    npos = np.array([present[c] for c in ordered], dtype=np.int64)
    video_code = {vid: i for i, vid in enumerate(gt_ids)}
    (g_vid, g_cls, g_s, g_e), (a_vid, a_s, a_e) = _gt_arrays(
        AnnotationSet(kept_videos, sub.classes), class_code, video_code
    )
    for vid, starts, ends, what in ((g_vid, g_s, g_e, "segment"), (a_vid, a_s, a_e, "ambiguous")):
        bad = ~(np.isfinite(starts) & np.isfinite(ends) & (ends >= starts))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise TadkitError(
                f"ground-truth {what} [{starts[i]}, {ends[i]}] is not a finite interval with end >= start",
                file=gt.source or None, video=gt_ids[vid[i]], field=what,
            )

    # predictions: resolve ids, drop blocked / unknown labels / classes without GT. String columns
    # are mapped once per distinct value; everything after that is array work.
    n = len(pred)
    resolver = VideoIdResolver(gt_ids)
    video_names = list(gt_ids)
    name_code: dict[str, int] = {}
    row_video = np.fromiter((name_code.setdefault(v, len(name_code)) for v in pred.video.tolist()), np.int64, n)
    uniq_names = list(name_code)
    resolved = [resolver.resolve(str(name)) for name in uniq_names]
    renamed = sum(1 for name, r in zip(uniq_names, resolved) if r is not None and r != name)
    u_known = np.array([r is not None for r in resolved], dtype=bool)
    u_blocked = np.array(
        [bool(blocked_ids) and is_blocked(str(r or name), blocked_ids) for name, r in zip(uniq_names, resolved)],
        dtype=bool,
    )
    # prediction-only videos get codes after the GT videos, in first-appearance order
    u_code = np.empty(len(uniq_names), dtype=np.int64)
    for k, (name, r) in enumerate(zip(uniq_names, resolved)):
        if r is not None:
            u_code[k] = video_code[r]
        else:
            u_code[k] = len(video_names)
            video_names.append(str(name))

    label_code: dict[str, int] = {}
    row_label = np.fromiter((label_code.setdefault(v, len(label_code)) for v in pred.label.tolist()), np.int64, n)
    uniq_labels = list(label_code)
    known_label = set(sub.classes) | set(present)
    u_label_known = np.array([lab in known_label for lab in uniq_labels], dtype=bool)
    u_class = np.array([class_code.get(lab, -1) for lab in uniq_labels], dtype=np.int64)

    live = ~u_blocked[row_video] if n else np.zeros(0, bool)
    video_known = u_known[row_video] if n else np.zeros(0, bool)
    label_known = u_label_known[row_label] if n else np.zeros(0, bool)
    row_class = u_class[row_label] if n else np.zeros(0, np.int64)
    unknown_label_rows = live & ~label_known
    unknown_video_rows = live & ~video_known
    unknown_labels = sorted({str(uniq_labels[i]) for i in np.unique(row_label[unknown_label_rows])})
    unknown_video_names = sorted({str(uniq_names[i]) for i in np.unique(row_video[unknown_video_rows])})
    if strict and (unknown_labels or unknown_video_names):
        parts = []
        if unknown_labels:
            parts.append(
                f"{int(unknown_label_rows.sum())} prediction(s) with labels not in the ground truth "
                f"({', '.join(unknown_labels[:5])}{', ...' if len(unknown_labels) > 5 else ''})"
            )
        if unknown_video_names:
            parts.append(
                f"{int(unknown_video_rows.sum())} prediction(s) on videos not in the ground truth "
                f"({', '.join(unknown_video_names[:5])}{', ...' if len(unknown_video_names) > 5 else ''})"
            )
        raise TadkitError("; ".join(parts) + " (strict mode)", field="label" if unknown_labels else "video")

    keep = live & (row_class >= 0)
    if unknown_videos == "drop":
        keep &= video_known
    rows = np.flatnonzero(keep)
    p_vid = u_code[row_video[rows]]
    p_cls = row_class[rows]
    # drop the names of prediction-only videos whose predictions were all dropped
    used = np.unique(p_vid[p_vid >= len(gt_ids)])
    if len(used) != len(video_names) - len(gt_ids):
        remap = np.full(len(video_names), -1, dtype=np.int64)
        remap[: len(gt_ids)] = np.arange(len(gt_ids))
        remap[used] = len(gt_ids) + np.arange(len(used))
        video_names = list(gt_ids) + [video_names[i] for i in used.tolist()]
        p_vid = remap[p_vid]

    p_start, p_end = pred.start[rows], pred.end[rows]
    durations = np.array([np.nan if kept_videos[v].duration is None else kept_videos[v].duration for v in gt_ids])
    rates = np.array([np.nan if kept_videos[v].fps is None else kept_videos[v].fps for v in gt_ids])
    unit_counts, warnings = time_unit_check(p_vid, p_start, durations, rates)
    counts = {
        "num_videos": len(gt_ids),
        "num_gt": int(npos.sum()),
        "num_ambiguous": int(len(a_vid)),
        "num_classes": len(ordered),
        "num_preds": n,
        "num_preds_evaluated": int(len(rows)),
        "unknown_label_preds": int(unknown_label_rows.sum()),
        "unknown_labels": unknown_labels[:20],
        "unknown_video_preds": int(unknown_video_rows.sum()),
        "unknown_videos": len(unknown_video_names),
        "unknown_video_policy": unknown_videos,
        "preds_of_classes_without_gt": int((live & label_known & (row_class < 0)).sum()),
        "blocked_videos_dropped": blocked_gt,
        "blocked_preds_dropped": int(n - live.sum()),
        "pred_ids_renamed": renamed,
        "gt_videos_without_preds": len(gt_ids) - len(np.unique(p_vid[p_vid < len(gt_ids)])),
        # end <= start among the predictions read (end < start: "reversed"); scored like the official codes
        "degenerate_preds": int((pred.end <= pred.start).sum()),
        "reversed_preds": int((pred.end < pred.start).sum()),
        # a start or end before the video begins: kept and scored as given, but counted like reversed ones
        "negative_time_preds": int(((pred.start < 0) | (pred.end < 0)).sum()),
        "degenerate_preds_evaluated": int((p_end <= p_start).sum()),
        **unit_counts,
    }
    subset_name = None if subset is None else ",".join(sub.subsets)  # canonical spelling ("val" -> "validation")
    return EvalProblem(
        classes=ordered,
        npos=npos,
        video_names=video_names,
        num_gt_videos=len(gt_ids),
        gt_video=g_vid,
        gt_class=g_cls,
        gt_start=g_s,
        gt_end=g_e,
        amb_video=a_vid,
        amb_start=a_s,
        amb_end=a_e,
        pred_video=p_vid,
        pred_class=p_cls,
        pred_start=p_start,
        pred_end=p_end,
        pred_score=pred.score[rows],
        pred_index=rows.astype(np.int64),
        subset=subset_name,
        video_list=describe_video_list(sub, subset_name, gt_ids),
        counts=counts,
        warnings=warnings,
    )


def restrict(
    p: EvalProblem, gt_mask: np.ndarray | None = None, pred_mask: np.ndarray | None = None
) -> tuple[EvalProblem, np.ndarray]:
    """A problem with only some GT rows and/or predictions (analysis tools score such subsets).

    Classes left without GT disappear (their predictions with them), as the official evaluators
    only score classes present in the ground truth. Returns the new problem and the indices of the
    kept predictions in ``p``.
    """
    gt_mask = np.ones(len(p.gt_video), bool) if gt_mask is None else np.asarray(gt_mask, bool)
    pred_mask = np.ones(len(p.pred_video), bool) if pred_mask is None else np.asarray(pred_mask, bool)
    npos = np.bincount(p.gt_class[gt_mask], minlength=len(p.classes))
    alive = npos > 0
    remap = np.full(len(p.classes), -1, dtype=np.int64)
    remap[alive] = np.arange(int(alive.sum()))
    pred_keep = np.flatnonzero(pred_mask & alive[p.pred_class]) if len(p.pred_class) else np.zeros(0, np.int64)
    sub = EvalProblem(
        classes=[c for c, a in zip(p.classes, alive) if a],
        npos=npos[alive],
        video_names=p.video_names,
        num_gt_videos=p.num_gt_videos,
        gt_video=p.gt_video[gt_mask],
        gt_class=remap[p.gt_class[gt_mask]],
        gt_start=p.gt_start[gt_mask],
        gt_end=p.gt_end[gt_mask],
        amb_video=p.amb_video,
        amb_start=p.amb_start,
        amb_end=p.amb_end,
        pred_video=p.pred_video[pred_keep],
        pred_class=remap[p.pred_class[pred_keep]],
        pred_start=p.pred_start[pred_keep],
        pred_end=p.pred_end[pred_keep],
        pred_score=p.pred_score[pred_keep],
        pred_index=p.pred_index[pred_keep],
        subset=p.subset,
        video_list=p.video_list,
        counts=dict(p.counts),
        warnings=list(p.warnings),
    )
    return sub, pred_keep
