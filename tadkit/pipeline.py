"""Glue from a run config to detections, reports and plots: what `tadkit train/test/demo/detect` share.

Data flow, dispatched on the method's spec (:mod:`tadkit.methods`), never on its name: test samples
of the method's data kind (windows or whole videos) -> ``model(batch)`` + ``model.decode(outputs,
batch)`` per sample (:func:`tadkit.engine.inference.predict`, DDP-aware) -> video seconds:

* output kind ``detections``: :func:`tadkit.postprocess.merge.windows_to_detections`, then
  ``test.drop_reversed`` (end < start can never match);
* output kind ``cas``: the method's ``localize(activation, meta, test.cas)``;

-> optional CliffDiving->Diving copy (``test.duplicate_cliffdiving``) -> optional removal of
detections overlapping Ambiguous GT (``test.drop_ambiguous``) -> the NMS recipe (``test.nms``, or
the method's default) -> :class:`DetectionSet` -> official protocols.
"""

from __future__ import annotations

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


def detections_from_predictions(predictions: list, annotations: AnnotationSet, config: Config) -> DetectionSet:
    """Per-sample decoder outputs -> post-processed detections in seconds (the config's recipe)."""
    from tadkit.engine.data import method_of
    from tadkit.postprocess.merge import THUMOS14_DUPLICATES, duplicate_labels, windows_to_detections
    from tadkit.postprocess.nms import nms_detection_set

    spec = method_of(config)
    clip = video_durations(annotations)
    if spec.output_kind == "cas":
        dets = _localize_all(spec, predictions, annotations, config, clip)
    else:
        dets = windows_to_detections(
            [p.detections for p in predictions], [p.meta for p in predictions], annotations.classes, clip_to_video=clip,
        )
        if config.test.drop_reversed:  # can never match GT: pure false positives (A2Net deviation 1 in docs)
            dets = dets.select(dets.end >= dets.start)
    if config.test.duplicate_cliffdiving:
        dets = duplicate_labels(dets, THUMOS14_DUPLICATES)
    if config.test.drop_ambiguous:
        dets = drop_ambiguous(dets, annotations)
    nms = config.test.nms_config(file=config.source, default=spec.defaults.get("test.nms"))
    dets = dets if nms is None else nms_detection_set(dets, nms)
    if config.test.video_classifier:  # class-agnostic proposals (after their NMS, as AFSD) x top-k video classes
        from tadkit.postprocess.video_classifier import fuse_video_labels, load_video_scores

        dets = fuse_video_labels(dets, load_video_scores(config.test.video_classifier), config.test.video_classifier_topk)
    return dets


def _localize_all(spec: Any, predictions: list, annotations: AnnotationSet, config: Config,
                  clip: dict[str, float] | None) -> DetectionSet:
    """``cas`` methods: each sample's class activation -> segments in seconds via the method's localize."""
    localize = spec.localizer()
    options = dict(config.test.cas)
    videos, starts, ends, scores, labels = [], [], [], [], []
    for pred in predictions:
        segments, score, label = localize(pred.detections, dict(pred.meta), options)
        segments = np.asarray(segments, dtype=np.float64).reshape(-1, 2)
        if clip is not None and pred.video_id in clip:
            segments = np.clip(segments, 0.0, clip[pred.video_id])
        videos.append(np.full(len(segments), pred.video_id, dtype=object))
        starts.append(segments[:, 0])
        ends.append(segments[:, 1])
        scores.append(np.asarray(score, dtype=np.float64).reshape(-1))
        labels.append(np.asarray(label, dtype=np.int64).reshape(-1))
    if not videos:
        return DetectionSet.empty()
    label_idx = np.concatenate(labels)
    names = np.asarray(annotations.classes, dtype=object)
    return DetectionSet(np.concatenate(videos), np.concatenate(starts), np.concatenate(ends),
                        names[label_idx], np.concatenate(scores))


def drop_ambiguous(dets: DetectionSet, annotations: AnnotationSet) -> DetectionSet:
    """Delete detections that overlap (any tIoU > 0) an Ambiguous segment of their video (ACRNet's protocol)."""
    from tadkit.postprocess.merge import drop_overlapping

    ambiguous = {vid: np.asarray(v.ambiguous, dtype=np.float64).reshape(-1, 2)
                 for vid, v in annotations.videos.items() if getattr(v, "ambiguous", None)}
    return drop_overlapping(dets, ambiguous) if ambiguous else dets


def detect_dataset(model: nn.Module, dataset: Any, config: Config, *, progress: bool = True) -> DetectionSet:
    """Detections (seconds) of every video of ``dataset`` after the config's post-processing."""
    from tadkit.engine.data import collate_fn_for, method_of
    from tadkit.engine.inference import predict

    collate = collate_fn_for(method_of(config).data_kind)
    predictions = predict(model, dataset, collate, batch_size=config.test.batch_size, progress=progress, desc="detect")
    return detections_from_predictions(predictions, dataset.annotations, config)


detect_windows = detect_dataset  # issue-3 name


@dataclass
class Report:
    """Scores of one detection set under both official protocols plus the per-duration analysis."""

    results: dict[str, Any]  # protocol -> EvalResult
    durations: Any  # DurationBreakdown (A2Net Table I bins) under the config's protocol
    primary: str  # the config's protocol
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "primary_protocol": self.primary,
            "protocols": {name: result.to_dict() for name, result in self.results.items()},
            "per_duration": self.durations.to_dict(),
            **self.extra,
        }

    def format(self) -> str:
        lines = []
        for name in [self.primary] + [p for p in self.results if p != self.primary]:
            lines.append(self.results[name].format_table())
            lines.append("")
        lines.append(self.durations.format_table())
        return "\n".join(lines)


def evaluate_report(gt: AnnotationSet, dets: DetectionSet, config: Config) -> Report:
    """Both protocols at the config's thresholds (each protocol's own default when none are set)."""
    from tadkit.evaluation import duration_breakdown, evaluate

    thresholds = config.test.tiou_thresholds
    blocked = config.test.blocked_videos
    subset = config.data.subset_test  # gt is already this subset; passing it names it in the report
    results = {
        protocol: evaluate(gt, dets, protocol, thresholds, subset=subset, blocked=blocked)
        for protocol in [config.test.protocol] + [p for p in PROTOCOLS if p != config.test.protocol]
    }
    durations = duration_breakdown(gt, dets, protocol=config.test.protocol, tiou_thresholds=(0.5,), subset=subset,
                                   blocked=blocked)
    return Report(results=results, durations=durations, primary=config.test.protocol)


def make_evaluate_fn(config: Config, out_dir: Path) -> Callable[[nn.Module, int], dict[str, float]] | None:
    """Per-epoch validation for the trainer: mAP of the config's protocol on the test subset.

    The test windows are built once, on first use. Returns ``None`` when no evaluation is scheduled.
    """
    if not (config.train.eval_every or config.train.eval_epochs or config.train.best_metric):
        return None
    state: dict[str, Any] = {}

    def evaluate_fn(model: nn.Module, epoch: int) -> dict[str, float]:
        from tadkit.engine.data import build_dataset
        from tadkit.evaluation import evaluate

        if "dataset" not in state:
            state["dataset"] = build_dataset(config, training=False, progress=False)
        dataset = state["dataset"]
        dets = detect_dataset(model, dataset, config, progress=False)
        result = evaluate(dataset.annotations, dets, config.test.protocol, config.test.tiou_thresholds)
        metrics = {f"mAP@{t:g}": float(m) for t, m in zip(result.tiou, result.mAP)}
        metrics["average_mAP"] = float(result.average_mAP)
        return metrics

    return evaluate_fn


@dataclass
class TestOutputs:
    __test__ = False  # not a pytest class

    gt: AnnotationSet
    dets: DetectionSet
    report: Report
    files: dict[str, Path]


def run_test(model: nn.Module, config: Config, out_dir: Path, *, progress: bool = True) -> TestOutputs | None:
    """Detect on the test subset, write ActivityNet JSON + THUMOS txt + the report (JSON and text).

    In a process group (``torchrun -m tadkit.cli test``) every rank predicts its share of the windows
    and the predictions are gathered; rank 0 evaluates and writes, the other ranks return None.
    """
    from tadkit.engine.data import build_dataset
    from tadkit.evaluation import write_activitynet_json, write_thumos_txt
    from tadkit.utils.io import write_json, write_text

    out_dir = Path(out_dir)
    dataset = build_dataset(config, training=False, progress=progress)
    if len(dataset) == 0:
        raise TadkitError(
            f"no test samples: subset {config.data.subset_test!r} has no video with features",
            file=config.data.annotations, field="data.subset_test",
        )
    from tadkit.engine.data import collate_fn_for, method_of
    from tadkit.engine.inference import predict

    predictions = predict(model, dataset, collate_fn_for(method_of(config).data_kind), batch_size=config.test.batch_size,
                          progress=progress, desc="detect")
    from tadkit.engine.distributed import current_context

    if not current_context().is_main:  # under torchrun each rank predicted its share; rank 0 has them all
        return None
    dets = detections_from_predictions(predictions, dataset.annotations, config)
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
    write_json(files["report"], report.to_dict())
    write_text(files["table"], report.format() + "\n")
    return TestOutputs(gt=gt, dets=dets, report=report, files=files)


def plot_outputs(
    gt: AnnotationSet, dets: DetectionSet, report: Report, history_path: Path | None, out_dir: Path,
    num_videos: int = 3,
) -> dict[str, Path]:
    """PNG plots: GT-vs-detection timelines of a few videos, per-duration mAP bars, training curves."""
    import json

    from tadkit.viz import plot_duration_map, plot_timeline, plot_training_curves

    out_dir = Path(out_dir)
    files: dict[str, Path] = {}
    # The videos with the most ground truth make the most telling timelines.
    busiest = sorted(gt.videos.values(), key=lambda v: -len(v.segments))[:num_videos]
    for video in busiest:
        mask = dets.video == video.video_id
        top = np.argsort(-dets.score[mask], kind="stable")[: max(3 * len(video.segments), 10)]
        chosen = dets.select(np.flatnonzero(mask)[top])
        duration = video.duration or float(max([s.end for s in video.segments] + list(chosen.end) + [1.0]))
        path = out_dir / f"timeline_{video.video_id}.png"
        plot_timeline(video.segments, chosen, duration, gt.classes, path, title=f"{video.video_id}: GT vs detections",
                      total_detections=int(mask.sum()))
        files[f"timeline_{video.video_id}"] = path
    bins = {b.name: 100.0 * b.mAP[0] for b in report.durations.bins if b.num_gt}
    files["per_duration"] = out_dir / "per_duration_map.png"
    kept = [b for b in report.durations.bins if b.num_gt]
    plot_duration_map(bins, files["per_duration"], title=f"mAP@0.5 per action duration ({report.primary})", unit="%",
                      ranges={b.name: (b.low, b.high) for b in kept}, counts={b.name: b.num_gt for b in kept})
    if history_path is not None and Path(history_path).exists():
        history = json.loads(Path(history_path).read_text())
        curves = history_to_curves(history)
        if curves:
            files["training_curves"] = out_dir / "training_curves.png"
            records = history.get("epochs", []) if isinstance(history, dict) else list(history)
            plot_training_curves(curves, files["training_curves"], lr=[float(r.get("lr", "nan")) for r in records])
    return files


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
    from tadkit.data.features import FEATURES_JSON, FeatureSpec, FeatureStore

    features_path = Path(features_path)
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
    array = np.load(features_path, mmap_mode="r")
    if array.ndim != 2:
        raise TadkitError(f"expected a (T, D) array, got shape {array.shape}", file=str(features_path), field="shape")
    target = work_dir / f"{features_path.stem}.npy"
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
    duration = info.duration if info.duration is not None else info.num_frames / store.fps
    video = VideoAnnotation(video_id=video_id, subset=DETECT_SUBSET, duration=float(duration), fps=store.fps)
    return _detect_one_video(model, store, video, config, classes, progress)


def _detect_one_video(model: nn.Module, store: Any, video: Any, config: Config, classes: list[str],
                      progress: bool) -> DetectionSet:
    from tadkit.engine.data import build_dataset

    annotations = AnnotationSet(videos={video.video_id: video}, classes=list(classes), source="detect")
    config = Config.from_dict({**config.to_dict(), "data": {**config.to_dict()["data"], "subset_test": DETECT_SUBSET}})
    dataset = build_dataset(config, training=False, progress=False, annotations=annotations, store=store)
    return detect_dataset(model, dataset, config, progress=progress)


def model_input_dim(model: nn.Module) -> int | None:
    """The feature width a model expects (``in_dim`` of its ``config_dict()``), when it says."""
    getter = getattr(model, "config_dict", None)
    value = getter().get("in_dim") if callable(getter) else None
    return int(value) if isinstance(value, (int, float)) else None
