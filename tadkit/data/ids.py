"""The one check that a video id may become a file name.

Video ids come from files tadkit did not make: annotations, frame indexes, feature releases, video
file names, timeline files. Every place that turns an id into a path (feature store, frame store,
sidecars, plots, imports, extraction, synthetic data) goes through :func:`check_video_id`, so an id
can neither leave its folder nor replace a file tadkit keeps beside the per-video files.

Refused: the empty id, ``.`` and ``..``, path separators (``/`` and ``\\``, so no absolute path
either), NUL (C libraries such as FFmpeg stop at it and would write another video's file), a leading
``.`` (hidden files: tadkit's own temp files, locks and caches), names longer than a file system
allows, and the names of the files tadkit writes beside per-video files (:data:`RESERVED_VIDEO_IDS`,
compared without case, as on case-insensitive file systems).

(Matching foreign spellings of ids onto ground-truth ids is :mod:`tadkit.evaluation.ids`.)
"""

from __future__ import annotations

import os

from tadkit.errors import TadkitError

# Stems of what tadkit writes beside <id>.npy / <id>.json / <id>.mp4 / timeline_<id>.png
RESERVED_VIDEO_IDS: frozenset[str] = frozenset({
    "features",  # features.json (feature directories)
    "import_report",  # import_report.json (tadkit data import-features)
    ".tadkit_scan",  # .tadkit_scan.json (feature scan cache)
    "frames",  # frames.json (frame stores)
    ".lock",  # the output-directory lock
})
MAX_ID_BYTES = 200  # leaves room for suffixes and temp-file names within the usual 255-byte limit


def video_id_problem(video_id: object) -> str | None:
    """Why ``video_id`` cannot name a file, or None when it can."""
    if not isinstance(video_id, str):
        return f"must be a string, got {type(video_id).__name__}"
    if not video_id:
        return "is empty"
    if video_id in (".", ".."):
        return "is a directory name"
    if "/" in video_id or "\\" in video_id:
        return "contains a path separator (/ or \\)"
    if "\0" in video_id:
        return "contains a NUL byte"
    if video_id.casefold() in RESERVED_VIDEO_IDS:
        return f"is reserved for a file tadkit writes beside the videos ({', '.join(sorted(RESERVED_VIDEO_IDS))})"
    if video_id.startswith("."):
        return "starts with '.' (hidden files are tadkit's temp, lock and cache files)"
    if os.path.isabs(video_id):
        return "is an absolute path"
    if len(video_id.encode("utf-8", "surrogateescape")) > MAX_ID_BYTES:
        return f"is longer than {MAX_ID_BYTES} bytes"
    return None


def is_usable_video_id(video_id: object) -> bool:
    return video_id_problem(video_id) is None


def check_video_id(video_id: object, *, file: str | os.PathLike | None = None, field: str | None = "video_id") -> str:
    """``video_id`` unchanged when it may name a file; else a TadkitError naming ``file`` and the id."""
    problem = video_id_problem(video_id)
    if problem is None:
        return video_id  # type: ignore[return-value]
    shown = repr(video_id)
    raise TadkitError(f"video id {shown} cannot name a file: it {problem}", file=None if file is None else str(file),
                      video=shown, field=field)


__all__ = ["MAX_ID_BYTES", "RESERVED_VIDEO_IDS", "check_video_id", "is_usable_video_id", "video_id_problem"]
