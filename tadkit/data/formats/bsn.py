"""BSN/BMN ActivityNet v1.3 annotations: ``anet_anno_action.json`` + ``video_info_new.csv``.

``anet_anno_action.json`` maps ``v_<youtube id>`` to ``{"duration_second", "duration_frame",
"annotations": [{"segment", "label"}], "feature_frame"}``; it has no subsets. Those come from the
``subset`` column of ``video_info_new.csv`` (``video,numFrame,seconds,fps,rfps,subset,featureFrame``)
found beside it (or passed as ``video_info``). ``action_name.csv`` beside it, when present, is the
class list (order kept; unknown labels become errors). fps = ``rfps`` (the measured rate: numFrame /
seconds), since BSN's ``fps`` column is a rounded nominal value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tadkit.data.formats._common import (
    AnnotationBuilder,
    duplicate_keys,
    load_json,
    parse_label,
    parse_optional_count,
    parse_optional_positive,
    parse_pair,
    read_csv,
    read_video_info,
    user_error,
)
from tadkit.data.records import AnnotationSet

FORMAT = "bsn"
ANNOTATION_NAME = "anet_anno_action.json"
VIDEO_INFO_NAME = "video_info_new.csv"
CLASS_LIST_NAME = "action_name.csv"


def looks_like_bsn(data: Any) -> bool:
    """A JSON object of video entries carrying BSN's ``duration_second``/``duration_frame`` fields."""
    if not isinstance(data, dict) or "database" in data or not data:
        return False
    first = next(iter(data.values()))
    return isinstance(first, dict) and "annotations" in first and (
        "duration_second" in first or "duration_frame" in first
    )


def read_bsn(
    path: str | Path, *, zero_length: str = "keep", video_info: str | Path | None = None, data: Any = None
) -> AnnotationSet:
    path = Path(path)
    if path.is_dir():
        path = path / ANNOTATION_NAME
        if not path.is_file():
            raise user_error(f"no {ANNOTATION_NAME} in this directory", file=str(path.parent))
    file = str(path)
    info_path = Path(video_info) if video_info is not None else path.with_name(VIDEO_INFO_NAME)
    if not info_path.is_file():
        raise user_error(
            f"BSN annotations carry no subsets; need {VIDEO_INFO_NAME} beside the file (or pass video_info)",
            file=file,
        )
    info = read_video_info(info_path)
    classes = _read_class_list(path.with_name(CLASS_LIST_NAME))

    if data is None:
        data = load_json(path)
    if not isinstance(data, dict):
        raise user_error(f"expected a JSON object {{video: entry}}, got {type(data).__name__}", file=file)
    duplicates = duplicate_keys(data)
    if duplicates:
        raise user_error("duplicate video id", file=file, video=duplicates[0], field="<top level>")

    builder = AnnotationBuilder(file=file, format=FORMAT, zero_length=zero_length)
    for video_id, entry in data.items():
        if not isinstance(entry, dict):
            raise user_error("video entry must be an object", file=file, video=video_id, field="<top level>")
        meta = info.get(video_id)
        if meta is None or not meta.subset:
            raise user_error(f"video has no subset in {info_path.name}", file=file, video=video_id, field="subset")
        duration = parse_optional_positive(entry.get("duration_second"), file=file, video=video_id,
                                           field="duration_second")
        frames = parse_optional_count(entry.get("duration_frame"), file=file, video=video_id, field="duration_frame")
        builder.add_video(
            video_id,
            meta.subset,
            where="<top level>",
            duration=duration if duration is not None else meta.duration,
            fps=meta.fps,
            num_frames=meta.num_frames if meta.num_frames is not None else frames,
        )
        annotations = entry.get("annotations")
        if not isinstance(annotations, list):
            raise user_error("'annotations' missing or not a list", file=file, video=video_id, field="annotations")
        for i, annotation in enumerate(annotations):
            where = f"annotations[{i}]"
            if not isinstance(annotation, dict) or "segment" not in annotation or "label" not in annotation:
                raise user_error("annotation needs 'segment' and 'label'", file=file, video=video_id, field=where)
            start, end = parse_pair(annotation["segment"], file=file, video=video_id, field=f"{where}.segment")
            label = parse_label(annotation["label"], file=file, video=video_id, field=f"{where}.label")
            builder.add_segment(video_id, start, end, label, where=f"{where}.segment", label_where=f"{where}.label")
    return builder.build(classes=classes, version="ActivityNet v1.3 (BSN)")


def _read_class_list(path: Path) -> list[str] | None:
    """``action_name.csv``: header ``action`` then one class name per row."""
    if not path.is_file():
        return None
    table = read_csv(path)
    column = table.column("action")
    names = [row[column] for row in table.rows]
    for name, line_no in zip(names, table.line):
        if not name:
            raise user_error("empty class name", file=str(path), field=f"line {line_no}")
    if len(set(names)) != len(names):
        raise user_error("a class is listed twice", file=str(path), field="action")
    return names
