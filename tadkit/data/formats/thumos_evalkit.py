"""THUMOS14 official evalkit annotation directory.

One file per class and subset, ``<Class>_<subset>.txt`` with lines ``video_test_0000324  49.2 53.5``
(seconds), plus ``Ambiguous_<subset>.txt`` and ``detclasslist.txt`` (``7 BaseballPitch``: THUMOS ids).
The path may also be a parent whose sub-directories are such directories (``evalkit/{test,val}``).

Segments of a video are kept grouped by class in class-list order and, within a class, in file
order: the official MATLAB scorer matches ground truth in that order. Videos are sorted by id.
Durations are unknown (None) unless a video-info CSV is passed.
"""

from __future__ import annotations

import re
from pathlib import Path

from tadkit.data.formats._common import (
    AMBIGUOUS,
    THUMOS14_CLASS_IDS,
    AnnotationBuilder,
    apply_video_info,
    parse_float,
    read_class_index,
    read_text,
    read_video_info,
    user_error,
)
from tadkit.data.records import AnnotationSet
from tadkit.errors import TadkitError

FORMAT = "thumos-evalkit"
CLASS_LIST_NAME = "detclasslist.txt"
_CLASS_FILE = re.compile(r"^(?P<label>.+)_(?P<subset>[A-Za-z]+)\.txt$")


def class_files(directory: Path) -> list[tuple[str, str, Path]]:
    """(label, subset, path) for every ``<Class>_<subset>.txt`` in ``directory`` (sorted by name)."""
    found = []
    for path in sorted(directory.iterdir()):
        if not path.is_file() or path.name == CLASS_LIST_NAME:
            continue
        match = _CLASS_FILE.match(path.name)
        if match:
            found.append((match.group("label"), match.group("subset"), path))
    return found


def evalkit_directories(path: Path) -> list[Path]:
    """``path`` itself when it holds class files, else its sub-directories that do (sorted)."""
    try:
        if class_files(path):
            return [path]
        return [sub for sub in sorted(path.iterdir()) if sub.is_dir() and class_files(sub)]
    except OSError as error:
        raise user_error(f"cannot list directory: {error.strerror or error}", file=str(path)) from None


def looks_like_evalkit(path: Path) -> bool:
    if not path.is_dir():
        return False
    try:
        directories = evalkit_directories(path)
    except TadkitError:
        return False
    # A THUMOS evalkit directory has a class list, or an Ambiguous file, or names like <Class>_test.txt.
    return any(
        (d / CLASS_LIST_NAME).is_file() or any(label == AMBIGUOUS for label, _, _ in class_files(d))
        for d in directories
    )


def read_thumos_evalkit(
    path: str | Path, *, zero_length: str = "keep", video_info: str | Path | None = None
) -> AnnotationSet:
    path = Path(path)
    if not path.is_dir():
        raise user_error("expected a directory of <Class>_<subset>.txt files", file=str(path))
    directories = evalkit_directories(path)
    if not directories:
        raise user_error("no <Class>_<subset>.txt files found here or in sub-directories", file=str(path))

    classes, external_ids = _class_list(directories)
    order = {name: i for i, name in enumerate(classes)}
    seen_pairs: dict[tuple[str, str], Path] = {}
    rows: list[tuple[str, float, float, str, str, str]] = []  # video, start, end, label, subset, where
    for directory in directories:
        files = class_files(directory)
        files.sort(key=lambda item: (item[1], order.get(item[0], len(order)), item[0]))
        for label, subset, file_path in files:
            if label != AMBIGUOUS and label not in order:
                raise user_error(f"class {label!r} is not in {CLASS_LIST_NAME}", file=str(file_path), field="label")
            other = seen_pairs.setdefault((label, subset.lower()), file_path)
            if other != file_path:  # the same <Class>_<subset> twice would double-count instances
                raise user_error(f"{label}_{subset} is also defined in {other}", file=str(file_path), field="label")
            rows.extend(_read_class_file(file_path, label, subset))

    builder = AnnotationBuilder(file=str(path), format=FORMAT, zero_length=zero_length)
    first: dict[str, tuple[str, str]] = {}  # video -> (subset, where first seen)
    for video, _, _, _, subset, where in rows:
        known_subset, known_where = first.setdefault(video, (subset, where))
        if known_subset != subset:
            raise user_error(f"video is in subset {known_subset!r} ({known_where}) and {subset!r}",
                              file=str(path), video=video, field=where)
    for video in sorted(first):  # THUMOS scoring walks videos in sorted name order
        builder.add_video(video, first[video][0], where=first[video][1])
    for video, start, end, label, _, where in rows:
        builder.add_segment(video, start, end, None if label == AMBIGUOUS else label, where=where)
    if video_info is not None:
        apply_video_info(builder, read_video_info(Path(video_info)))
    return builder.build(classes=classes, external_ids=external_ids, version="THUMOS14 evalkit")


def _class_list(directories: list[Path]) -> tuple[list[str], dict[str, int]]:
    """detclasslist.txt (identical in every directory), else the class-file names.

    Without a list, classes are sorted by name and THUMOS14 ids are filled in when every class is
    one of the 20 THUMOS14 detection classes.
    """
    lists = [read_class_index(d / CLASS_LIST_NAME) for d in directories if (d / CLASS_LIST_NAME).is_file()]
    for other, directory in zip(lists[1:], directories[1:]):
        if other != lists[0]:
            raise user_error(f"{CLASS_LIST_NAME} differs from the one in {directories[0]}",
                              file=str(directory / CLASS_LIST_NAME))
    if lists:
        return lists[0]
    names = sorted({label for d in directories for label, _, _ in class_files(d) if label != AMBIGUOUS})
    ids = {n: THUMOS14_CLASS_IDS[n] for n in names} if set(names) <= set(THUMOS14_CLASS_IDS) else {}
    return names, ids


def _read_class_file(path: Path, label: str, subset: str) -> list[tuple[str, float, float, str, str, str]]:
    file = str(path)
    rows = []
    for line_no, line in enumerate(read_text(path).splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        where = f"line {line_no}"
        if len(parts) != 3:
            raise user_error(f"expected '<video> <start> <end>', got {line.strip()!r}"[:200], file=file,
                              video=parts[0], field=where)
        video = parts[0]
        start = parse_float(parts[1], file=file, video=video, field=f"{where} start")
        end = parse_float(parts[2], file=file, video=video, field=f"{where} end")
        rows.append((video, start, end, label, subset, f"{path.name} {where}"))
    return rows
