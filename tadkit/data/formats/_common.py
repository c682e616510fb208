"""Shared machinery of the annotation readers: value parsing, one vectorized validation pass, assembly.

Every reader parses its file into an :class:`AnnotationBuilder` (videos plus flat segment columns
with a "where" string per row), then :meth:`AnnotationBuilder.build` validates all times at once
with NumPy and produces the :class:`~tadkit.data.records.AnnotationSet`. Errors name the file, the
video and the field, so one malformed row in a 20k-row file is easy to find.
"""

from __future__ import annotations

import csv
import json
import math
import re
from array import array
from dataclasses import dataclass, field
from json.decoder import scanstring
from pathlib import Path
from typing import Any, Iterator, Literal, Sequence

import numpy as np

from tadkit.data.records import AnnotationSet, Segment, VideoAnnotation
from tadkit.errors import TadkitError

ZeroLength = Literal["keep", "drop", "error"]
ZERO_LENGTH_POLICIES: tuple[str, ...] = ("keep", "drop", "error")

AMBIGUOUS = "Ambiguous"  # THUMOS14's "don't care" label; stored in VideoAnnotation.ambiguous

# The 20 THUMOS14 detection classes with their THUMOS (101-class) ids, in detclasslist order.
THUMOS14_CLASS_IDS: dict[str, int] = {
    "BaseballPitch": 7,
    "BasketballDunk": 9,
    "Billiards": 12,
    "CleanAndJerk": 21,
    "CliffDiving": 22,
    "CricketBowling": 23,
    "CricketShot": 24,
    "Diving": 26,
    "FrisbeeCatch": 31,
    "GolfSwing": 33,
    "HammerThrow": 36,
    "HighJump": 40,
    "JavelinThrow": 45,
    "LongJump": 51,
    "PoleVault": 68,
    "Shotput": 79,
    "SoccerPenalty": 85,
    "TennisSwing": 92,
    "ThrowDiscus": 93,
    "VolleyballSpiking": 97,
}


def _one_line(text: str | None) -> str | None:
    """Escape newlines/control characters: the CLI prints every error on exactly one line."""
    if text is None or text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def user_error(message: str, *, file: Any = None, video: str | None = None, field: str | None = None) -> TadkitError:
    """A TadkitError whose parts are safe to print on one line (ids and labels come from user files)."""
    return TadkitError(
        _one_line(message),
        file=_one_line(None if file is None else str(file)),
        video=_one_line(video),
        field=_one_line(field),
    )


# ----------------------------------------------------------------------------------------------
# scalar parsing (JSON values, CSV cells, numpy items)
# ----------------------------------------------------------------------------------------------


def parse_float(value: Any, *, file: str, video: str | None, field: str) -> float:
    """A time or rate given as a number or a numeric string (AFSD's gt json writes strings)."""
    if type(value) is float:  # the common case, kept cheap
        return value
    if isinstance(value, bool) or value is None:
        raise user_error(f"expected a number, got {value!r}", file=file, video=video, field=field)
    if isinstance(value, (int, float, np.integer, np.floating)):
        try:
            return float(value)
        except OverflowError:  # a JSON integer too large for a float
            raise user_error(f"number out of range: {value!r}", file=file, video=video, field=field) from None
    if isinstance(value, (str, bytes)):
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        try:
            return float(text.strip())
        except ValueError:
            raise user_error(f"expected a number, got {text!r}", file=file, video=video, field=field) from None
    raise user_error(
        f"expected a number, got {type(value).__name__} {value!r}"[:200], file=file, video=video, field=field
    )


def parse_optional_positive(value: Any, *, file: str, video: str | None, field: str) -> float | None:
    """Duration / fps: absent (None) is fine; present must be a finite number > 0."""
    if value is None:
        return None
    number = parse_float(value, file=file, video=video, field=field)
    if not math.isfinite(number) or number <= 0:
        raise user_error(f"must be a finite number > 0, got {value!r}", file=file, video=video, field=field)
    return number


def parse_optional_count(value: Any, *, file: str, video: str | None, field: str) -> int | None:
    """Frame counts: absent is fine; present must be a non-negative whole number (10.0 is accepted)."""
    if value is None:
        return None
    number = parse_float(value, file=file, video=video, field=field)
    if not math.isfinite(number) or number < 0 or number != int(number):
        raise user_error(f"must be a whole number >= 0, got {value!r}", file=file, video=video, field=field)
    return int(number)


def parse_label(value: Any, *, file: str, video: str | None, field: str) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str) or not value.strip():
        raise user_error(f"expected a non-empty class name, got {value!r}"[:200], file=file, video=video, field=field)
    return value


def parse_video_id(value: Any, *, file: str, field: str) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str) or not value.strip():
        raise user_error(f"expected a non-empty video id, got {value!r}"[:200], file=file, field=field)
    return value


def parse_pair(value: Any, *, file: str, video: str | None, field: str) -> tuple[float, float]:
    """A ``[start, end]`` pair of numbers (or numeric strings)."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise user_error(f"expected [start, end], got {value!r}"[:200], file=file, video=video, field=field)
    return (
        parse_float(value[0], file=file, video=video, field=field),
        parse_float(value[1], file=file, video=video, field=field),
    )


def check_zero_length_policy(zero_length: str) -> None:
    if zero_length not in ZERO_LENGTH_POLICIES:
        raise user_error(f"zero_length must be one of {', '.join(ZERO_LENGTH_POLICIES)}, got {zero_length!r}")


# ----------------------------------------------------------------------------------------------
# the builder every reader fills
# ----------------------------------------------------------------------------------------------


@dataclass
class AnnotationBuilder:
    """Collects videos and segments; :meth:`build` validates every time in one vectorized pass."""

    file: str
    format: str
    zero_length: str = "keep"
    videos: dict[str, VideoAnnotation] = field(default_factory=dict)
    # Flat segment columns (ambiguous rows have label None); `where` locates each row for errors.
    # Times live in typed arrays (8 bytes a row) and labels are shared str objects, so a file with
    # millions of instances costs little more than its final AnnotationSet.
    _video: list[str] = field(default_factory=list)
    _start: array = field(default_factory=lambda: array("d"))
    _end: array = field(default_factory=lambda: array("d"))
    _label: list[str | None] = field(default_factory=list)
    _labels: dict[str, str] = field(default_factory=dict)
    _where: list[str] = field(default_factory=list)
    _label_where: list[str | None] = field(default_factory=list)
    _video_where: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_zero_length_policy(self.zero_length)

    def add_video(
        self,
        video_id: str,
        subset: str,
        *,
        where: str,
        duration: float | None = None,
        fps: float | None = None,
        num_frames: int | None = None,
        duplicate: Literal["error", "reuse"] = "error",
    ) -> VideoAnnotation:
        """Register a video; a second registration is an error unless rows legitimately repeat it."""
        existing = self.videos.get(video_id)
        if existing is not None:
            if duplicate == "error":
                raise user_error(
                    f"duplicate video id (first defined at {self._video_where[video_id]})",
                    file=self.file,
                    video=video_id,
                    field=where,
                )
            if existing.subset != subset:
                raise user_error(
                    f"video appears in subsets {existing.subset!r} and {subset!r}",
                    file=self.file,
                    video=video_id,
                    field=where,
                )
            return existing
        subset = self._labels.setdefault(subset, subset)  # one str per subset name, not per video
        video = VideoAnnotation(
            video_id=video_id, subset=subset, duration=duration, fps=fps, num_frames=num_frames
        )
        self.videos[video_id] = video
        self._video_where[video_id] = where
        return video

    def add_segment(
        self, video_id: str, start: float, end: float, label: str | None, *, where: str, label_where: str | None = None
    ) -> None:
        """Queue one segment (label None = THUMOS Ambiguous); validated later in :meth:`build`.

        ``where`` locates the times, ``label_where`` the label (defaults to ``where``) in error messages.
        """
        self._video.append(video_id)
        self._start.append(start)
        self._end.append(end)
        self._label.append(label if label is None else self._labels.setdefault(label, label))
        self._where.append(where)
        self._label_where.append(label_where)

    def labels_seen(self) -> set[str]:
        """Class names used by the queued segments (Ambiguous excluded)."""
        return {label for label in self._label if label is not None}

    def _fail(self, index: int, message: str, label: bool = False) -> None:
        where = (self._label_where[index] or self._where[index]) if label else self._where[index]
        raise user_error(message, file=self.file, video=self._video[index], field=where)

    def _validate_times(self) -> np.ndarray:
        """Check all rows at once; return the keep-mask (False only for dropped zero-length rows)."""
        start = np.array(self._start, dtype=np.float64)
        end = np.array(self._end, dtype=np.float64)
        checks = (
            (~np.isfinite(start) | ~np.isfinite(end), "start/end must be finite (got {s!r}, {e!r})"),
            ((start < 0) | (end < 0), "negative time in segment [{s!r}, {e!r}]"),
            (start > end, "reversed segment: start {s!r} > end {e!r}"),
        )
        for bad, message in checks:
            if bad.any():
                i = int(np.argmax(bad))
                self._fail(i, message.format(s=self._start[i], e=self._end[i]))
        zero = start == end
        if zero.any() and self.zero_length == "error":
            i = int(np.argmax(zero))
            self._fail(
                i,
                f"zero-length segment [{self._start[i]!r}, {self._end[i]!r}] (start == end); "
                "use zero_length='keep' (official ActivityNet eval counts it) or 'drop'",
            )
        return ~zero if self.zero_length == "drop" else np.ones(len(start), dtype=bool)

    def build(
        self,
        *,
        classes: Sequence[str] | None = None,
        external_ids: dict[str, int] | None = None,
        version: str = "",
    ) -> AnnotationSet:
        """Validate and assemble. ``classes`` given = the file's own list: unknown labels are errors.

        Without a list the class order is the sorted set of labels that occur (documented rule).
        """
        keep = self._validate_times()
        labels = self._label
        if classes is not None:
            known = set(classes)
            for i, label in enumerate(labels):
                if label is not None and label not in known:
                    self._fail(i, f"label {label!r} is not in the file's class list", label=True)
            class_list = list(classes)
        else:
            class_list = sorted({label for label in labels if label is not None})
        videos = self.videos
        rows = zip(self._video, self._start, self._end, labels, keep.tolist())
        for video_id, start, end, label, kept in rows:
            if not kept:
                continue
            if label is None:
                videos[video_id].ambiguous.append((start, end))
            else:
                videos[video_id].segments.append(Segment(start, end, label))
        return AnnotationSet(
            videos=self.videos,
            classes=class_list,
            source=self.file,
            format=self.format,
            external_ids=dict(external_ids or {}),
            version=version,
        )


# ----------------------------------------------------------------------------------------------
# files
# ----------------------------------------------------------------------------------------------


def read_text(path: Path) -> str:
    """Whole file as text (UTF-8, BOM tolerated); decode/IO problems become TadkitError."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise user_error(f"not UTF-8 text ({error.reason} at byte {error.start})", file=str(path)) from None
    except OSError as error:
        raise user_error(f"cannot read: {error.strerror or error}", file=str(path)) from None


class JsonObject(dict):
    """A JSON object that remembers keys written twice (``json`` silently keeps the last one)."""

    duplicates: list[str]


def _collect_duplicates(pairs: list[tuple[str, Any]]) -> JsonObject:
    obj = JsonObject(pairs)
    obj.duplicates = []
    if len(obj) != len(pairs):  # rare: find which keys repeat
        seen: set[str] = set()
        obj.duplicates = [key for key, _ in pairs if key in seen or seen.add(key)]
    return obj


def load_json(path: Path) -> Any:
    """Parse a JSON file; syntax errors come back as one TadkitError with line and column."""
    return parse_json_text(read_text(path), path)


def parse_json_text(text: str, path: Path) -> Any:
    """:func:`load_json` on text already read (``path`` names the file in errors)."""
    try:
        return json.loads(text, object_pairs_hook=_collect_duplicates)
    except json.JSONDecodeError as error:
        raise user_error(f"malformed JSON: {error.msg} at line {error.lineno} column {error.colno}",
                          file=str(path)) from None
    except RecursionError:
        raise user_error("malformed JSON: nested too deeply", file=str(path)) from None
    except ValueError as error:  # e.g. an integer literal longer than Python's 4300-digit limit
        raise user_error(f"malformed JSON: {error}"[:300], file=str(path)) from None


def duplicate_keys(obj: Any) -> list[str]:
    return list(getattr(obj, "duplicates", []))


@dataclass
class RawJson:
    """A JSON file's text, read but not parsed (large files are streamed, see :func:`stream_json_object`).
    A reader may set ``text`` to None once it no longer needs it, so the memory can be freed."""

    text: str | None


class NotPlainJson(Exception):
    """The text is not a plain JSON object the streaming reader handles; parse it whole instead
    (:func:`parse_json_text` then reports syntax errors exactly as always)."""


_JSON_SPACE = re.compile(r"[ \t\n\r]*")


def stream_json_object(text: str, streamed: str) -> Iterator[tuple[str, Any, bool | None]]:
    """Walk a top-level JSON object without building its whole tree.

    Yields ``(key, value, False)`` for top-level members, except that the object under key
    ``streamed`` yields ``(streamed, None, None)`` and then its members one by one as
    ``(member key, member value, True)``; only one member
    is alive at a time, so the peak memory is the text plus what the caller keeps. Raises
    :class:`NotPlainJson` on anything unusual: a syntax error, a duplicate top-level key or a
    duplicate member key of ``streamed`` (``json`` would keep the last; readers report it), or a
    ``streamed`` value that is not an object.
    """
    decoder = json.JSONDecoder()
    space = lambda i: _JSON_SPACE.match(text, i).end()  # noqa: E731

    def key_at(pos: int) -> tuple[str, int]:
        """A member key at ``pos``; returns it and the position of its value."""
        if text[pos] != '"':
            raise NotPlainJson
        key, pos = scanstring(text, pos + 1)
        pos = space(pos)
        if text[pos] != ":":
            raise NotPlainJson
        return key, space(pos + 1)

    def after_member(pos: int) -> tuple[bool, int]:
        """(more members follow, position of the next key / just past the closing brace)."""
        pos = space(pos)
        if text[pos] == ",":
            return True, space(pos + 1)
        if text[pos] == "}":
            return False, pos + 1
        raise NotPlainJson

    try:
        pos = space(0)
        if text[pos] != "{":
            raise NotPlainJson
        pos = space(pos + 1)
        more = text[pos] != "}"
        pos = pos if more else pos + 1
        seen: set[str] = set()
        while more:
            key, pos = key_at(pos)
            if key in seen:
                raise NotPlainJson
            seen.add(key)
            if key == streamed:
                if text[pos] != "{":
                    raise NotPlainJson
                yield key, None, None  # the streamed object begins
                pos = space(pos + 1)
                inner = text[pos] != "}"
                pos = pos if inner else pos + 1
                names: set[str] = set()
                while inner:
                    name, pos = key_at(pos)
                    if name in names:
                        raise NotPlainJson
                    names.add(name)
                    value, pos = decoder.raw_decode(text, pos)
                    yield name, value, True
                    del value
                    inner, pos = after_member(pos)
            else:
                value, pos = decoder.raw_decode(text, pos)
                yield key, value, False
            more, pos = after_member(pos)
        if space(pos) != len(text):
            raise NotPlainJson
    except (IndexError, ValueError, RecursionError):
        raise NotPlainJson from None


@dataclass
class CsvTable:
    """A CSV file read into header + rows; ``line[i]`` is the 1-based file line of ``rows[i]``."""

    path: Path
    header: list[str]
    rows: list[list[str]]
    line: list[int]

    def column(self, *names: str, required: bool = True) -> int | None:
        """Index of the first header name present (aliases), or None / error when missing."""
        for name in names:
            if name in self.header:
                return self.header.index(name)
        if required:
            raise user_error(
                f"missing column {' or '.join(repr(n) for n in names)} (header: {','.join(self.header)})",
                file=str(self.path),
                field=names[0],
            )
        return None


def read_csv(path: Path) -> CsvTable:
    """Parse a comma-separated file with a header; ragged rows and CSV syntax errors are reported."""
    text = read_text(path)
    reader = csv.reader(text.splitlines())
    try:  # line_num (not the record index) so that quoted multi-line cells keep line numbers right
        numbered = [(reader.line_num, row) for row in reader if "".join(row).strip()]
    except csv.Error as error:
        raise user_error(f"malformed CSV at line {reader.line_num}: {error}", file=str(path)) from None
    if not numbered:
        raise user_error("empty CSV file (no header)", file=str(path))
    header = [cell.strip() for cell in numbered[0][1]]
    rows, lines = [], []
    for line_no, row in numbered[1:]:
        if len(row) != len(header):
            raise user_error(
                f"line {line_no} has {len(row)} fields, the header has {len(header)}",
                file=str(path),
                field=f"line {line_no}",
            )
        joined = "".join(row)
        # strip cells only when there is whitespace to strip (most rows have none; this is the hot loop)
        rows.append([cell.strip() for cell in row] if joined != "".join(joined.split()) else row)
        lines.append(line_no)
    return CsvTable(path=path, header=header, rows=rows, line=lines)


_CLASS_LINE = re.compile(r"^\s*(-?\d+)\s+(\S(?:.*\S)?)\s*$")


def read_class_index(path: Path) -> tuple[list[str], dict[str, int]]:
    """THUMOS ``detclasslist.txt`` / ``Class Index_Detection.txt``: ``<id> <name>`` per line.

    Returns classes in file order and {name: id}. Duplicated names or ids are errors.
    """
    classes: list[str] = []
    ids: dict[str, int] = {}
    seen_ids: set[int] = set()
    for line_no, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        match = _CLASS_LINE.match(line)
        if match is None:
            raise user_error(f"line {line_no}: expected '<id> <class name>', got {line.strip()!r}"[:200],
                              file=str(path), field=f"line {line_no}")
        class_id, name = int(match.group(1)), match.group(2)
        if name in ids or class_id in seen_ids:
            raise user_error(f"line {line_no}: duplicate class {name!r} / id {class_id}",
                              file=str(path), field=f"line {line_no}")
        classes.append(name)
        ids[name] = class_id
        seen_ids.add(class_id)
    if not classes:
        raise user_error("class list is empty", file=str(path))
    return classes, ids


_SUBSET_TOKEN = re.compile(r"(?:^|[^a-z])(validation|val|testing|test|training|train)(?:[^a-z]|$)")


def subset_from_name(name: str) -> str | None:
    """Subset token in a file name, as written there (``val_Annotation.csv`` -> ``val``)."""
    match = _SUBSET_TOKEN.search(name.lower())
    if match is None:
        return None
    start, end = match.span(1)
    return name[start:end]


@dataclass(slots=True)  # not frozen: frozen __init__ is ~3x slower and BSN has 19k rows
class VideoMeta:
    """Per-video facts from a video-info CSV (any may be unknown)."""

    duration: float | None = None
    fps: float | None = None
    num_frames: int | None = None
    subset: str | None = None  # BSN's video_info_new.csv is where ActivityNet subsets live


def read_video_info(path: Path) -> dict[str, VideoMeta]:
    """Video-info CSV -> {video: VideoMeta}.

    Accepted columns (aliases cover the AFSD ``*_video_info.csv`` and BSN ``video_info_new.csv``
    forms): ``video``; duration ``duration``/``seconds``; frame rate ``rfps`` (BSN's measured rate)
    or ``fps``; frame count ``count``/``numFrame``/``num_frames``; optional ``subset``. Without a
    duration column the duration is ``count / fps`` (AFSD).
    """
    table = read_csv(path)
    file = str(path)
    c_video = table.column("video", "video-name", "video_id")
    c_duration = table.column("duration", "seconds", "video-duration", required=False)
    c_fps = table.column("rfps", "fps", "frame-rate", required=False)
    c_count = table.column("count", "numFrame", "num_frames", "video-frames", required=False)
    c_subset = table.column("subset", required=False)
    if c_duration is None and (c_fps is None or c_count is None):
        raise user_error(
            "needs a duration column (duration/seconds) or both fps and count columns", file=file, field="header"
        )
    videos = [parse_video_id(row[c_video], file=file, field=f"line {n} video")
              for row, n in zip(table.rows, table.line)]
    first_line: dict[str, int] = {}
    for video, line_no in zip(videos, table.line):
        if first_line.setdefault(video, line_no) != line_no:
            raise user_error(f"duplicate video row (first at line {first_line[video]})",
                              file=file, video=video, field=f"line {line_no}")
    fps = _numeric_column(table, c_fps, videos, kind="positive")
    count = _numeric_column(table, c_count, videos, kind="count")
    if c_duration is not None:
        duration = _numeric_column(table, c_duration, videos, kind="positive")
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            duration = np.where(count > 0, count / fps, np.nan)
    subsets = [None] * len(videos) if c_subset is None else [row[c_subset] or None for row in table.rows]
    return {
        video: VideoMeta(
            duration=None if math.isnan(d) else d,
            fps=None if math.isnan(f) else f,
            num_frames=None if math.isnan(c) else int(c),
            subset=subset,
        )
        for video, d, f, c, subset in zip(videos, duration.tolist(), fps.tolist(), count.tolist(), subsets)
    }


def _numeric_column(table: CsvTable, column: int | None, videos: list[str], kind: str) -> np.ndarray:
    """A whole CSV column as float64 (empty cell / absent column = NaN = unknown), checked at once."""
    if column is None:
        return np.full(len(videos), np.nan)
    cells = [row[column] for row in table.rows]
    name = table.header[column]
    try:
        values = np.array([c if c else "nan" for c in cells], dtype=np.float64)
    except ValueError:  # slow path: parse cell by cell so the message names the offending one
        values = np.array([
            parse_float(cell, file=str(table.path), video=video, field=f"line {line_no} {name}") if cell else math.nan
            for cell, video, line_no in zip(cells, videos, table.line)
        ], dtype=np.float64)
    known = np.array([bool(c) for c in cells], dtype=bool)
    if kind == "positive":
        bad = known & ~(np.isfinite(values) & (values > 0))
        rule = "a finite number > 0"
    else:
        bad = known & ~(np.isfinite(values) & (values >= 0) & (values == np.floor(values)))
        rule = "a whole number >= 0"
    if bad.any():
        i = int(np.argmax(bad))
        raise user_error(f"must be {rule}, got {cells[i]!r}", file=str(table.path), video=videos[i],
                          field=f"line {table.line[i]} {name}")
    return values


def apply_video_info(builder: AnnotationBuilder, info: dict[str, VideoMeta]) -> None:
    """Fill duration/fps/num_frames of the builder's videos from a video-info table (extra rows ignored)."""
    for video_id, video in builder.videos.items():
        meta = info.get(video_id)
        if meta is None:
            continue
        video.duration = meta.duration if meta.duration is not None else video.duration
        video.fps = meta.fps if meta.fps is not None else video.fps
        video.num_frames = meta.num_frames if meta.num_frames is not None else video.num_frames
