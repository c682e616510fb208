"""Reading and writing detection files.

Formats (``format=None`` picks one from the extension, then from the content):

``activitynet``  JSON ``{"results": {video: [{"segment": [s, e], "label": str, "score": float}]}}``
                 (the official submission format; ``version``/``external_data`` are optional here).
``thumos``       text, one detection per line: ``video start end class_id score`` (seconds,
                 whitespace separated; the THUMOS14 evalkit's ``TH14evalDet.m`` input). Class ids
                 are mapped to names with ``class_ids`` (e.g. ``AnnotationSet.external_ids``);
                 unmapped ids become the label ``"<id>"`` and show up as unknown labels in reports.
``csv``          header ``video,start,end,label,score`` (any column order, extra columns ignored).

Every problem (missing file, bad JSON, non-numeric or non-finite value) raises one
:class:`TadkitError` naming the file, the video and the field (and the line for text formats).
Degenerate segments (end <= start) are read as they are, because both official evaluators score
them (see :mod:`tadkit.evaluation.detection`); ``strict=True`` makes a reversed one (end < start)
an error naming the file, video and line.
"""

from __future__ import annotations

import csv
import json
import math
import os
from array import array
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from tadkit.data.formats._common import NotPlainJson, stream_json_object
from tadkit.data.records import DetectionSet
from tadkit.errors import TadkitError
from tadkit.utils.io import atomic_open

PREDICTION_FORMATS = ("activitynet", "thumos", "csv")
CSV_COLUMNS = ("video", "start", "end", "label", "score")


def thumos14_detection_ids() -> dict[str, int]:
    """The 20 THUMOS14 detection classes -> their ids in the 101-class list (detclasslist.txt);
    the default class map for THUMOS txt files. Kept where the annotation readers define it."""
    from tadkit.data.formats._common import THUMOS14_CLASS_IDS

    return dict(THUMOS14_CLASS_IDS)


# ----------------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------------
def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise TadkitError("prediction file not found", file=str(path)) from None
    except IsADirectoryError:
        raise TadkitError("expected a prediction file, got a directory", file=str(path)) from None
    except UnicodeDecodeError:
        raise TadkitError("prediction file is not UTF-8 text", file=str(path)) from None
    except OSError as error:
        raise TadkitError(f"cannot read prediction file ({error.strerror})", file=str(path)) from None


def detect_prediction_format(path: str | os.PathLike, text: str | None = None) -> str:
    """``activitynet`` / ``thumos`` / ``csv`` from the extension, else from the first characters."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        return "activitynet"
    if suffix == ".csv":
        return "csv"
    if text is None:
        text = _read_text(path)
    head = text.lstrip()
    if head.startswith("{"):
        return "activitynet"
    first = head.splitlines()[0] if head else ""
    if "," in first and "video" in first.lower():
        return "csv"
    return "thumos"


def _finite(value: Any, file: str, video: str | None, field: str, where: str = "") -> float:
    """float(value) for numbers and numeric strings; anything else (or NaN/inf) is an error."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TadkitError(f"{where}expected a number, got {type(value).__name__}", file=file, video=video, field=field)
    try:
        number = float(value)
    except ValueError:
        raise TadkitError(f"{where}not a number: {value!r}", file=file, video=video, field=field) from None
    if not math.isfinite(number):
        raise TadkitError(f"{where}value must be finite, got {value!r}", file=file, video=video, field=field)
    return number


def _check_segment(start: float, end: float, file: str, video: str, where: str = "", strict: bool = True) -> None:
    if strict and end < start:
        raise TadkitError(f"{where}segment end {end} is before its start {start} (strict mode)", file=file,
                          video=video, field="segment")


class _Columns:
    """Detections accumulated column-wise: typed arrays for numbers, one shared str per distinct
    video / label (a code per row), so memory stays near 40 bytes per detection."""

    def __init__(self) -> None:
        self.video_code: dict[str, int] = {}
        self.label_code: dict[str, int] = {}
        self.video = array("q")
        self.label = array("q")
        self.start = array("d")
        self.end = array("d")
        self.score = array("d")

    def add(self, video: str, start: float, end: float, label: str, score: float) -> None:
        self.video.append(self.video_code.setdefault(video, len(self.video_code)))
        self.label.append(self.label_code.setdefault(label, len(self.label_code)))
        self.start.append(start)
        self.end.append(end)
        self.score.append(score)

    def build(self) -> DetectionSet:
        def strings(codes: array, table: dict[str, int]) -> np.ndarray:
            names = np.empty(len(table), dtype=object)
            names[:] = list(table)
            return names[np.array(codes, dtype=np.int64)] if len(codes) else np.zeros(0, dtype=object)

        return DetectionSet(strings(self.video, self.video_code), np.array(self.start, np.float64),
                            np.array(self.end, np.float64), strings(self.label, self.label_code),
                            np.array(self.score, np.float64))


def _add_activitynet_video(cols: _Columns, video: str, items: Any, file: str, strict: bool,
                           require_label: bool = True) -> None:
    if not isinstance(items, list):
        raise TadkitError("expected a list of detections", file=file, video=video, field="results")
    for k, item in enumerate(items):
        where = f"detection {k}: "
        if not isinstance(item, dict):
            raise TadkitError(f"{where}expected an object", file=file, video=video, field="results")
        for key in ("segment", "label", "score"):
            if key not in item and (require_label or key != "label"):
                raise TadkitError(f"{where}missing key", file=file, video=video, field=key)
        seg = item["segment"]
        if not isinstance(seg, (list, tuple)) or len(seg) != 2:
            raise TadkitError(f"{where}segment must be [start, end]", file=file, video=video, field="segment")
        start = _finite(seg[0], file, video, "segment", where)
        end = _finite(seg[1], file, video, "segment", where)
        _check_segment(start, end, file, video, where, strict)
        label = item.get("label", "proposal")  # official proposal files have no label
        if isinstance(label, bool) or not isinstance(label, (str, int)):
            raise TadkitError(f"{where}label must be a string", file=file, video=video, field="label")
        cols.add(video, start, end, str(label), _finite(item["score"], file, video, "score", where))


def _stream_results(text: str) -> Iterator[tuple[str, Any]]:
    """(video, detections) of the top-level ``"results"`` object, one video parsed at a time.

    Never holds the whole JSON tree (that tree is ~10x the file size for 1M detections). Raises
    :class:`NotPlainJson` for anything unusual (syntax error, duplicate keys, no/odd ``results``), so
    the caller can fall back to ``json.loads`` and report exactly what it always reported.
    """
    found = False
    for key, value, member in stream_json_object(text, "results"):
        if member is None:  # the "results" object begins
            found = True
        elif member:
            yield key, value
    if not found:
        raise NotPlainJson


def read_activitynet_json(path: str | os.PathLike, text: str | None = None, strict: bool = False,
                          require_label: bool = True) -> DetectionSet:
    """Official ActivityNet results JSON -> DetectionSet (videos in file order, then list order).

    ``require_label=False`` also reads the official proposal format (items without ``label``;
    they get the label ``"proposal"``)."""
    path = Path(path)
    file = str(path)
    text = _read_text(path) if text is None else text
    cols = _Columns()
    try:
        for video, items in _stream_results(text):
            _add_activitynet_video(cols, video, items, file, strict, require_label)
        return cols.build()
    except (NotPlainJson, TadkitError):
        pass  # parse the whole document: reports a syntax error before a bad detection, as always
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise TadkitError(f"invalid JSON ({error.msg} at line {error.lineno})", file=file) from None
    except RecursionError:
        raise TadkitError("invalid JSON (nested too deeply)", file=file) from None
    if not isinstance(data, dict) or "results" not in data:
        raise TadkitError('expected an object with a "results" key', file=file, field="results")
    results = data["results"]
    if not isinstance(results, dict):
        raise TadkitError('"results" must map video ids to lists of detections', file=file, field="results")
    cols = _Columns()
    for video, items in results.items():
        _add_activitynet_video(cols, video, items, file, strict, require_label)
    return cols.build()


def _id_to_name(class_ids: Mapping | None) -> dict[int, str]:
    """Accepts {name: id} (``AnnotationSet.external_ids``) or {id: name}."""
    if class_ids is None:
        class_ids = thumos14_detection_ids()
    out: dict[int, str] = {}
    for key, value in class_ids.items():
        if isinstance(key, str) and isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            out[int(value)] = key
        elif isinstance(key, (int, np.integer)) and isinstance(value, str):
            out[int(key)] = value
        else:
            raise TadkitError("class_ids must map names to integer ids (or ids to names)", field="class_ids")
    return out


_CHUNK = 1 << 20  # characters per block of lines: bounds the per-line objects alive at once


def _line_blocks(text: str) -> Iterator[str]:
    """``text`` in blocks of about 1 MB that end right after a ``\\n`` (or at the end of the text)."""
    pos, n = 0, len(text)
    while pos < n:
        cut = text.find("\n", min(pos + _CHUNK, n) - 1)
        cut = n if cut < 0 else cut + 1
        yield text[pos:cut]
        pos = cut


def _iter_lines(text: str) -> Iterator[str]:
    """``text.splitlines()`` without the list of every line (same lines: blocks end after a \\n)."""
    for block in _line_blocks(text):
        yield from block.splitlines()


def _iter_csv_lines(text: str) -> Iterator[str]:
    """The lines ``io.StringIO(text)`` gives (split after ``\\n`` only), block by block."""
    for block in _line_blocks(text):
        parts = block.split("\n")
        last = parts.pop()
        for part in parts:
            yield part + "\n"
        if last:
            yield last


def read_thumos_txt(path: str | os.PathLike, class_ids: Mapping | None = None, text: str | None = None,
                    strict: bool = False) -> DetectionSet:
    """``video start end class_id score`` lines -> DetectionSet (file order kept)."""
    path = Path(path)
    file = str(path)
    text = _read_text(path) if text is None else text
    id_to_name = _id_to_name(class_ids)
    cols = _Columns()
    for lineno, line in enumerate(_iter_lines(text), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"line {lineno}: "
        if len(fields) != 5:
            raise TadkitError(f"{where}expected 5 fields 'video start end class_id score', got {len(fields)}",
                              file=file, video=fields[0], field="line")
        video = fields[0]
        start = _finite(fields[1], file, video, "start", where)
        end = _finite(fields[2], file, video, "end", where)
        _check_segment(start, end, file, video, where, strict)
        try:
            class_id = int(fields[3])
        except ValueError:
            raise TadkitError(f"{where}class id must be an integer, got {fields[3]!r}", file=file, video=video,
                              field="class_id") from None
        score = _finite(fields[4], file, video, "score", where)
        cols.add(video, start, end, id_to_name.get(class_id, str(class_id)), score)
    return cols.build()


def read_predictions_csv(path: str | os.PathLike, text: str | None = None, strict: bool = False) -> DetectionSet:
    """CSV with header ``video,start,end,label,score`` -> DetectionSet."""
    path = Path(path)
    file = str(path)
    text = _read_text(path) if text is None else text
    rows = csv.reader(_iter_csv_lines(text))
    try:
        first = next(rows, None)
    except csv.Error as error:
        raise TadkitError(f"malformed CSV ({error})", file=file) from None
    if first is None:
        raise TadkitError(f"empty CSV; expected the header {','.join(CSV_COLUMNS)}", file=file)
    header = [h.strip().lower() for h in first]
    missing = [c for c in CSV_COLUMNS if c not in header]
    cols = _Columns()
    try:
        if missing:
            raise TadkitError(f"CSV header lacks {', '.join(missing)} (need {','.join(CSV_COLUMNS)})", file=file,
                              field=missing[0])
        col = {c: header.index(c) for c in CSV_COLUMNS}
        for lineno, row in enumerate(rows, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            where = f"line {lineno}: "
            if len(row) < len(header):
                raise TadkitError(f"{where}expected {len(header)} columns, got {len(row)}", file=file,
                                  video=row[col["video"]] if len(row) > col["video"] else None, field="line")
            video = row[col["video"]].strip()
            if not video:
                raise TadkitError(f"{where}empty video id", file=file, field="video")
            start = _finite(row[col["start"]].strip(), file, video, "start", where)
            end = _finite(row[col["end"]].strip(), file, video, "end", where)
            _check_segment(start, end, file, video, where, strict)
            label = row[col["label"]].strip()
            cols.add(video, start, end, label, _finite(row[col["score"]].strip(), file, video, "score", where))
    except csv.Error as error:
        raise TadkitError(f"malformed CSV ({error})", file=file) from None
    except TadkitError:
        try:  # a malformed CSV further down is reported first, as when the file was read whole
            for _ in rows:
                pass
        except csv.Error as error:
            raise TadkitError(f"malformed CSV ({error})", file=file) from None
        raise
    return cols.build()


def load_predictions(
    path: str | os.PathLike, format: str | None = None, class_ids: Mapping | None = None, strict: bool = False,
    require_label: bool = True,
) -> DetectionSet:
    """Read a detection file (see the module doc for formats); ``class_ids`` is for THUMOS txt.

    ``strict``: a reversed segment (end < start) is an error instead of a detection the
    evaluators score as the official codes do.
    """
    path = Path(path)
    if format is not None and format not in PREDICTION_FORMATS:
        raise TadkitError(f"unknown prediction format {format!r}; choose {', '.join(PREDICTION_FORMATS)}",
                          file=str(path), field="format")
    text = _read_text(path)
    if not text.strip():  # one rule for every format: an empty file is a failed export, not "no detections"
        raise TadkitError("prediction file is empty (zero detections are written as {\"results\": {}} in JSON or "
                          "a header-only CSV)", file=str(path))
    format = format or detect_prediction_format(path, text)
    if format == "activitynet":
        return read_activitynet_json(path, text=text, strict=strict, require_label=require_label)
    if format == "csv":
        return read_predictions_csv(path, text=text, strict=strict)
    return read_thumos_txt(path, class_ids=class_ids, text=text, strict=strict)


# ----------------------------------------------------------------------------------------------
# writing (atomic: a reader never sees half a file)
# ----------------------------------------------------------------------------------------------
def _num(x: float) -> str:
    """Shortest text that reads back to the same float, never in exponent form (MATLAB-safe)."""
    return np.format_float_positional(float(x), unique=True, trim="-")


def activitynet_json_dict(dets: DetectionSet, version: str = "VERSION 1.3") -> dict:
    """The official submission structure (videos in first-appearance order)."""
    results: dict[str, list] = {}
    for v, s, e, lab, sc in zip(dets.video.tolist(), dets.start.tolist(), dets.end.tolist(), dets.label.tolist(),
                                dets.score.tolist()):
        results.setdefault(str(v), []).append({"label": str(lab), "score": float(sc), "segment": [float(s), float(e)]})
    return {"version": version, "results": results, "external_data": {"used": False, "details": ""}}


def write_activitynet_json(dets: DetectionSet, path: str | os.PathLike) -> None:
    """Official ActivityNet results JSON (floats written exactly; reads back bit-identical)."""
    with atomic_open(path, "w", encoding="utf-8") as handle:
        json.dump(activitynet_json_dict(dets), handle)


def write_thumos_txt(
    dets: DetectionSet, path: str | os.PathLike, external_ids: Mapping[str, int] | None = None
) -> None:
    """THUMOS14 evalkit detection file; ``external_ids`` maps labels to THUMOS ids (default: the
    20 detection classes). A label without an id is an error (the file would be unusable)."""
    ids = dict(thumos14_detection_ids() if external_ids is None else external_ids)
    labels = dets.label.tolist()
    missing = sorted({str(lab) for lab in labels if lab not in ids})
    if missing:
        raise TadkitError(f"no THUMOS class id for label(s) {', '.join(missing[:5])}", file=str(path), field="label")
    lines = [
        f"{v}\t{_num(s)}\t{_num(e)}\t{int(ids[lab])}\t{_num(sc)}\n"
        for v, s, e, lab, sc in zip(dets.video.tolist(), dets.start.tolist(), dets.end.tolist(), labels,
                                    dets.score.tolist())
    ]
    with atomic_open(path, "w", encoding="utf-8") as handle:
        handle.writelines(lines)
