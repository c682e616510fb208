"""W-TALC ``.npy`` annotation directory (ActivityNet v1.2 / THUMOS14 "reduced" as used by W-TALC, 3C-Net...).

Files (one entry per video, same order in all): ``segments.npy`` (list of [s, e] per video),
``labels.npy`` (list of names per video), ``subset.npy``, ``duration.npy``, ``url.npy`` and/or
``videoname.npy``; ``classlist.npy`` gives the class list and order.

Video id: ``v_<youtube id>`` when ``url.npy`` holds YouTube URLs (the id after ``v=``) -- the same
spelling as BSN files and feature file names; bare ActivityNet ids are matched with
:func:`tadkit.data.annotations.normalize_video_id`. Otherwise ``videoname.npy`` is the id.

Pickle safety: these are object arrays, i.e. pickles. They are read with tadkit's restricted
unpickler (:mod:`tadkit.utils.restricted_pickle`), which rebuilds only NumPy arrays and plain data and
refuses any other global, so a payload in ``classlist.npy`` cannot run.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from tadkit.data.formats._common import AnnotationBuilder, parse_label, parse_pair, user_error
from tadkit.data.records import AnnotationSet
from tadkit.errors import TadkitError
from tadkit.utils.restricted_pickle import load_npy

FORMAT = "wtalc"
REQUIRED = ("classlist", "segments", "labels", "subset")
_YOUTUBE_ID = re.compile(r"[?&]v=([A-Za-z0-9_-]+)")


def looks_like_wtalc(path: Path) -> bool:
    return path.is_dir() and all((path / f"{name}.npy").is_file() for name in ("classlist", "segments", "labels"))


def _as_str(value: Any) -> Any:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _load(directory: Path, name: str, required: bool = True) -> np.ndarray | None:
    path = directory / f"{name}.npy"
    if not path.is_file():
        if required:
            raise user_error(f"missing {name}.npy", file=str(directory), field=name)
        return None
    try:
        array = load_npy(path)  # object arrays through the restricted unpickler: a payload cannot run
    except TadkitError as error:
        raise user_error(error.message, file=str(path), field=error.field) from None
    if not isinstance(array, np.ndarray) or array.ndim != 1:
        shape = getattr(array, "shape", type(array).__name__)
        raise user_error(f"expected a 1-D array, got {shape}", file=str(path), field=name)
    return array


def video_ids_from_urls(urls: np.ndarray) -> list[str] | None:
    """``v_<id>`` for each YouTube URL; None if any entry has no ``v=`` id."""
    ids = []
    for url in urls.tolist():
        match = _YOUTUBE_ID.search(str(_as_str(url)))
        if match is None:
            return None
        ids.append("v_" + match.group(1))
    return ids


def read_wtalc(path: str | Path, *, zero_length: str = "keep") -> AnnotationSet:
    directory = Path(path)
    if not directory.is_dir():
        raise user_error("the W-TALC format is a directory of .npy files", file=str(directory))
    arrays = {name: _load(directory, name) for name in REQUIRED}
    for name in ("duration", "url", "videoname"):
        arrays[name] = _load(directory, name, required=False)
    classes = [parse_label(_as_str(c), file=str(directory / "classlist.npy"), video=None, field=f"classlist[{i}]")
               for i, c in enumerate(arrays["classlist"].tolist())]
    if len(set(classes)) != len(classes):
        raise user_error("a class is listed twice", file=str(directory / "classlist.npy"), field="classlist")

    count = len(arrays["segments"])
    for name, array in arrays.items():
        if name != "classlist" and array is not None and len(array) != count:
            raise user_error(f"{len(array)} entries but segments.npy has {count}", file=str(directory / f"{name}.npy"),
                              field=name)
    ids = video_ids_from_urls(arrays["url"]) if arrays["url"] is not None else None
    if ids is None:
        if arrays["videoname"] is None:
            raise user_error("needs url.npy (YouTube URLs) or videoname.npy for video ids", file=str(directory))
        ids = [str(_as_str(v)) for v in arrays["videoname"].tolist()]

    builder = AnnotationBuilder(file=str(directory), format=FORMAT, zero_length=zero_length)
    durations = arrays["duration"].tolist() if arrays["duration"] is not None else [None] * count
    for i, (video, subset, segments, labels, duration) in enumerate(
        zip(ids, arrays["subset"].tolist(), arrays["segments"].tolist(), arrays["labels"].tolist(), durations)
    ):
        subset = _as_str(subset)
        if not isinstance(subset, str) or not subset:
            raise user_error(f"bad subset {subset!r}"[:200], file=str(directory / "subset.npy"), video=video,
                              field=f"subset[{i}]")
        builder.add_video(video, subset, where=f"entry {i}", duration=_duration(duration, directory, video, i))
        segments = segments.tolist() if isinstance(segments, np.ndarray) else segments
        labels = labels.tolist() if isinstance(labels, np.ndarray) else labels
        if not isinstance(segments, list) or not isinstance(labels, list) or len(segments) != len(labels):
            raise user_error("segments and labels must be lists of equal length", file=str(directory), video=video,
                              field=f"segments[{i}]")
        for j, (segment, label) in enumerate(zip(segments, labels)):
            where = f"segments[{i}][{j}]"
            start, end = parse_pair(segment, file=str(directory / "segments.npy"), video=video, field=where)
            label_where = f"labels[{i}][{j}]"
            name = parse_label(_as_str(label), file=str(directory / "labels.npy"), video=video, field=label_where)
            builder.add_segment(video, start, end, name, where=where, label_where=label_where)
    return builder.build(classes=classes)


def _duration(value: Any, directory: Path, video: str, index: int) -> float | None:
    if value is None:
        return None
    if isinstance(value, (bool, bytes, str)) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value <= 0:
        raise user_error(f"duration must be a finite number > 0, got {value!r}"[:200],
                          file=str(directory / "duration.npy"), video=video, field=f"duration[{index}]")
    return float(value)
