"""Datasets from a config's ``data`` section: the default ``build_datasets_fn`` of ``tadkit train``.

``data.annotations`` (any format :func:`tadkit.data.annotations.load_annotations` reads) +
``data.features`` (a feature directory with ``features.json``) -> :class:`WindowDataset` for the
train or test subset, batched with :func:`collate_windows`.
"""

from __future__ import annotations

from typing import Callable

from tadkit.engine.config import Config
from tadkit.engine.trainer import TrainData
from tadkit.errors import TadkitError


def fps_table(name: str | None) -> Callable[[str], float | None] | None:
    """The per-video fps function a ``data.fps_table`` name stands for."""
    if name is None:
        return None
    from tadkit.data.features import a2net_thumos_fps

    tables = {"a2net_thumos": a2net_thumos_fps}
    if name not in tables:
        raise TadkitError(f"unknown fps table {name!r}; choose from {', '.join(tables)}", field="data.fps_table")
    return tables[name]


def build_window_dataset(config: Config, training: bool, progress: bool = True):
    """The :class:`tadkit.data.dataset.WindowDataset` of the train (``training``) or test subset."""
    from tadkit.data.annotations import load_annotations
    from tadkit.data.dataset import WindowDataset
    from tadkit.data.features import FeatureStore

    data = config.data
    for key in ("annotations", "features"):
        if getattr(data, key) is None:
            raise TadkitError(f"set data.{key} in the config or with --set data.{key}=PATH",
                              file=config.source, field=f"data.{key}")
    annotations = load_annotations(data.annotations, data.annotation_format, video_info=data.video_info,
                                   zero_length=data.zero_length)
    store = FeatureStore(data.features, fps_table=fps_table(data.fps_table))
    return WindowDataset(annotations, store, **data.window_dataset_kwargs(training), progress=progress)


def build_train_data(config: Config) -> TrainData:
    """``build_datasets_fn`` for :func:`tadkit.engine.train`: training windows + ``collate_windows``."""
    from tadkit.data.windows import collate_windows

    return TrainData(build_window_dataset(config, training=True), collate_windows)


__all__ = ["build_train_data", "build_window_dataset", "fps_table"]
