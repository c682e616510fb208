"""THUMOS14 annotation CSVs: the AFSD form and the BSN/G-TAD ``thumos14_*_groundtruth.csv`` form.

AFSD: ``video,type,type_idx,start,end,startFrame,endFrame`` (seconds; ``type_idx`` = THUMOS id;
type ``Ambiguous`` -> ``VideoAnnotation.ambiguous``), with an optional sibling
``<prefix>_video_info.csv`` (``video,fps,sample_fps,count,sample_count``) giving fps, frame count
and duration = count / fps.

BSN/G-TAD: ``video-name,t-init,t-end,f-init,f-end,video-duration,frame-rate,video-frames,label-idx``
where ``label-idx`` is a 0-based index into the class list and -1 means Ambiguous.

The subset is the ``val``/``test``/``train`` token of the file name as written there, else ``unknown``.
"""

from __future__ import annotations

import math
from pathlib import Path

from tadkit.data.formats._common import (
    AMBIGUOUS,
    THUMOS14_CLASS_IDS,
    AnnotationBuilder,
    CsvTable,
    apply_video_info,
    parse_float,
    parse_label,
    parse_optional_count,
    parse_optional_positive,
    parse_video_id,
    read_class_index,
    read_csv,
    read_video_info,
    subset_from_name,
    user_error,
)
from tadkit.data.records import AnnotationSet

FORMAT = "afsd-csv"
UNKNOWN_SUBSET = "unknown"
CLASS_INDEX_NAMES = ("Class Index_Detection.txt", "detclasslist.txt")
AFSD_COLUMNS = ("video", "type", "start", "end")
GTAD_COLUMNS = ("video-name", "t-init", "t-end", "label-idx")


def csv_kind(header: list[str]) -> str | None:
    """'afsd' / 'gtad' for the two known headers, else None."""
    if all(name in header for name in AFSD_COLUMNS):
        return "afsd"
    if all(name in header for name in GTAD_COLUMNS):
        return "gtad"
    return None


def sibling_video_info(path: Path) -> Path | None:
    """``val_Annotation_ours.csv`` -> ``val_video_info.csv`` in the same directory, if it exists."""
    if "_Annotation" not in path.name:
        return None
    candidate = path.with_name(path.name.split("_Annotation")[0] + "_video_info.csv")
    return candidate if candidate.is_file() else None


def sibling_class_index(path: Path) -> Path | None:
    for name in CLASS_INDEX_NAMES:
        candidate = path.with_name(name)
        if candidate.is_file():
            return candidate
    return None


def read_afsd_csv(
    path: str | Path, *, zero_length: str = "keep", video_info: str | Path | None = None
) -> AnnotationSet:
    path = Path(path)
    table = read_csv(path)
    kind = csv_kind(table.header)
    if kind is None:
        raise user_error(
            f"unknown CSV header {','.join(table.header)!r}; expected AFSD ({','.join(AFSD_COLUMNS)},...) "
            f"or BSN/G-TAD ({','.join(GTAD_COLUMNS)},...)",
            file=str(path),
            field="header",
        )
    subset = subset_from_name(path.stem) or UNKNOWN_SUBSET
    builder = AnnotationBuilder(file=str(path), format=FORMAT, zero_length=zero_length)
    if kind == "afsd":
        classes, external_ids = _read_afsd_rows(table, builder, subset)
    else:
        classes, external_ids = _read_gtad_rows(table, builder, subset)
    info_path = Path(video_info) if video_info is not None else sibling_video_info(path)
    if info_path is not None:
        apply_video_info(builder, read_video_info(info_path))
    return builder.build(classes=classes, external_ids=external_ids)


def _read_afsd_rows(table: CsvTable, builder: AnnotationBuilder, subset: str) -> tuple[list[str], dict[str, int]]:
    file = str(table.path)
    c_video, c_type, c_start, c_end = (table.column(name) for name in AFSD_COLUMNS)
    c_idx = table.column("type_idx", required=False)
    label_ids: dict[str, int] = {}  # label -> THUMOS id as the rows give it
    label_line: dict[str, int] = {}
    for row, line_no in zip(table.rows, table.line):
        where = f"line {line_no}"
        video = parse_video_id(row[c_video], file=file, field=f"{where} video")
        label = parse_label(row[c_type], file=file, video=video, field=f"{where} type")
        start = parse_float(row[c_start], file=file, video=video, field=f"{where} start")
        end = parse_float(row[c_end], file=file, video=video, field=f"{where} end")
        builder.add_video(video, subset, where=where, duplicate="reuse")
        builder.add_segment(video, start, end, None if label == AMBIGUOUS else label, where=where,
                            label_where=f"{where} type")
        if c_idx is None or label == AMBIGUOUS:
            continue
        class_id = parse_optional_count(row[c_idx], file=file, video=video, field=f"{where} type_idx")
        previous = label_ids.setdefault(label, class_id)
        label_line.setdefault(label, line_no)
        if previous != class_id:
            raise user_error(f"{label!r} has type_idx {class_id} here but {previous} at line {label_line[label]}",
                              file=file, video=video, field=f"{where} type_idx")

    index_path = sibling_class_index(table.path)
    if index_path is not None:
        classes, ids = read_class_index(index_path)
        for label, class_id in label_ids.items():
            if label in ids and ids[label] != class_id:
                raise user_error(f"{label!r} has type_idx {class_id} but id {ids[label]} in {index_path.name}",
                                  file=file, field=f"line {label_line[label]} type_idx")
        return classes, ids
    if c_idx is None:
        names = sorted(builder.labels_seen())
        ids = {n: THUMOS14_CLASS_IDS[n] for n in names} if set(names) <= set(THUMOS14_CLASS_IDS) else {}
        return names, ids
    by_id: dict[int, str] = {}
    for label, class_id in label_ids.items():
        other = by_id.setdefault(class_id, label)
        if other != label:
            raise user_error(f"type_idx {class_id} is used by both {other!r} and {label!r}", file=file,
                              field=f"line {label_line[label]} type_idx")
    classes = sorted(label_ids, key=lambda name: (label_ids[name], name))  # THUMOS id order = detclasslist order
    return classes, dict(label_ids)


def _read_gtad_rows(table: CsvTable, builder: AnnotationBuilder, subset: str) -> tuple[list[str], dict[str, int]]:
    file = str(table.path)
    index_path = sibling_class_index(table.path)
    if index_path is not None:
        classes, ids = read_class_index(index_path)
    else:  # label-idx alone has no names: this form is THUMOS14-only in BSN/G-TAD
        classes, ids = list(THUMOS14_CLASS_IDS), dict(THUMOS14_CLASS_IDS)
    c_video, c_start, c_end, c_label = (table.column(name) for name in GTAD_COLUMNS)
    c_duration = table.column("video-duration", required=False)
    c_fps = table.column("frame-rate", required=False)
    c_frames = table.column("video-frames", required=False)
    for row, line_no in zip(table.rows, table.line):
        where = f"line {line_no}"
        video = parse_video_id(row[c_video], file=file, field=f"{where} video-name")
        start = parse_float(row[c_start], file=file, video=video, field=f"{where} t-init")
        end = parse_float(row[c_end], file=file, video=video, field=f"{where} t-end")
        index = parse_float(row[c_label], file=file, video=video, field=f"{where} label-idx")
        if not (math.isfinite(index) and index == int(index) and -1 <= index < len(classes)):
            raise user_error(f"label-idx must be -1 (Ambiguous) or 0..{len(classes) - 1}, got {row[c_label]!r}",
                              file=file, video=video, field=f"{where} label-idx")
        duration = None if c_duration is None else parse_optional_positive(
            row[c_duration], file=file, video=video, field=f"{where} video-duration")
        fps = None if c_fps is None else parse_optional_positive(
            row[c_fps], file=file, video=video, field=f"{where} frame-rate")
        frames = None if c_frames is None else parse_optional_count(
            row[c_frames], file=file, video=video, field=f"{where} video-frames")
        entry = builder.add_video(video, subset, where=where, duration=duration, fps=fps, num_frames=frames,
                                  duplicate="reuse")
        if (entry.duration, entry.fps, entry.num_frames) != (duration, fps, frames):
            raise user_error("video-duration/frame-rate/video-frames differ from the video's earlier rows",
                              file=file, video=video, field=where)
        label = None if index < 0 else classes[int(index)]
        builder.add_segment(video, start, end, label, where=where)
    return classes, ids
