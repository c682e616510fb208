"""Datasets from a config's ``data`` section, by the method's data kind (``MethodSpec.data_kind``).

* ``windows``: :class:`tadkit.data.dataset.WindowDataset` (sliding windows or whole-video
  resampling, segment targets), batched with :func:`tadkit.data.windows.collate_windows`;
* ``videos``: :class:`tadkit.data.dataset.VideoDataset` (whole videos resampled to
  ``data.resample_length``, video-level labels only), batched with ``collate_videos``;
* ``frames``: clips of decoded frames (end-to-end methods) from ``data.frames``,
  :class:`tadkit.data.frames.FrameClipDataset`, batched with ``collate_clips``.

The engine calls :func:`build_train_data` / :func:`build_dataset` and never names a method.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from tadkit.engine.config import Config
from tadkit.errors import TadkitError


@dataclass
class TrainData:
    """What ``build_datasets_fn(config)`` returns: the training set, how to batch it, its classes."""

    train: Any  # torch Dataset
    collate_fn: Callable[[list[Any]], dict[str, Any]] | None = None  # None: collate_windows
    classes: list[str] | None = None  # class names stored in checkpoints (None: the dataset's own)
    skipped: "SkippedVideos | None" = None  # videos of the training subset the dataset left out


@dataclass
class SkippedVideos:
    """Videos a dataset left out (too few features for the method); every command reports them the same way."""

    subset: str
    ids: list[str]
    reason: str

    SHOWN = 20  # ids listed in a message; the JSON report has them all

    def message(self, consequence: str) -> str:
        shown = ", ".join(self.ids[: self.SHOWN])
        more = f", ... ({len(self.ids) - self.SHOWN} more)" if len(self.ids) > self.SHOWN else ""
        return (f"skipped {len(self.ids)} video(s) of subset {self.subset!r} with {self.reason}: "
                f"{shown}{more}; {consequence}")

    def to_dict(self) -> dict[str, Any]:
        return {"subset": self.subset, "count": len(self.ids), "ids": list(self.ids), "reason": self.reason}


def skipped_videos(dataset: Any, subset: str) -> SkippedVideos | None:
    """The videos ``dataset`` skipped (its ``skipped`` ids; ``min_features`` says why), or None."""
    ids = [str(v) for v in (getattr(dataset, "skipped", None) or ())]
    if not ids:
        return None
    min_features = getattr(dataset, "min_features", None)
    reason = (f"fewer than {min_features} features (data.min_features)" if min_features is not None
              else "too few features for the method")
    return SkippedVideos(subset, ids, reason)


def method_of(config: Config):
    """The :class:`tadkit.methods.MethodSpec` of ``config.model.name``."""
    from tadkit.methods import available_methods, get_method

    if not config.model.name:
        raise TadkitError(f"set model.name to a method: one of {', '.join(available_methods())}",
                          file=config.source, field="model.name")
    return get_method(config.model.name, file=config.source)


def fps_table(name: str | None) -> Callable[[str], float | None] | None:
    """The per-video fps function a ``data.fps_table`` name stands for."""
    if name is None:
        return None
    from tadkit.data.features import fps_table_by_name

    try:
        return fps_table_by_name(name)
    except TadkitError as error:
        raise TadkitError(error.message, field="data.fps_table") from None


def _load(config: Config):
    """Annotations and the store the method reads: features, or decoded frames for data kind ``frames``."""
    from tadkit.data.annotations import load_annotations

    data = config.data
    frames = bool(config.model.name) and method_of(config).data_kind == "frames"
    for key in ("annotations", "frames" if frames else "features"):
        if getattr(data, key) is None:
            raise TadkitError(f"set data.{key} in the config or with --set data.{key}=PATH",
                              file=config.source, field=f"data.{key}")
    annotations = load_annotations(data.annotations, data.annotation_format, video_info=data.video_info,
                                   zero_length=data.zero_length)
    if frames:
        from tadkit.data.frames import FrameStore

        return annotations, FrameStore(data.frames, stream=data.stream)
    from tadkit.data.features import FeatureStore

    store = FeatureStore(data.features, fps_table=fps_table(data.fps_table))
    return annotations, store


AGNOSTIC_CLASS = "action"


def class_agnostic(annotations):
    """``data.class_agnostic``: every segment relabelled :data:`AGNOSTIC_CLASS`, one class in all (the
    official ActivityNet proposal models of AFSD and A2Net; test labels come from ``test.video_classifier``)."""
    import dataclasses

    from tadkit.data.records import AnnotationSet

    videos = {vid: dataclasses.replace(v, segments=[dataclasses.replace(s, label=AGNOSTIC_CLASS) for s in v.segments])
              for vid, v in annotations.videos.items()}
    return AnnotationSet(videos=videos, classes=[AGNOSTIC_CLASS], source=annotations.source, format=annotations.format,
                         version=annotations.version)


def build_window_dataset(config: Config, training: bool, progress: bool = True, annotations=None, store=None):
    """The :class:`tadkit.data.dataset.WindowDataset` of the train (``training``) or test subset."""
    from tadkit.data.dataset import WindowDataset

    if annotations is None or store is None:
        annotations, store = _load(config)
    dataset = WindowDataset(annotations, store, **config.data.window_dataset_kwargs(training), progress=progress)
    scan_feature_values(dataset, progress)
    return dataset


def build_frame_dataset(config: Config, training: bool, progress: bool = True, annotations=None, store=None):
    """The :class:`tadkit.data.frames.FrameClipDataset` of the train or test subset (lengths in frames)."""
    from tadkit.data.frames import FrameClipDataset

    if annotations is None or store is None:
        annotations, store = _load(config)
    data = config.data
    if abs(store.fps - data.frame_fps) > 1e-6 or tuple(store.size) != (data.frame_size, data.frame_size):
        raise TadkitError(f"the frames are {store.fps:g} fps {store.size[0]}x{store.size[1]}, the config says "
                          f"data.frame_fps {data.frame_fps:g} / data.frame_size {data.frame_size}",
                          file=str(store.manifest), field="data.frame_fps")
    return FrameClipDataset(annotations, store, subset=data.subset_train if training else data.subset_test,
                            clip_length=data.window, stride=data.stride_train if training else data.stride_test,
                            crop=data.crop_size, training=training, contrastive=data.contrastive)


def build_video_dataset(config: Config, training: bool, progress: bool = True, annotations=None, store=None):
    """The :class:`tadkit.data.dataset.VideoDataset` (whole videos, video-level labels)."""
    import inspect

    from tadkit.data.dataset import VideoDataset

    if getattr(config.data, "feature_subsample", 1) != 1:
        raise TadkitError("feature_subsample applies to window datasets; whole-video methods resample each "
                          "video to data.resample_length instead", file=config.source, field="data.feature_subsample")
    if annotations is None or store is None:
        annotations, store = _load(config)
    data = config.data
    kwargs: dict[str, Any] = {
        "subset": data.subset_train if training else data.subset_test,
        "length": data.resample_length,
        "resample_mode": data.resample_mode,
        "training": training,
        "time_base": data.time_base,
        "min_features": data.min_features,
        "progress": progress,
    }
    accepted = inspect.signature(VideoDataset).parameters
    dataset = VideoDataset(annotations, store, **{k: v for k, v in kwargs.items() if k in accepted})
    scan_feature_values(dataset, progress)
    return dataset


def scan_feature_values(dataset: Any, progress: bool = True) -> None:
    """NaN/Inf check of every video a dataset reads (``FeatureStore.scan_values``: chunked,
    memory-mapped, the verdict cached per file), so bad features fail before training or inference."""
    scan = getattr(getattr(dataset, "store", None), "scan_values", None)
    if scan is None:
        return
    skipped = set(getattr(dataset, "skipped", None) or ())
    scan([v for v in dataset.annotations.videos if v not in skipped], progress=progress)


def build_dataset(config: Config, training: bool, progress: bool = True, annotations=None, store=None):
    """The dataset of the method's data kind for the train or test subset."""
    kind = method_of(config).data_kind
    if training and getattr(config.data, "class_agnostic", False):
        if annotations is None or store is None:
            annotations, store = _load(config)
        annotations = class_agnostic(annotations)
    if kind == "windows":
        return build_window_dataset(config, training, progress, annotations, store)
    if kind == "videos":
        return build_video_dataset(config, training, progress, annotations, store)
    if kind == "frames":
        return build_frame_dataset(config, training, progress, annotations, store)
    raise TadkitError(f"data kind {kind!r} (method {config.model.name!r}) has no dataset builder in this "
                      "version of tadkit", file=config.source, field="model.name")


def collate_fn_for(kind: str) -> Callable[[list[Any]], dict[str, Any]]:
    if kind == "frames":
        from tadkit.data.frames import collate_clips

        return collate_clips
    if kind == "videos":
        from tadkit.data.dataset import collate_videos

        return collate_videos
    from tadkit.data.windows import collate_windows

    return collate_windows


def dataset_classes(dataset: Any) -> list[str]:
    """Class names of a dataset (``.classes`` or ``.annotations.classes``); [] when it has none."""
    classes = getattr(dataset, "classes", None)
    if classes is None:
        classes = getattr(getattr(dataset, "annotations", None), "classes", None)
    return [str(c) for c in (classes or [])]


class _Transformed:
    """A training set with the method's ``train_transform`` applied to every sample."""

    def __init__(self, dataset: Any, transform: Callable[[Any], Any]) -> None:
        self.dataset, self.transform = dataset, transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        return self.transform(self.dataset[index])

    def __getattr__(self, name: str) -> Any:  # annotations, classes, ... of the wrapped dataset
        return getattr(self.dataset, name)


def build_train_data(config: Config) -> TrainData:
    """``build_datasets_fn`` of :func:`tadkit.engine.train`: the method's training set and collate."""
    spec = method_of(config)
    annotations, store = _load(config)
    dataset = build_dataset(config, training=True, annotations=annotations, store=store)
    train_cfg = config.train
    if train_cfg.eval_every or train_cfg.eval_epochs or train_cfg.best_metric:  # evaluation reads the test
        # subset after the first epoch: its features are checked now, not after an epoch of training
        if hasattr(store, "scan_values"):
            store.scan_values(list(annotations.subset(config.data.subset_test).videos), progress=False)
    classes = dataset_classes(dataset)
    if not classes:
        raise TadkitError("the training set has no class list (checkpoints store it for detection)",
                          file=config.data.annotations, field="classes")
    skipped = skipped_videos(dataset, config.data.subset_train)
    transform = spec.transform()
    if transform is not None:
        dataset = _Transformed(dataset, transform)
    return TrainData(dataset, collate_fn_for(spec.data_kind), classes, skipped)


__all__ = [
    "SkippedVideos",
    "TrainData",
    "build_dataset",
    "build_train_data",
    "build_frame_dataset",
    "build_video_dataset",
    "build_window_dataset",
    "collate_fn_for",
    "dataset_classes",
    "fps_table",
    "method_of",
    "skipped_videos",
    "scan_feature_values",
]
