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
from pathlib import Path
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


DATA_PATH_WHAT = {"annotations": "annotation file or directory", "features": "feature directory",
                  "frames": "frame directory (`tadkit data frames`)"}


def check_data_path(config: Config, key: str) -> None:
    """``data.<key>`` is set and exists, or one TadkitError saying which ``--set`` to add."""
    value = getattr(config.data, key)
    what = DATA_PATH_WHAT.get(key, "path")
    if value is None:
        raise TadkitError(f"no {what} given: add --set data.{key}=PATH (this config leaves it unset)",
                          file=config.source, field=f"data.{key}")
    if not Path(value).exists():
        raise TadkitError(f"{what} {value} does not exist: add --set data.{key}=PATH with your data (a path in a "
                          "config is relative to the config file, one given with --set to the current directory)",
                          file=config.source, field=f"data.{key}")


def _load(config: Config):
    """Annotations and the store the method reads: features, or decoded frames for data kind ``frames``."""
    from tadkit.data.annotations import load_annotations

    data = config.data
    frames = bool(config.model.name) and method_of(config).data_kind == "frames"
    for key in ("annotations", "frames" if frames else "features"):
        check_data_path(config, key)
    annotations = load_annotations(data.annotations, data.annotation_format, video_info=data.video_info,
                                   zero_length=data.zero_length)
    from tadkit.data.ids import check_video_id

    for video_id in annotations.videos:  # every id becomes a file name (features, frames, plots)
        check_video_id(video_id, file=annotations.source or data.annotations)
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
    if store.max_frames != data.frame_max_frames:
        have = f"at most {store.max_frames} frames per video" if store.max_frames else f"{store.fps:g} fps"
        raise TadkitError(f"the frames are {have}, the config says data.frame_max_frames {data.frame_max_frames} "
                          "(`tadkit data frames --max-frames N` makes the ActivityNet kind)",
                          file=str(store.manifest), field="data.frame_max_frames")
    if (store.fps is not None and abs(store.fps - data.frame_fps) > 1e-6) or tuple(store.size) != (data.frame_size, data.frame_size):
        raise TadkitError(f"the frames are {store.fps or 'per-video'} fps {store.size[0]}x{store.size[1]}, the config "
                          f"says data.frame_fps {data.frame_fps:g} / data.frame_size {data.frame_size}",
                          file=str(store.manifest), field="data.frame_fps")
    return FrameClipDataset(annotations, store, subset=data.subset_train if training else data.subset_test,
                            clip_length=data.window, stride=data.stride_train if training else data.stride_test,
                            crop=data.crop_size, training=training, contrastive=data.contrastive,
                            clip_plan=data.clip_plan)


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


VAL_SUBSET = "tadkit_heldout_val"  # subset name given to the videos data.val_fraction holds out


def validation_split(annotations, config: Config):
    """``data.val_fraction``: the annotations with a seeded share of the training videos moved to
    subset :data:`VAL_SUBSET` (by video). Candidates are the training-subset videos that are not in
    the test subset(s), in id order; ``round(fraction x count)`` of them (at least 1, at most all
    but one) are drawn with ``numpy.random.default_rng(data.val_seed)``, so every training seed of
    one config holds out the same videos. Without ``val_fraction`` the annotations are returned as is.
    """
    import dataclasses

    import numpy as np

    data = config.data
    if data.val_fraction is None:
        return annotations
    test_ids = set(annotations.subset(data.subset_test).videos)
    candidates = sorted(v for v in annotations.subset(data.subset_train).videos if v not in test_ids)
    if len(candidates) < 2:
        raise TadkitError(f"needs at least 2 training videos outside the test subset, found {len(candidates)}",
                          file=config.source, field="data.val_fraction")
    count = min(max(1, int(round(data.val_fraction * len(candidates)))), len(candidates) - 1)
    rng = np.random.default_rng(data.val_seed)
    held_out = {candidates[i] for i in rng.choice(len(candidates), size=count, replace=False)}
    videos = {vid: dataclasses.replace(v, subset=VAL_SUBSET) if vid in held_out else v
              for vid, v in annotations.videos.items()}
    return annotations.with_videos(videos)


def validation_config(config: Config) -> Config:
    """A copy of ``config`` whose test subset is the held-out validation split (for evaluation)."""
    copy = Config.from_dict(config.to_dict())
    copy.data.subset_test = VAL_SUBSET
    copy.source = config.source
    return copy


def build_validation_dataset(config: Config, progress: bool = False):
    """The test-style dataset (windows / videos / clips, no augmentation) of the held-out split."""
    annotations, store = _load(config)
    return build_dataset(validation_config(config), training=False, progress=progress,
                         annotations=validation_split(annotations, config), store=store)


def build_train_data(config: Config) -> TrainData:
    """``build_datasets_fn`` of :func:`tadkit.engine.train`: the method's training set and collate
    (without the ``data.val_fraction`` videos)."""
    spec = method_of(config)
    annotations, store = _load(config)
    annotations = validation_split(annotations, config)
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
    "VAL_SUBSET",
    "TrainData",
    "build_dataset",
    "build_train_data",
    "build_validation_dataset",
    "build_frame_dataset",
    "build_video_dataset",
    "build_window_dataset",
    "collate_fn_for",
    "dataset_classes",
    "fps_table",
    "method_of",
    "skipped_videos",
    "scan_feature_values",
    "validation_config",
    "validation_split",
]
