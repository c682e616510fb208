"""Glue from a run config to detections, reports and plots: what `tadkit train/test/demo/detect` share.

Data flow, dispatched on the method's spec (:mod:`tadkit.methods`), never on its name: test samples
of the method's data kind (windows or whole videos) -> ``model(batch)`` + ``model.decode(outputs,
batch)`` per sample (:func:`tadkit.engine.inference.predict`, DDP-aware) -> video seconds:

* output kind ``detections``: :func:`tadkit.postprocess.merge.windows_to_detections` (times clipped to the
  video, or after the NMS with ``test.clip_after_nms``), then ``test.drop_reversed`` (end < start can never match);
* output kind ``cas``: the method's ``localize(activation, meta, test.cas)``;

-> optional CliffDiving->Diving copy (``test.duplicate_cliffdiving``) -> optional removal of
detections overlapping Ambiguous GT (``test.drop_ambiguous``) -> the NMS recipe (``test.nms``, or
the method's default) -> :class:`DetectionSet` -> official protocols.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from torch import nn

from tadkit.data.records import AnnotationSet, DetectionSet
from tadkit.engine.config import Config
from tadkit.errors import TadkitError

from tadkit.data.choices import PROTOCOLS  # noqa: E402


def video_durations(annotations: AnnotationSet) -> dict[str, float] | None:
    """``{video: duration}`` when every video has one (detections are then clipped to the video)."""
    durations = {vid: v.duration for vid, v in annotations.videos.items()}
    if any(d is None for d in durations.values()):
        return None
    return {vid: float(d) for vid, d in durations.items()}


@dataclass
class PostprocessLog:
    """What post-processing did: ``steps`` = (step, detections left after it); ``notes`` = what a
    reader of the report must not miss (e.g. times clipped at the video end)."""

    steps: list[tuple[str, int]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def detections_from_predictions(predictions: list, annotations: AnnotationSet, config: Config,
                                log: PostprocessLog | None = None) -> DetectionSet:
    """Per-sample decoder outputs -> post-processed detections in seconds (the config's recipe).

    ``log``, when given, receives ``(step, detections left)`` after every step, so that an empty
    result can say which step removed the last candidates (:func:`explain_no_detections`)."""
    from tadkit.engine.data import method_of
    from tadkit.postprocess.merge import THUMOS14_DUPLICATES, duplicate_labels, windows_to_detections
    from tadkit.postprocess.nms import nms_detection_set

    log = PostprocessLog() if log is None else log
    trace = log.steps
    spec = method_of(config)
    clip = video_durations(annotations)
    if spec.output_kind == "cas":
        dets = _localize_all(spec, predictions, annotations, config, clip, log)
        trace.append(("test.cas (the method's CAS -> segments)", len(dets)))
    else:
        clip_late = config.test.clip_after_nms and clip is not None
        dets = windows_to_detections(
            [p.detections for p in predictions], [p.meta for p in predictions], annotations.classes,
            clip_to_video=None if clip_late else clip,
        )
        trace.append(("decoding (windows -> seconds)", len(dets)))
        if config.test.drop_reversed:  # can never match GT: pure false positives (A2Net deviation 1 in docs)
            dets = dets.select(dets.end >= dets.start)
            trace.append(("test.drop_reversed (end < start)", len(dets)))
    if config.test.duplicate_cliffdiving:
        dets = duplicate_labels(dets, THUMOS14_DUPLICATES)
    if config.test.drop_ambiguous:
        dets = drop_ambiguous(dets, annotations)
        trace.append(("test.drop_ambiguous", len(dets)))
    nms = config.test.nms_config(file=config.source, default=spec.defaults.get("test.nms"))
    if nms is not None:
        dets = nms_detection_set(dets, nms)
        trace.append(("test.nms", len(dets)))
    if spec.output_kind != "cas" and config.test.clip_after_nms and clip is not None:
        dets = clip_to_videos(dets, clip)
        trace.append(("test.clip_after_nms (times clipped to the video, end <= start dropped)", len(dets)))
    if config.test.video_classifier:  # class-agnostic proposals (after their NMS, as AFSD) x top-k video classes
        from tadkit.postprocess.video_classifier import fuse_video_labels, load_video_scores

        dets = fuse_video_labels(dets, load_video_scores(config.test.video_classifier), config.test.video_classifier_topk)
        trace.append(("test.video_classifier", len(dets)))
    return dets


def clip_to_videos(dets: DetectionSet, durations: dict[str, float]) -> DetectionSet:
    """Times clipped to ``[0, duration]`` of each row's video, rows with ``end <= start`` then dropped, order
    kept (AFSD's ActivityNet test loop, after its soft-NMS)."""
    missing = sorted(set(dets.video.tolist()) - set(durations))
    if missing:
        raise TadkitError("no duration for this video", video=str(missing[0]), field="duration")
    limit = np.array([durations[v] for v in dets.video.tolist()], dtype=np.float64)
    start, end = np.maximum(dets.start, 0.0), np.minimum(dets.end, limit)
    keep = end > start
    return DetectionSet(dets.video[keep], start[keep], end[keep], dets.label[keep], dets.score[keep])


def explain_no_detections(trace: list[tuple[str, int]], predictions: list, config: Config) -> str:
    """Which step left no detection, and the numbers behind it (for ``cas`` methods: the best
    video-level class score against the localizer's ``class_threshold``)."""
    from tadkit.engine.data import method_of

    emptied = next((i for i, (_, count) in enumerate(trace) if count == 0), None)
    if emptied is None:
        return ""
    step = trace[emptied][0]
    before = trace[emptied - 1][1] if emptied else None
    text = (f"no detections: {step} removed all {before} candidates" if before
            else f"no detections: {step} produced none for the {len(predictions)} test samples")
    spec = method_of(config)
    if spec.output_kind == "cas" and emptied == 0 and predictions:
        scores = [np.max(np.asarray(getattr(p.detections, "video_scores", [np.nan]), dtype=np.float64))
                  for p in predictions]
        text += f"; the highest video-level class score is {np.nanmax(scores):.4g}"
        options_type = getattr(spec.localizer(), "options_type", None)  # the localizer's option dataclass
        threshold = getattr(options_type.from_mapping(dict(config.test.cas)), "class_threshold", None) \
            if options_type is not None else None
        if threshold is not None:
            text += (f" and test.cas.class_threshold is {threshold:g} (a class is localized only when its video score "
                     "reaches it; lower it with --set test.cas.class_threshold=...)")
    elif step.startswith("test.drop_reversed"):
        text += " (every predicted segment ends before it starts: the model has not learned the boundaries)"
    return text


def _localize_all(spec: Any, predictions: list, annotations: AnnotationSet, config: Config,
                  clip: dict[str, float] | None, log: PostprocessLog) -> DetectionSet:
    """``cas`` methods: each sample's class activation -> segments in seconds via the method's localize."""
    localize = spec.localizer()
    options = dict(config.test.cas)
    videos, starts, ends, scores, labels = [], [], [], [], []
    checked = beyond = 0
    for pred in predictions:
        segments, score, label = localize(pred.detections, dict(pred.meta), options)
        segments = np.asarray(segments, dtype=np.float64).reshape(-1, 2)
        if clip is not None and pred.video_id in clip:
            checked += len(segments)
            beyond += int(np.count_nonzero(segments[:, 0] > clip[pred.video_id]))
            segments = np.clip(segments, 0.0, clip[pred.video_id])
        videos.append(np.full(len(segments), pred.video_id, dtype=object))
        starts.append(segments[:, 0])
        ends.append(segments[:, 1])
        scores.append(np.asarray(score, dtype=np.float64).reshape(-1))
        labels.append(np.asarray(label, dtype=np.int64).reshape(-1))
    log.notes.extend(clipped_time_warning(beyond, checked))
    if not videos:
        return DetectionSet.empty()
    label_idx = np.concatenate(labels)
    names = np.asarray(annotations.classes, dtype=object)
    return DetectionSet(np.concatenate(videos), np.concatenate(starts), np.concatenate(ends),
                        names[label_idx], np.concatenate(scores))


def clipped_time_warning(beyond: int, checked: int) -> list[str]:
    """The evaluator's frames-vs-seconds warning for segments that started past their video's end
    before being clipped to it (clipping hides them from the evaluator's own check)."""
    from tadkit.evaluation.problem import BEYOND_DURATION_WARN_SHARE

    if not checked or beyond <= BEYOND_DURATION_WARN_SHARE * checked:
        return []
    return [f"{beyond} of {checked} segments ({100 * beyond / checked:.0f}%) started after the end of their video and "
            "were clipped to it: the CAS -> seconds mapping (test.cas fps / rate vs the features' fps and "
            "stride_frames) or the times' unit is probably wrong"]


def drop_ambiguous(dets: DetectionSet, annotations: AnnotationSet) -> DetectionSet:
    """Delete detections that overlap (any tIoU > 0) an Ambiguous segment of their video (ACRNet's protocol)."""
    from tadkit.postprocess.merge import drop_overlapping

    ambiguous = {vid: np.asarray(v.ambiguous, dtype=np.float64).reshape(-1, 2)
                 for vid, v in annotations.videos.items() if getattr(v, "ambiguous", None)}
    return drop_overlapping(dets, ambiguous) if ambiguous else dets


def detect_dataset(model: nn.Module, dataset: Any, config: Config, *, progress: bool = True,
                   on_empty: Callable[[str], None] | None = None) -> DetectionSet:
    """Detections (seconds) of every video of ``dataset`` after the config's post-processing;
    ``on_empty`` hears :func:`explain_no_detections` when none are left."""
    from tadkit.engine.data import collate_fn_for, method_of
    from tadkit.engine.inference import predict

    collate = collate_fn_for(method_of(config).data_kind)
    predictions = predict(model, dataset, collate, batch_size=config.test.batch_size, progress=progress, desc="detect")
    log = PostprocessLog()
    dets = detections_from_predictions(predictions, dataset.annotations, config, log)
    for note in log.notes:
        print(f"tadkit: warning: {note}", file=sys.stderr)
    if len(dets) == 0 and on_empty is not None:
        on_empty(explain_no_detections(log.steps, predictions, config))
    return dets


detect_windows = detect_dataset  # issue-3 name


@dataclass
class Report:
    """Scores of one detection set under both official protocols plus the per-duration analysis."""

    results: dict[str, Any]  # protocol -> EvalResult
    durations: Any  # DurationBreakdown (A2Net Table I bins) under the config's protocol
    primary: str  # the config's protocol
    extra: dict[str, Any] = field(default_factory=dict)
    #: the dataset kind's summary range (evaluation.detection.SUMMARY_TIOU) and each protocol's mAP
    #: average over it; empty for reports built without one
    summary_tiou: list[float] = field(default_factory=list)
    summary_mAP: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what the reader must not miss (printed above the tables)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "primary_protocol": self.primary,
            "protocols": {name: result.to_dict() for name, result in self.results.items()},
            "per_duration": self.durations.to_dict(),
            **self.extra,
            "notes": list(self.notes),
        }
        if self.summary_tiou:
            out["summary"] = {"tiou": list(self.summary_tiou), "average_mAP": dict(self.summary_mAP)}
        return out

    def summary_text(self, protocol: str | None = None) -> str:
        """``average mAP (tIoU 0.1:0.7) 12.3`` for ``protocol`` (default: the primary one)."""
        from tadkit.evaluation.detection import tiou_range_text

        protocol = protocol or self.primary
        if not self.summary_tiou:
            return f"average mAP {100 * self.results[protocol].average_mAP:.1f}"
        return f"average mAP (tIoU {tiou_range_text(self.summary_tiou)}) {100 * self.summary_mAP[protocol]:.1f}"

    def format(self) -> str:
        lines = [f"note: {note}" for note in self.notes] + ([""] if self.notes else [])
        for name in [self.primary] + [p for p in self.results if p != self.primary]:
            lines.append(self.results[name].format_table())
            lines.append("")
        if self.summary_tiou:
            from tadkit.evaluation.detection import tiou_range_text

            values = ", ".join(f"{name} {100 * value:.2f}" for name, value in self.summary_mAP.items())
            lines.append(f"summary: average mAP over tIoU {tiou_range_text(self.summary_tiou)} (every summary of this "
                         f"dataset kind uses this range): {values}")
            lines.append("")
        lines.append(self.durations.format_table())
        return "\n".join(lines)


def evaluate_report(gt: AnnotationSet, dets: DetectionSet, config: Config) -> Report:
    """Both protocols at the config's thresholds (each protocol's own default when none are set),
    plus each protocol's average over the dataset kind's summary range (scored separately when the
    config's thresholds do not include all of it)."""
    from tadkit.evaluation import duration_breakdown, evaluate
    from tadkit.evaluation.detection import default_tiou, summary_tiou

    thresholds = config.test.tiou_thresholds
    blocked = config.test.blocked_videos
    subset = config.data.subset_test  # gt is already this subset; passing it names it in the report
    results = {
        protocol: evaluate(gt, dets, protocol, thresholds, subset=subset, blocked=blocked)
        for protocol in [config.test.protocol] + [p for p in PROTOCOLS if p != config.test.protocol]
    }
    summary = summary_tiou(thresholds or default_tiou(config.test.protocol))
    summary_mAP = {}
    for protocol, result in results.items():
        at = {round(t, 6): m for t, m in zip(result.tiou, result.mAP)}
        if all(round(t, 6) in at for t in summary):
            summary_mAP[protocol] = float(np.mean([at[round(t, 6)] for t in summary]))
        else:
            summary_mAP[protocol] = evaluate(gt, dets, protocol, summary, subset=subset, blocked=blocked).average_mAP
    durations = duration_breakdown(gt, dets, protocol=config.test.protocol, tiou_thresholds=(0.5,), subset=subset,
                                   blocked=blocked)
    return Report(results=results, durations=durations, primary=config.test.protocol, summary_tiou=summary,
                  summary_mAP=summary_mAP)


def make_evaluate_fn(config: Config, out_dir: Path) -> Callable[[nn.Module, int], dict[str, float]] | None:
    """Per-epoch evaluation for the trainer: mAP of the config's protocol on the test subset
    (``average_mAP``, ``mAP@t``) and, with ``data.val_fraction``, on the held-out validation split
    (the same names prefixed ``val_``; ``train.best_metric: val_average_mAP`` selects on it).

    The datasets are built once, on first use. Returns ``None`` when no evaluation is scheduled.
    """
    if not (config.train.eval_every or config.train.eval_epochs or config.train.best_metric):
        return None
    check_test_files(config)  # now, not at the first evaluation epochs into the run
    state: dict[str, Any] = {}

    def scores(model: nn.Module, dataset: Any, run_config: Config, prefix: str) -> dict[str, float]:
        from tadkit.evaluation import evaluate

        dets = detect_dataset(model, dataset, run_config, progress=False)
        result = evaluate(dataset.annotations, dets, config.test.protocol, config.test.tiou_thresholds)
        metrics = {f"{prefix}mAP@{t:g}": float(m) for t, m in zip(result.tiou, result.mAP)}
        metrics[f"{prefix}average_mAP"] = float(result.average_mAP)
        return metrics

    def evaluate_fn(model: nn.Module, epoch: int) -> dict[str, float]:
        from tadkit.engine.data import build_dataset, build_validation_dataset, skipped_videos, validation_config
        from tadkit.evaluation.epoch_selection import VAL_PREFIX

        if "dataset" not in state:
            state["dataset"] = build_dataset(config, training=False, progress=False)
            if config.data.val_fraction is not None:
                state["val"] = (build_validation_dataset(config), validation_config(config))
            evaluate_fn.skipped = skipped_videos(state["dataset"], config.data.subset_test)  # the trainer logs it
        metrics = {}
        if "val" in state:
            metrics.update(scores(model, *state["val"], VAL_PREFIX))
        metrics.update(scores(model, state["dataset"], config, ""))
        return metrics

    evaluate_fn.skipped = None  # type: ignore[attr-defined]
    return evaluate_fn


def check_test_files(config: Config) -> None:
    """Read every file the config's ``test`` section names (video classifier, blocked-video list)
    so that a missing or broken one is one clear error when a run starts."""
    from tadkit.evaluation.ids import load_blocked

    if config.test.video_classifier:
        from tadkit.postprocess.video_classifier import load_video_scores

        _require_file(config.test.video_classifier, "test.video_classifier", config.source)
        load_video_scores(config.test.video_classifier)
    if config.test.blocked_videos:
        _require_file(config.test.blocked_videos, "test.blocked_videos", config.source)
        load_blocked(config.test.blocked_videos)


def _require_file(path: str, key: str, config_file: str | None) -> None:
    if not Path(path).is_file():
        what = "is a directory, not a file" if Path(path).is_dir() else "does not exist"
        raise TadkitError(f"{key} names {path}, which {what}", file=config_file, field=key)


@dataclass
class TestOutputs:
    __test__ = False  # not a pytest class

    gt: AnnotationSet
    dets: DetectionSet
    report: Report
    files: dict[str, Path]


def run_test(model: nn.Module, config: Config, out_dir: Path, *, progress: bool = True,
             html: bool = True) -> TestOutputs | None:
    """Detect on the test subset, write ActivityNet JSON + THUMOS txt + the report (JSON and text), the
    scored ground truth and (``html``) the ``tadkit view`` page ``report.html``.

    In a process group (``torchrun -m tadkit.cli test``) every rank predicts its share of the windows
    and the predictions are gathered; rank 0 evaluates and writes, the other ranks return None.
    """
    from tadkit.engine.data import build_dataset
    from tadkit.evaluation import write_activitynet_json, write_thumos_txt
    from tadkit.engine.data import collate_fn_for, method_of, skipped_videos
    from tadkit.utils.io import write_json, write_text

    out_dir = Path(out_dir)
    dataset = build_dataset(config, training=False, progress=progress)
    skipped = skipped_videos(dataset, config.data.subset_test)
    if len(dataset) == 0:
        why = f"; {skipped.message('nothing is left to test')}" if skipped is not None else ""
        raise TadkitError(
            f"no test samples: subset {config.data.subset_test!r} has no video with features{why}",
            file=config.data.annotations, field="data.subset_test",
        )
    from tadkit.engine.inference import predict

    predictions = predict(model, dataset, collate_fn_for(method_of(config).data_kind), batch_size=config.test.batch_size,
                          progress=progress, desc="detect")
    from tadkit.engine.distributed import current_context

    if not current_context().is_main:  # under torchrun each rank predicted its share; rank 0 has them all
        return None
    log = PostprocessLog()
    dets = detections_from_predictions(predictions, dataset.annotations, config, log)
    trace = log.steps
    gt = dataset.annotations
    files = {"results": out_dir / "results.json", "report": out_dir / "report.json", "table": out_dir / "report.txt"}
    if method_of(config).output_kind == "cas":  # video-level labels for proposal models (test.video_classifier)
        from tadkit.postprocess.video_classifier import VIDEO_SCORES_FILE, video_scores_from_predictions, write_video_scores

        files["video_scores"] = write_video_scores(out_dir / VIDEO_SCORES_FILE,
                                                   video_scores_from_predictions(predictions, gt.classes))
    write_activitynet_json(dets, files["results"])
    if gt.external_ids and all(label in gt.external_ids for label in set(dets.label.tolist())):
        files["thumos_txt"] = out_dir / "detections_thumos14.txt"
        write_thumos_txt(dets, files["thumos_txt"], gt.external_ids)
    report = evaluate_report(gt, dets, config)
    report.extra["num_test_videos"] = len(gt.videos)
    report.extra["num_detections"] = len(dets)
    if skipped is not None:  # their GT stays in the evaluation: say why it can only be missed
        report.extra["skipped_videos"] = skipped.to_dict()
        report.notes.append(skipped.message(TEST_SKIP_CONSEQUENCE))
    if config.test.video_classifier:
        report.extra["video_classifier"] = str(config.test.video_classifier)
        report.notes.append(f"class labels from the video classifier {config.test.video_classifier} "
                            f"(top {config.test.video_classifier_topk} per video)")
    report.extra["postprocess_steps"] = [{"step": step, "detections": count} for step, count in trace]
    report.notes.extend(log.notes)
    for note in log.notes:
        print(f"tadkit test: warning: {note}", file=sys.stderr)
    if len(dets) == 0:
        report.notes.append(explain_no_detections(trace, predictions, config))
    report.extra["run"] = {"method": config.model.name, "annotations": str(config.data.annotations),
                           "subset": config.data.subset_test}
    write_json(files["report"], report.to_dict())
    write_text(files["table"], report.format() + "\n")
    files["ground_truth"] = write_scored_ground_truth(gt, out_dir)
    if html:
        files["html"] = write_test_page(gt, dets, config, out_dir, report)
    return TestOutputs(gt=gt, dets=dets, report=report, files=files)


TEST_SKIP_CONSEQUENCE = "they have no detections, so their ground truth counts as missed"


def write_scored_ground_truth(gt: AnnotationSet, out_dir: Path) -> Path:
    """The GT a test run was scored on (tadkit JSON), so `tadkit view DIR` needs nothing outside DIR."""
    from tadkit.commands.view import GROUND_TRUTH_FILE
    from tadkit.data.formats.activitynet import write_tadkit_json

    path = Path(out_dir) / GROUND_TRUTH_FILE
    write_tadkit_json(gt, path)
    return path


def write_test_page(gt: AnnotationSet, dets: DetectionSet, config: Config, out_dir: Path,
                    report: Report | None = None) -> Path:
    """``report.html`` beside report.json: the `tadkit view` page of this run (``report``: its scores,
    reused instead of scoring again)."""
    from tadkit.commands.view import PAGE_FILE
    from tadkit.viz.report_html import Run, ViewSpec, write_view

    protocol = config.test.protocol
    spec = ViewSpec(gt=gt, protocol=protocol, subset=config.data.subset_test, blocked=config.test.blocked_videos,
                    tiou=config.test.tiou_thresholds,  # as evaluate_report: one threshold list for every protocol
                    other_protocols={p: config.test.tiou_thresholds for p in PROTOCOLS if p != protocol},
                    annotations=str(config.data.annotations), title=f"tadkit test: {Path(out_dir).resolve().name}")
    run = Run(name=Path(out_dir).resolve().name, dets=dets, method=str(config.model.name or ""),
              predictions=str(Path(out_dir) / "results.json"),
              scores=None if report is None else report.to_dict())
    return write_view(Path(out_dir) / PAGE_FILE, spec, [run])


#: timelines draw every detection scoring at least this fraction of the run's best score
TIMELINE_SCORE_FLOOR = 0.1


def plot_outputs(
    gt: AnnotationSet, dets: DetectionSet, report: Report, history_path: Path | None, out_dir: Path,
    num_videos: int = 3, config: Config | None = None,
) -> dict[str, Path]:
    """PNG plots: GT-vs-detection timelines of a few videos, per-duration mAP bars, training curves
    (with ``config``: its learning-rate schedule as a curve)."""
    from tadkit.data.ids import check_video_id
    from tadkit.viz import plot_duration_map, plot_timeline

    out_dir = Path(out_dir)
    files: dict[str, Path] = {}
    # The videos with the most ground truth make the most telling timelines. Every detection above a
    # floor relative to the run's best score is drawn (a top-k makes found GT look missed), opacity on
    # the run's own 0..best scale (CAS methods score far below 1), the same for its three timelines.
    best = float(dets.score.max()) if len(dets) and dets.score.max() > 0 else 1.0
    busiest = sorted(gt.videos.values(), key=lambda v: -len(v.segments))[:num_videos]
    for video in busiest:
        duration = video.duration or float(max([s.end for s in video.segments]
                                                + list(dets.end[dets.video == video.video_id]) + [1.0]))
        path = out_dir / f"timeline_{check_video_id(video.video_id, file=gt.source or None)}.png"
        plot_timeline({video.video_id: video.segments}, dets, duration, gt.classes, path,
                      title=f"{video.video_id}: GT vs detections",
                      min_score=TIMELINE_SCORE_FLOOR * best, score_range=(0.0, best), protocol=report.primary)
        files[f"timeline_{video.video_id}"] = path
    bins = {b.name: 100.0 * b.mAP[0] for b in report.durations.bins if b.num_gt}
    files["per_duration"] = out_dir / "per_duration_map.png"
    kept = [b for b in report.durations.bins if b.num_gt]
    run = run_label(config, history_path, out_dir)
    plot_duration_map({run: bins}, files["per_duration"],
                      title=f"{run}: mAP@0.5 per action duration ({report.primary})",
                      ylabel="mAP@0.5", unit="%", ranges={b.name: (b.low, b.high) for b in kept},
                      counts={b.name: b.num_gt for b in kept})
    if history_path is not None and Path(history_path).exists():
        path = plot_history(Path(history_path), out_dir / "training_curves.png", config)
        if path is not None:
            files["training_curves"] = path
    return files


def run_label(config: Config | None, history_path: Path | None, out_dir: Path) -> str:
    """``method (run directory)`` for plot titles and legends: the method of ``config``, the run the
    history belongs to (else the output directory)."""
    run = Path(history_path).parent.name if history_path is not None else Path(out_dir).absolute().name
    method = str(config.model.name) if config is not None and config.model.name else ""
    return f"{method} ({run})" if method and method != run else (method or run)


def plot_history(history_path: Path, path: Path, config: Config | None = None) -> Path | None:
    """``training_curves.png`` of a run's ``history.json``: x in the run's own unit (the ``step`` of
    iteration-based runs, else the epoch), the config's LR schedule as a curve when ``config`` is
    given or the run directory holds its ``config.yaml`` (else the logged per-record rates), titled
    with the run directory's name. None when the
    history holds no record."""
    import json

    from tadkit.viz import plot_training_curves

    try:
        history = json.loads(Path(history_path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise TadkitError(f"unreadable training history: {error}", file=str(history_path), field="history") from None
    curves = history_to_curves(history)
    if not curves:
        return None
    run_config = Path(history_path).parent / "config.yaml"  # what the run trained with, when it is there
    if run_config.is_file():
        from tadkit.engine.config import load_config

        try:
            config = load_config(run_config)
        except TadkitError:
            pass  # an old or hand-edited run config: the caller's config (or the logged rates) instead
    records = history.get("epochs", []) if isinstance(history, dict) else list(history)
    unit = history.get("unit", "epoch") if isinstance(history, dict) else "epoch"
    unit = unit if unit in ("epoch", "iteration") else "epoch"
    key = "step" if unit == "iteration" else "epoch"
    x = [float(r.get(key, r.get("global_step", i + 1))) for i, r in enumerate(records)]
    lr_curve = schedule_curve(config, unit, records) if config is not None else None
    model = history.get("model") if isinstance(history, dict) else None
    length = f"{x[-1]:g} {unit}{'s' if x[-1] != 1 else ''}"
    title = f"{Path(history_path).parent.name}: {model + ', ' if model else ''}{length}"
    return plot_training_curves(curves, path, title, x=x, xlabel=unit, lr=[float(r.get("lr", "nan")) for r in records],
                                lr_curve=lr_curve)


#: most points drawn for a learning-rate schedule (a long per-iteration cosine is sampled evenly)
MAX_LR_POINTS = 2000


def schedule_curve(config: Config, unit: str, records: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray] | None:
    """(x, lr) of the default parameter group's schedule (:func:`tadkit.engine.trainer.lr_at`) up to the
    last record, in the plotted ``unit``: per iteration for an iteration schedule, a step per epoch for
    an epoch schedule. None when the records do not say how many iterations an epoch has."""
    from tadkit.engine.trainer import lr_at, schedule_length

    if not records:
        return None
    last = records[-1]
    steps, epochs = int(last.get("global_step") or 0), int(last.get("epoch") or 0)
    if steps < 1 or epochs < 1:
        return None
    steps_per_epoch = max(1, round(steps / epochs)) if unit == "epoch" else max(1, math.ceil(steps / epochs))
    total = schedule_length(config, steps_per_epoch)
    per_iteration = config.train.scheduler_unit == "iteration"
    done = steps if per_iteration else epochs  # scheduler steps the run has taken
    positions = np.unique(np.linspace(0, max(done - 1, 0), min(done, MAX_LR_POINTS)).round().astype(np.int64))
    values = np.array([lr_at(config.train.lr, config, int(p), total, steps_per_epoch) for p in positions])
    # scheduler step p is in force from p to p + 1 (in its own unit): draw it as a step
    edges = np.ravel(np.column_stack([positions, positions + 1])).astype(np.float64)
    lr = np.repeat(values, 2)
    if per_iteration and unit == "epoch":
        edges = edges / steps_per_epoch
    elif not per_iteration and unit == "iteration":
        edges = edges * steps_per_epoch
    return edges, lr


def history_to_curves(history: Any) -> dict[str, list[float]]:
    """``history.json`` -> ``{series: per-epoch values}``: every loss term, and each metric in
    percent (NaN on epochs without evaluation, drawn as gaps)."""
    records = history.get("epochs", []) if isinstance(history, dict) else list(history)
    names: dict[str, None] = {}
    for record in records:
        names.update({f"loss/{k}": None for k in record.get("loss", {})})
        names.update({f"val/{k} (%)": None for k in record.get("metrics", {})})
    curves: dict[str, list[float]] = {name: [] for name in names}
    for record in records:
        for name in names:
            group, key = name.split("/", 1)
            if group == "loss":
                curves[name].append(float(record.get("loss", {}).get(key, float("nan"))))
            else:
                value = record.get("metrics", {}).get(key.removesuffix(" (%)"))
                curves[name].append(float("nan") if value is None else 100.0 * float(value))
    return curves


# --------------------------------------------------------------------------------------------------
# One new video (or feature file) -> detections: `tadkit detect`
# --------------------------------------------------------------------------------------------------
DETECT_SUBSET = "detect"


def single_video_store(features_path: Path, work_dir: Path, *, fps: float | None, stride_frames: float | None,
                       clip_frames: float | None):
    """A :class:`FeatureStore` holding one feature file, with its time mapping made explicit.

    The mapping comes from (in order): a ``features.json`` beside the file, a sidecar ``<stem>.json``
    written by ``tadkit extract`` (fps, step, stack, timestamps), or the ``fps``/``stride_frames``
    arguments. Without any of them the seconds would be guesses, so that is an error.
    """
    from tadkit.data.features import FEATURES_JSON, FeatureSpec, FeatureStore, open_feature_array
    from tadkit.utils.io import check_input_file

    features_path = check_input_file(features_path, "feature file", field="input")
    if (features_path.parent / FEATURES_JSON).exists() and fps is None and stride_frames is None:
        return FeatureStore(features_path.parent)
    sidecar = features_path.with_suffix(".json")
    side: dict[str, Any] = {}
    if sidecar.exists():
        import json

        try:
            side = json.loads(sidecar.read_text())
        except (OSError, ValueError) as error:
            raise TadkitError(f"unreadable sidecar: {error}", file=str(sidecar), field="json") from None
    fps = fps if fps is not None else side.get("fps")
    stride_frames = stride_frames if stride_frames is not None else side.get("step")
    clip_frames = clip_frames if clip_frames is not None else side.get("stack", stride_frames)
    if fps is None or stride_frames is None:
        raise TadkitError(
            "cannot map features to seconds: no features.json beside it, no sidecar JSON with fps/step; "
            "pass --feature-fps and --feature-stride (frames between features)",
            file=str(features_path), field="timing",
        )
    work_dir.mkdir(parents=True, exist_ok=True)
    # the user's file, checked and named before the one-video store (a temp dir linking to it) reads it
    key = "features" if features_path.suffix.lower() == ".npz" else None  # a single-array .npz: any name
    array = open_feature_array(features_path, features_path.stem, key)
    if array.shape[0] == 0:
        raise TadkitError("holds no features (T = 0)", file=str(features_path), field="length")
    target = work_dir / f"{features_path.stem}{features_path.suffix.lower()}"
    if target.resolve() != features_path.resolve():
        target.unlink(missing_ok=True)
        target.symlink_to(features_path.resolve())  # the store reads it memory-mapped; no second copy
    FeatureSpec.from_dict({"fps": float(fps), "stride_frames": float(stride_frames),
                           "clip_frames": float(clip_frames or stride_frames), "offset_frames": 0,
                           "dim": int(array.shape[1])}).save(work_dir)
    return FeatureStore(work_dir)


def detect_feature_store(model: nn.Module, store: Any, video_id: str, config: Config, classes: list[str],
                         duration: float | None = None, *, progress: bool = True) -> DetectionSet:
    """Detections for one video of ``store``: the same windows, decoding and NMS as `tadkit test`."""
    from tadkit.data.records import VideoAnnotation

    dim = store.dim(video_id)
    in_dim = model_input_dim(model)
    if in_dim is not None and int(in_dim) != int(dim):
        raise TadkitError(
            f"the model expects {in_dim}-d features but this video's features are {dim}-d "
            "(extract with the streams the model was trained on)", video=video_id, field="features",
        )
    timing = store.timing(video_id, None)
    count = store.num_features(video_id)
    if duration is None:
        duration = float(timing.index_to_seconds(count - 1)) + timing.seconds_per_feature
    video = VideoAnnotation(video_id=video_id, subset=DETECT_SUBSET, duration=float(duration), fps=timing.fps)
    return _detect_one_video(model, store, video, config, classes, progress)


def detect_frame_store(model: nn.Module, store: Any, video_id: str, config: Config, classes: list[str], *,
                       progress: bool = True) -> DetectionSet:
    """Detections for one video of a frame store (end-to-end methods): the clips, decoding and NMS of
    `tadkit test`."""
    from tadkit.data.records import VideoAnnotation

    info = store.videos[video_id]
    fps = store.video_fps(video_id)
    duration = info.duration if info.duration is not None else info.num_frames / fps
    video = VideoAnnotation(video_id=video_id, subset=DETECT_SUBSET, duration=float(duration), fps=fps)
    return _detect_one_video(model, store, video, config, classes, progress)


def _detect_one_video(model: nn.Module, store: Any, video: Any, config: Config, classes: list[str],
                      progress: bool) -> DetectionSet:
    from tadkit.engine.data import build_dataset, skipped_videos

    annotations = AnnotationSet(videos={video.video_id: video}, classes=list(classes), source="detect")
    config = Config.from_dict({**config.to_dict(), "data": {**config.to_dict()["data"], "subset_test": DETECT_SUBSET}})
    dataset = build_dataset(config, training=False, progress=False, annotations=annotations, store=store)
    skipped = skipped_videos(dataset, DETECT_SUBSET)
    if skipped is not None:
        raise TadkitError(f"the video is too short for this model: it has {skipped.reason}", video=video.video_id,
                          field="data.min_features")
    return detect_dataset(model, dataset, config, progress=progress,
                          on_empty=lambda why: print(f"{video.video_id}: {why}"))


def model_input_dim(model: nn.Module) -> int | None:
    """The feature width a model expects (``in_dim`` of its ``config_dict()``), when it says."""
    getter = getattr(model, "config_dict", None)
    value = getter().get("in_dim") if callable(getter) else None
    return int(value) if isinstance(value, (int, float)) else None
