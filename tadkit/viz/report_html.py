"""`tadkit view`: one self-contained HTML page to look at detections (issue 21).

The page carries its CSS, JS and data inline (nothing is fetched; a Content-Security-Policy forbids
it), so it opens offline with a double click. Python prepares the data with the evaluator's own
encoding (:func:`tadkit.evaluation.problem.prepare`: subset, blocked videos, id spelling, unknown
labels); the page re-does the *matching* in JS at any tIoU the user picks, with the evaluator's
rules (``tadkit/viz/html/view.js``; tests compare its counts with :func:`score_problem`'s).

Detections are stored as columns (base64 typed arrays, not objects), sorted by video, class, score
(descending) and input row: the evaluator's ranking order inside one video. Per video at most
``cap`` detections are kept (the highest scores) plus every detection that is a true positive at
one of the page's tIoU choices. A dropped detection is a false positive at every choice, and such
a detection never changes which others match (greedy matching only hands out GT to, or takes
detections for, matches), so the page's TP/FP flags equal the evaluator's on the full set. To keep
per-video AP exact too, each kept detection carries how many dropped detections rank above it.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tadkit.data.records import AnnotationSet, DetectionSet
from tadkit.errors import TadkitError

DEFAULT_CAP = 50  # detections kept per video (plus every TP at a page tIoU)
PAGE_FORMAT = 1
MIN_TIOU = 0.1  # DETAD's lower bound of "localization" / "confusion" errors
# tIoU values the page offers besides the protocol's own thresholds
EXTRA_TIOU_CHOICES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.9)
BROWSER_VIDEO_TYPES = (".mp4", ".webm", ".ogv", ".ogg", ".m4v", ".mov")


@dataclass
class Run:
    """One detection file to show: its detections and how it was produced."""

    name: str
    dets: DetectionSet
    method: str = ""
    predictions: str = ""  # file the detections came from
    bootstrap: dict | None = None  # BootstrapResult.to_dict() of the primary protocol, when computed
    # scores already computed in this process ({"protocols": {name: EvalResult dict}, "per_duration": ...},
    # as Report.to_dict()): reused instead of scoring again
    scores: dict | None = None


@dataclass
class ViewSpec:
    """What the page evaluates: the GT, the protocol(s) and their thresholds."""

    gt: AnnotationSet
    protocol: str
    subset: str | list[str] | None = None
    blocked: Any = None
    tiou: list[float] | None = None  # primary protocol thresholds (None: protocol default)
    other_protocols: dict[str, list[float] | None] = field(default_factory=dict)  # extra protocols to report
    unknown_videos: str = "fp"  # predictions on videos without GT: false positives (official) or "drop"
    annotations: str = ""
    title: str = ""


def tiou_choices(thresholds: Sequence[float]) -> list[float]:
    """The tIoU values the page offers: the protocol's thresholds and a fixed set, sorted."""
    return sorted({round(float(t), 6) for t in list(thresholds) + list(EXTRA_TIOU_CHOICES) if 0.0 < t <= 1.0})


def _b64(array: np.ndarray, dtype: str) -> str:
    """Little-endian bytes of ``array`` as ``dtype``, base64 (decoded into a typed array by the page)."""
    return base64.b64encode(np.ascontiguousarray(array, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()).decode()


def _offsets(codes: np.ndarray, count: int) -> np.ndarray:
    """Start index of each code's run in a sorted code array, plus the total (CSR offsets)."""
    return np.concatenate([[0], np.cumsum(np.bincount(codes, minlength=count))]).astype(np.int64)


def _finite(obj: Any) -> Any:
    """JSON-safe copy: NaN/inf -> None (JSON has no NaN), numpy scalars -> Python numbers."""
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


# ----------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------
def detection_columns(problem, protocol: str, choices: Sequence[float], cap: int | None) -> dict[str, Any]:
    """The page's columns for one run's detections on the GT videos (see the module doc)."""
    from tadkit.evaluation.detection import ambiguous_overlap, score_problem
    from tadkit.evaluation.matching import segmented_cumsum

    p = problem
    n_v = p.num_gt_videos
    scored = score_problem(p, protocol, choices)
    ever_tp = scored.tp.any(axis=0)
    on_gt = p.pred_video < n_v
    amb = ambiguous_overlap(p) if protocol == "thumos14" else np.zeros(len(p.pred_video), bool)
    # rank by score inside each video (ties: input row), for the cap
    by_score = np.lexsort((p.pred_index, -p.pred_score, p.pred_video))
    video_sorted = p.pred_video[by_score]
    rank = np.empty(len(by_score), np.int64)
    rank[by_score] = np.arange(len(by_score)) - np.searchsorted(video_sorted, video_sorted, side="left")
    kept = on_gt & (ever_tp | (rank < cap if cap is not None else True))
    # the evaluator's ranking inside a video: class, score descending, input row
    order = np.lexsort((p.pred_index, -p.pred_score, p.pred_class, p.pred_video))
    order = order[on_gt[order]]
    group = p.pred_video[order] * np.int64(len(p.classes)) + p.pred_class[order]
    dropped_counted = (~kept[order] & ~amb[order]).astype(np.int64)  # dropped, still in the ranking
    above = segmented_cumsum(dropped_counted, group) - dropped_counted  # strictly above, same video+class
    rows = order[kept[order]]
    per_video_total = np.bincount(p.pred_video[on_gt], minlength=n_v)
    return {
        "n": int(len(rows)),
        "off": _b64(_offsets(p.pred_video[rows], n_v), "i4"),
        "cls": _b64(p.pred_class[rows], "u2"),
        "s": _b64(p.pred_start[rows], "f8"),
        "e": _b64(p.pred_end[rows], "f8"),
        "score": _b64(p.pred_score[rows], "f4"),
        "above": _b64(above[kept[order]], "i4"),
        "amb": _b64(amb[rows], "u1"),
        "total": _b64(per_video_total, "i4"),
        "dropped": int(on_gt.sum() - len(rows)),
        "cap": cap,
    }


def _video_files(videos_dir: str | os.PathLike, gt_ids: list[str], out_path: Path) -> list[str]:
    """Per GT video, the path of its file in ``videos_dir`` relative to the page ("" when absent).

    Paths come from listing the directory (a video id never becomes a path); file stems are matched
    onto GT ids with the evaluator's id rule. Two files for one video are an error.
    """
    from urllib.parse import quote

    from tadkit.evaluation.ids import VideoIdResolver

    directory = Path(videos_dir)
    if not directory.is_dir():
        raise TadkitError("not a directory", file=str(directory), field="videos")
    resolver = VideoIdResolver(gt_ids)
    found: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        if not (path.is_file() and path.suffix.lower() in BROWSER_VIDEO_TYPES):
            continue
        video = resolver.resolve(path.stem)
        if video is None:
            continue
        if video in found:
            raise TadkitError(f"two files for one video: {found[video].name} and {path.name}", file=str(directory),
                              video=video, field="videos")
        found[video] = path
    base = os.path.abspath(out_path.parent)  # abspath, not resolve: a symlinked video keeps its own name
    rel = {v: os.path.relpath(os.path.abspath(p), base) for v, p in found.items()}
    return [quote(rel[v].replace(os.sep, "/")) if v in rel else "" for v in gt_ids]


def _fp_breakdown(spec: ViewSpec, dets: DetectionSet, thresholds: list[float]) -> dict:
    from tadkit.evaluation import false_positive_breakdown

    fps = false_positive_breakdown(spec.gt, dets, protocol=spec.protocol, tiou_thresholds=thresholds,
                                   min_tiou=MIN_TIOU, subset=spec.subset, blocked=spec.blocked,
                                   unknown_videos=spec.unknown_videos)
    return fps.to_dict()


def run_summary(spec: ViewSpec, run: Run, thresholds: list[float]) -> dict[str, Any]:
    """Scores of one run as the page shows them: every protocol, per class, per duration, DETAD."""
    from tadkit.evaluation import duration_breakdown, evaluate

    protocols = {spec.protocol: thresholds, **{k: v for k, v in spec.other_protocols.items() if k != spec.protocol}}
    common = dict(subset=spec.subset, blocked=spec.blocked, unknown_videos=spec.unknown_videos)
    known = run.scores or {}
    results = known.get("protocols") or {
        name: evaluate(spec.gt, run.dets, name, tiou, **common).to_dict() for name, tiou in protocols.items()}
    durations = known.get("per_duration") or duration_breakdown(
        spec.gt, run.dets, protocol=spec.protocol, tiou_thresholds=(0.5,), **common).to_dict()
    return {"name": run.name, "method": run.method, "predictions": run.predictions, "protocols": results,
            "per_duration": durations, "fp_breakdown": _fp_breakdown(spec, run.dets, thresholds),
            "bootstrap": run.bootstrap}


def view_data(spec: ViewSpec, runs: Sequence[Run], *, cap: int | None = DEFAULT_CAP, videos_dir: Any = None,
              out_path: str | os.PathLike = "report.html", compare_resamples: int = 1000) -> dict[str, Any]:
    """Everything the page shows, JSON-ready (binary columns base64). ``runs``: one, or two to compare."""
    from tadkit.evaluation.detection import default_tiou, parse_tiou
    from tadkit.evaluation.problem import prepare

    if not 1 <= len(runs) <= 2:
        raise TadkitError("the page shows one run, or two to compare", field="compare")
    if cap is not None and cap < 0:
        raise TadkitError(f"the per-video cap must be >= 0, got {cap}", field="max_per_video")
    thresholds = default_tiou(spec.protocol) if spec.tiou is None else parse_tiou(spec.tiou)
    choices = tiou_choices(thresholds)
    problems = [prepare(spec.gt, run.dets, subset=spec.subset, blocked=spec.blocked,
                        unknown_videos=spec.unknown_videos) for run in runs]
    p = problems[0]
    n_v = p.num_gt_videos
    gt_ids = p.video_names[:n_v]
    if any(q.video_names[:n_v] != gt_ids for q in problems[1:]):  # same GT and subset: cannot differ
        raise TadkitError("the two runs are scored on different video lists", field="compare")
    # one class list for both runs: the GT's classes (each problem codes them the same way)
    amb_codes = p.amb_video
    videos = [spec.gt.videos[v] for v in gt_ids]
    data: dict[str, Any] = {
        "format": PAGE_FORMAT,
        "title": spec.title or "tadkit view",
        "protocol": spec.protocol,
        "tiou": thresholds,
        "tiou_choices": choices,
        "min_tiou": MIN_TIOU,
        "annotations": spec.annotations,
        "subset": p.subset,
        "video_list": p.video_list,
        "classes": p.classes,
        "videos": {
            "id": gt_ids,
            "duration": [None if v.duration is None else float(v.duration) for v in videos],
            "file": _video_files(videos_dir, gt_ids, Path(out_path)) if videos_dir else [""] * n_v,
        },
        "gt": {"n": int(len(p.gt_video)), "off": _b64(_offsets(p.gt_video, n_v), "i4"), "cls": _b64(p.gt_class, "u2"),
               "s": _b64(p.gt_start, "f8"), "e": _b64(p.gt_end, "f8")},
        "amb": {"n": int(len(amb_codes)), "off": _b64(_offsets(amb_codes, n_v), "i4"),
                "s": _b64(p.amb_start, "f8"), "e": _b64(p.amb_end, "f8")},
        "runs": [],
        "compare": None,
    }
    for run, problem in zip(runs, problems):
        summary = run_summary(spec, run, thresholds)
        summary["det"] = detection_columns(problem, spec.protocol, choices, cap)
        summary["excluded"] = {k: problem.counts.get(k, 0) for k in (
            "unknown_video_preds", "unknown_label_preds", "preds_of_classes_without_gt", "blocked_preds_dropped")}
        data["runs"].append(summary)
    if len(runs) == 2:
        from tadkit.evaluation.bootstrap import compare

        *_, result = compare(spec.gt, runs[0].dets, runs[1].dets, spec.protocol, n_resamples=compare_resamples,
                             tiou_thresholds=thresholds, subset=spec.subset, blocked=spec.blocked,
                             unknown_videos=spec.unknown_videos, names=(runs[0].name, runs[1].name))
        data["compare"] = result.to_dict()
    return _finite(data)


# ----------------------------------------------------------------------------------------------
# page
# ----------------------------------------------------------------------------------------------
def _asset(name: str) -> str:
    return resources.files("tadkit.viz").joinpath("html", name).read_text(encoding="utf-8")


def script_json(data: dict) -> str:
    """JSON that cannot end its ``<script>`` element early (``<``, ``>``, ``&`` escaped)."""
    text = json.dumps(data, allow_nan=False, separators=(",", ":"), ensure_ascii=False)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def render_page(data: dict) -> str:
    """The complete HTML document (template + CSS + JS + data), placeholders filled in one pass."""
    values = {"TITLE": html.escape(data.get("title", "tadkit view")), "CSS": _asset("view.css"),
              "JS": _asset("view.js"), "DATA": script_json(data)}
    return re.sub(r"\{\{(TITLE|CSS|JS|DATA)\}\}", lambda m: values[m.group(1)], _asset("page.html"))


def write_page(path: str | os.PathLike, data: dict) -> Path:
    """Write the page atomically (a reader never sees half a file)."""
    from tadkit.utils.io import write_text

    path = Path(path)
    write_text(path, render_page(data))
    return path


def write_view(path: str | os.PathLike, spec: ViewSpec, runs: Sequence[Run], *, cap: int | None = DEFAULT_CAP,
               videos_dir: Any = None, compare_resamples: int = 1000) -> Path:
    """:func:`view_data` + :func:`write_page` in one call."""
    data = view_data(spec, runs, cap=cap, videos_dir=videos_dir, out_path=path, compare_resamples=compare_resamples)
    return write_page(path, data)
