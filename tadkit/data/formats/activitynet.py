"""ActivityNet-style JSON (official, ActionFormer, AFSD/ECM ``thumos_gt.json``) and tadkit JSON.

Official layout::

    {"version": ..., "taxonomy": [...], "database": {vid: {"subset", "duration", "url",
        "annotations": [{"segment": [s, e], "label": name}, ...]}}}

tadkit JSON is a superset: per video optional ``fps``, ``num_frames``, ``ambiguous: [[s, e], ...]``;
top level optional ``classes`` (ordered list, makes unknown labels an error) and ``external_ids``
({label: int}). Unknown keys (``taxonomy``, ``url``, ActionFormer's ``label_id``, ...) are ignored.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from tadkit.data.formats._common import (
    AnnotationBuilder,
    NotPlainJson,
    RawJson,
    duplicate_keys,
    parse_json_text,
    read_text,
    stream_json_object,
    parse_label,
    parse_optional_count,
    parse_optional_positive,
    parse_pair,
    user_error,
)
from tadkit.data.records import AnnotationSet
from tadkit.errors import TadkitError
from tadkit.utils.io import write_json

FORMAT = "activitynet"
TADKIT_JSON_VERSION = 1


def read_activitynet(path: str | Path, *, zero_length: str = "keep", data: Any = None) -> AnnotationSet:
    """Read an ActivityNet-family JSON file (``data`` = already-parsed content, to avoid parsing twice,
    or a :class:`RawJson` with the text already read).

    The ``database`` object is streamed one video at a time (:func:`stream_json_object`), so the
    whole JSON tree of a large file never exists at once. Any irregularity (or any error) makes the
    reader parse the document whole and report exactly what it always reported.
    """
    path = Path(path)
    file = str(path)
    if data is None or isinstance(data, RawJson):
        box = [read_text(path) if data is None or data.text is None else data.text]
        if data is not None:
            data.text = None  # the streaming pass drops the text before building (it is ~1/3 of the peak)
        streamed = _read_streamed(box, file, zero_length)
        if streamed is not None:
            return streamed
        data = parse_json_text(read_text(path), path)
    if not isinstance(data, dict):
        raise user_error(f"expected a JSON object with a 'database' field, got {type(data).__name__}", file=file)
    database = data.get("database")
    if not isinstance(database, dict):
        raise user_error("missing or non-object 'database' field", file=file, field="database")
    duplicates = duplicate_keys(database)
    if duplicates:
        raise user_error("duplicate video id in 'database'", file=file, video=duplicates[0], field="database")

    version = data.get("version", "")
    version = "" if version is None else str(version)
    classes = _read_classes(data.get("classes"), file)
    external_ids = _read_external_ids(data.get("external_ids"), classes, file)

    builder = AnnotationBuilder(file=file, format=FORMAT, zero_length=zero_length)
    for video_id, entry in database.items():
        _read_video(builder, video_id, entry, file)
    return builder.build(classes=classes, external_ids=external_ids, version=version)


def _read_streamed(box: list[str], file: str, zero_length: str) -> AnnotationSet | None:
    """The streaming path of :func:`read_activitynet` (``box`` holds the text, taken out here so
    it can be freed before the build); None = use the whole-document path."""
    top: dict[str, Any] = {}
    builder = AnnotationBuilder(file=file, format=FORMAT, zero_length=zero_length)
    text = box.pop()
    key = value = None
    try:
        for key, value, member in stream_json_object(text, "database"):
            if member:
                _read_video(builder, key, value, file)
            elif member is None:
                top[key] = {}
            else:
                top[key] = value
        del text, key, value
        if "database" not in top:
            return None
        version = top.get("version", "")
        version = "" if version is None else str(version)
        classes = _read_classes(top.get("classes"), file)
        external_ids = _read_external_ids(top.get("external_ids"), classes, file)
        return builder.build(classes=classes, external_ids=external_ids, version=version)
    except (NotPlainJson, TadkitError):
        return None  # the whole-document path reports the problem, in the usual order


def looks_like_activitynet(text: str) -> bool | None:
    """True when the top-level JSON object has a ``database`` member (found without parsing it);
    None when the text is not a plain object (then parse it whole to find out)."""
    try:
        for key, _, member in stream_json_object(text, "database"):
            if member is None:
                return True
    except NotPlainJson:
        return None
    return False


def _read_classes(value: Any, file: str) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(c, str) and c.strip() for c in value):
        raise user_error("'classes' must be a list of non-empty class names", file=file, field="classes")
    if len(set(value)) != len(value):
        repeated = next(c for c in value if value.count(c) > 1)
        raise user_error(f"class {repeated!r} listed twice", file=file, field="classes")
    return list(value)


def _read_external_ids(value: Any, classes: list[str] | None, file: str) -> dict[str, int]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise user_error("'external_ids' must be an object {label: int}", file=file, field="external_ids")
    out: dict[str, int] = {}
    for label, ext in value.items():
        if isinstance(ext, bool) or not isinstance(ext, int):
            raise user_error(f"id of {label!r} must be an integer, got {ext!r}"[:200], file=file,
                              field=f"external_ids.{label}")
        if classes is not None and label not in classes:
            raise user_error(f"label {label!r} is not in 'classes'", file=file, field=f"external_ids.{label}")
        out[label] = ext
    return out


_WHERE: list[tuple[str, str, str]] = []


def _where(i: int) -> tuple[str, str, str]:
    """``annotations[i]`` and its ``.segment`` / ``.label`` fields: one shared str per index, not per row."""
    while len(_WHERE) <= i:
        k = len(_WHERE)
        _WHERE.append((f"annotations[{k}]", f"annotations[{k}].segment", f"annotations[{k}].label"))
    return _WHERE[i]


def _read_video(builder: AnnotationBuilder, video_id: str, entry: Any, file: str) -> None:
    if not video_id.strip():
        raise user_error("empty video id", file=file, field="database")
    if not isinstance(entry, dict):
        raise user_error(f"video entry must be an object, got {type(entry).__name__}", file=file,
                          video=video_id, field="database")
    subset = entry.get("subset")
    if not isinstance(subset, str) or not subset.strip():
        what = "missing" if subset is None else f"must be a non-empty string, got {subset!r}"[:120]
        raise user_error(f"'subset' {what}", file=file, video=video_id, field="subset")
    duration = parse_optional_positive(entry.get("duration"), file=file, video=video_id, field="duration")
    fps = parse_optional_positive(entry.get("fps"), file=file, video=video_id, field="fps")
    num_frames = parse_optional_count(entry.get("num_frames"), file=file, video=video_id, field="num_frames")
    builder.add_video(video_id, subset, where="database", duration=duration, fps=fps, num_frames=num_frames)

    annotations = entry.get("annotations")
    if not isinstance(annotations, list):
        what = "missing" if annotations is None else "must be a list"
        raise user_error(f"'annotations' {what}", file=file, video=video_id, field="annotations")
    for i, annotation in enumerate(annotations):
        where, seg_where, label_where = _where(i)
        if not isinstance(annotation, dict):
            raise user_error("annotation must be an object", file=file, video=video_id, field=where)
        if "segment" not in annotation:
            raise user_error("missing 'segment'", file=file, video=video_id, field=seg_where)
        if "label" not in annotation:
            raise user_error("missing 'label'", file=file, video=video_id, field=label_where)
        start, end = parse_pair(annotation["segment"], file=file, video=video_id, field=seg_where)
        label = parse_label(annotation["label"], file=file, video=video_id, field=label_where)
        builder.add_segment(video_id, start, end, label, where=seg_where, label_where=label_where)

    ambiguous = entry.get("ambiguous", [])
    if not isinstance(ambiguous, list):
        raise user_error("'ambiguous' must be a list of [start, end]", file=file, video=video_id, field="ambiguous")
    for i, pair in enumerate(ambiguous):
        start, end = parse_pair(pair, file=file, video=video_id, field=f"ambiguous[{i}]")
        builder.add_segment(video_id, start, end, None, where=f"ambiguous[{i}]")


# ----------------------------------------------------------------------------------------------
# writer
# ----------------------------------------------------------------------------------------------


def tadkit_json_dict(aset: AnnotationSet) -> dict[str, Any]:
    """The tadkit JSON document for ``aset`` (validated so that :func:`read_activitynet` accepts it)."""
    _check_writable(aset)
    database: dict[str, Any] = {}
    for video_id, video in aset.videos.items():
        entry: dict[str, Any] = {"subset": video.subset}
        if video.duration is not None:
            entry["duration"] = float(video.duration)
        if video.fps is not None:
            entry["fps"] = float(video.fps)
        if video.num_frames is not None:
            entry["num_frames"] = int(video.num_frames)
        # label_id (0-based index into "classes") keeps the file usable by ActionFormer-style loaders.
        entry["annotations"] = [
            {"segment": [float(s.start), float(s.end)], "label": s.label, "label_id": aset.class_index(s.label)}
            for s in video.segments
        ]
        if video.ambiguous:
            entry["ambiguous"] = [[float(s), float(e)] for s, e in video.ambiguous]
        database[video_id] = entry
    document: dict[str, Any] = {
        "version": aset.version,
        "tadkit_json": TADKIT_JSON_VERSION,
        "classes": list(aset.classes),
    }
    if aset.external_ids:
        document["external_ids"] = {k: int(v) for k, v in aset.external_ids.items()}
    document["database"] = database
    return document


def write_tadkit_json(aset: AnnotationSet, path: str | Path, indent: int | None = None) -> None:
    """Write ``aset`` as tadkit JSON, atomically (temp file + rename)."""
    write_json(path, tadkit_json_dict(aset), indent=indent)


def _check_writable(aset: AnnotationSet) -> None:
    """Refuse sets the reader would reject, so a written file always reads back (NaN, unknown labels...)."""
    where = aset.source or "<annotation set>"
    if len(set(aset.classes)) != len(aset.classes):
        raise user_error("class list has duplicates", file=where, field="classes")
    for video_id, video in aset.videos.items():
        if not video.subset:
            raise user_error("empty subset", file=where, video=video_id, field="subset")
        for name, value in (("duration", video.duration), ("fps", video.fps)):
            if value is not None and not (math.isfinite(value) and value > 0):
                raise user_error(f"{name} must be finite and > 0, got {value!r}", file=where, video=video_id,
                                  field=name)
        times = np.array([[s.start, s.end] for s in video.segments] + list(video.ambiguous),
                         dtype=np.float64).reshape(-1, 2)
        bad = ~np.isfinite(times).all(axis=1) | (times[:, 0] < 0) | (times[:, 0] > times[:, 1])
        if bad.any():
            raise user_error(f"invalid segment {times[int(np.argmax(bad))].tolist()}", file=where, video=video_id,
                              field="segments")
        for segment in video.segments:
            if not aset.has_class(segment.label):
                raise user_error(f"label {segment.label!r} is not in the class list", file=where, video=video_id,
                                  field="segments.label")
