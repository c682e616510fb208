"""Annotation entry point: detect a file's format, read it, filter subsets, match video ids, stats.

:func:`load_annotations` is what every other module calls (evaluation ``--gt``, training, CLI).
It accepts every supported format and returns :class:`tadkit.data.records.AnnotationSet`:

=================  ==============================================================================
``activitynet``    ActivityNet JSON (official, ActionFormer ``thumos14.json``, AFSD/ECM
                   ``thumos_gt.json``) and tadkit JSON (superset, written by :func:`write_tadkit_json`)
``thumos-evalkit`` THUMOS14 evalkit directory of ``<Class>_<subset>.txt`` files
``afsd-csv``       AFSD ``*_Annotation*.csv`` (+ ``*_video_info.csv``) and BSN/G-TAD
                   ``thumos14_test_groundtruth.csv``
``bsn``            BSN ``anet_anno_action.json`` + ``video_info_new.csv`` (ActivityNet v1.3)
``wtalc``          W-TALC ``.npy`` directory (ActivityNet v1.2)
=================  ==============================================================================
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Collection, Iterable, Sequence

import numpy as np

from tadkit.data.formats._common import (
    ZERO_LENGTH_POLICIES,
    RawJson,
    ZeroLength,
    check_zero_length_policy,
    parse_json_text,
    read_csv,
    read_text,
    user_error,
)
from tadkit.data.formats.activitynet import (
    looks_like_activitynet,
    read_activitynet,
    tadkit_json_dict,
    write_tadkit_json,
)
from tadkit.data.formats.afsd_csv import csv_kind, read_afsd_csv
from tadkit.data.formats.bsn import ANNOTATION_NAME as BSN_ANNOTATION_NAME
from tadkit.data.formats.bsn import looks_like_bsn, read_bsn
from tadkit.data.formats.thumos_evalkit import looks_like_evalkit, read_thumos_evalkit
from tadkit.data.formats.wtalc import looks_like_wtalc, read_wtalc
from tadkit.data.records import AnnotationSet, resolve_subsets

__all__ = [
    "FORMATS",
    "ZERO_LENGTH_POLICIES",
    "A2NET_DURATION_BINS",
    "AnnotationStats",
    "annotation_stats",
    "detect_format",
    "format_stats",
    "load_annotations",
    "normalize_video_id",
    "normalize_video_ids",
    "select_subset",
    "tadkit_json_dict",
    "write_tadkit_json",
]

FORMATS: tuple[str, ...] = ("activitynet", "thumos-evalkit", "afsd-csv", "bsn", "wtalc")


# ----------------------------------------------------------------------------------------------
# format detection and loading
# ----------------------------------------------------------------------------------------------


DATASET_ANNOTATION_NAME = "annotations.json"  # what `tadkit data synth` / `data frames` dataset folders hold


def _dataset_folder_file(path: Path) -> Path:
    """A dataset folder written by tadkit (``annotations.json`` beside ``features/``) stands for its
    annotation file; any directory of a known annotation layout is read as that layout."""
    if not path.is_dir() or not (path / DATASET_ANNOTATION_NAME).is_file():
        return path
    if looks_like_wtalc(path) or (path / BSN_ANNOTATION_NAME).is_file() or looks_like_evalkit(path):
        return path
    return path / DATASET_ANNOTATION_NAME


def _sniff(path: Path) -> tuple[str, Any]:
    """(format, parsed JSON or None). JSON files are parsed here once and handed to the reader."""
    if not path.exists():
        raise user_error("no such file or directory", file=str(path))
    if path.is_dir():
        if looks_like_wtalc(path):
            return "wtalc", None
        if (path / BSN_ANNOTATION_NAME).is_file():
            return "bsn", None
        if looks_like_evalkit(path):
            return "thumos-evalkit", None
        raise user_error(
            "cannot tell the annotation format of this directory (expected a THUMOS14 evalkit directory, "
            f"a W-TALC .npy directory, or one holding {BSN_ANNOTATION_NAME} or tadkit's {DATASET_ANNOTATION_NAME})",
            file=str(path),
        )
    suffix = path.suffix.lower()
    if suffix == ".csv":
        kind = csv_kind(read_csv(path).header)
        if kind is None:
            raise user_error("unknown CSV header (expected the AFSD or BSN/G-TAD THUMOS14 annotation form)",
                              file=str(path), field="header")
        return "afsd-csv", None
    if suffix == ".json":
        text = read_text(path)
        if '"database"' in text and looks_like_activitynet(text):
            return "activitynet", RawJson(text)  # streamed by the reader: no whole JSON tree in memory
        data = parse_json_text(text, path)
        del text
        if isinstance(data, dict) and "database" in data:
            return "activitynet", data
        if looks_like_bsn(data):
            return "bsn", data
        raise user_error("JSON has no 'database' field and is not BSN anet_anno_action.json", file=str(path))
    if suffix == ".npy" and looks_like_wtalc(path.parent):
        raise user_error("W-TALC annotations are a directory; pass the directory, not one .npy file",
                          file=str(path))
    if suffix == ".txt" and looks_like_evalkit(path.parent):
        raise user_error("THUMOS14 evalkit annotations are a directory; pass the directory, not one class file",
                          file=str(path))
    raise user_error(f"cannot tell the annotation format from {path.name!r}; pass --format "
                      f"({', '.join(FORMATS)})", file=str(path))


def detect_format(path: str | Path) -> str:
    """Name of the reader for ``path``: one of :data:`FORMATS`."""
    return _sniff(_dataset_folder_file(Path(path)))[0]


def load_annotations(
    path: str | Path,
    format: str | None = None,
    subset: str | Sequence[str] | None = None,
    *,
    video_info: str | Path | None = None,
    zero_length: ZeroLength = "keep",
) -> AnnotationSet:
    """Read ground truth in any supported format.

    Args:
        path: file or directory.
        format: one of :data:`FORMATS`; None = :func:`detect_format`.
        subset: keep only these subsets (case-insensitive; ``val``/``validation``, ``train``/``training``
            and ``test``/``testing`` match each other when the exact name is absent). None keeps all.
        video_info: video-info CSV (durations/fps/frames) for formats without them (evalkit, AFSD CSV;
            BSN's ``video_info_new.csv``). AFSD and BSN siblings are found automatically.
        zero_length: what to do with ``start == end`` segments: ``keep`` (default; the official
            ActivityNet v1.2/v1.3 ground truth has a few and its evaluator counts them), ``drop`` or ``error``.
    """
    path = _dataset_folder_file(Path(path))
    check_zero_length_policy(zero_length)
    data = None
    if format is None:
        format, data = _sniff(path)
    elif format not in FORMATS:
        raise user_error(f"unknown annotation format {format!r}; choose from {', '.join(FORMATS)}", file=str(path))
    elif not path.exists():
        raise user_error("no such file or directory", file=str(path))
    if video_info is not None and format in ("activitynet", "wtalc"):
        raise user_error(f"--video-info is not used by the {format} format (durations are in the file)",
                          file=str(video_info))

    if format == "activitynet":
        if path.is_dir():
            raise user_error("the activitynet format is a JSON file, not a directory", file=str(path))
        aset = read_activitynet(path, zero_length=zero_length, data=data)
    elif format == "thumos-evalkit":
        aset = read_thumos_evalkit(path, zero_length=zero_length, video_info=video_info)
    elif format == "afsd-csv":
        if path.is_dir():
            raise user_error("the afsd-csv format is a CSV file, not a directory", file=str(path))
        aset = read_afsd_csv(path, zero_length=zero_length, video_info=video_info)
    elif format == "bsn":
        aset = read_bsn(path, zero_length=zero_length, video_info=video_info, data=data)
    else:
        aset = read_wtalc(path, zero_length=zero_length)
    return select_subset(aset, subset)


def select_subset(aset: AnnotationSet, subset: str | Sequence[str] | None) -> AnnotationSet:
    """``aset.subset(...)`` plus aliases, and a TadkitError naming the available subsets when none match."""
    if subset is None:
        return aset
    chosen, missing = resolve_subsets(subset, aset.subsets)
    if missing:
        raise user_error(
            f"no subset {missing[0]!r}; the file has {', '.join(repr(s) for s in aset.subsets) or 'no videos'}"
            " (val/validation, test/testing and train/training are accepted for each other)",
            file=aset.source,
            field="subset",
        )
    return aset.subset(chosen)


# ----------------------------------------------------------------------------------------------
# video ids
# ----------------------------------------------------------------------------------------------


def normalize_video_id(video_id: str, known: Collection[str]) -> str:
    """Spell ``video_id`` the way ``known`` does, adding or removing the ActivityNet ``v_`` prefix.

    BSN/W-TALC files and feature names use ``v_<youtube id>``; the official ActivityNet JSON and
    prediction files use the bare id. Rule: an exact match wins; otherwise a leading ``v_`` is
    stripped only when the stripped id is in ``known`` (and ``v_`` is added only when that spelling
    is). Ids that match neither way come back unchanged, so a bare YouTube id that itself starts
    with ``v_`` is never damaged.
    """
    if video_id in known:
        return video_id
    if video_id.startswith("v_") and video_id[2:] in known:
        return video_id[2:]
    if "v_" + video_id in known:
        return "v_" + video_id
    return video_id


def normalize_video_ids(video_ids: Iterable[str], known: Collection[str]) -> list[str]:
    """:func:`normalize_video_id` for many ids (``known`` turned into a set once)."""
    known = known if isinstance(known, (set, frozenset, dict)) else set(known)
    return [normalize_video_id(v, known) for v in video_ids]


# ----------------------------------------------------------------------------------------------
# statistics
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DurationBin:
    """Instance-duration bin [low, high) in seconds (the first A2Net bin excludes 0)."""

    name: str
    low: float
    high: float


# A2Net (TIP 2020) Table I: extra-short ... extra-long action instances.
A2NET_DURATION_BINS: tuple[DurationBin, ...] = (
    DurationBin("ES", 0.0, 1.5),
    DurationBin("S", 1.5, 2.5),
    DurationBin("M", 2.5, 4.2),
    DurationBin("L", 4.2, 6.9),
    DurationBin("EL", 6.9, math.inf),
)
# Coarse log2 histogram edges (seconds): (0, 0.5), [0.5, 1), [1, 2), ..., [256, inf).
LOG_EDGES: tuple[float, ...] = (0.0, 0.5, 1, 2, 4, 8, 16, 32, 64, 128, 256, math.inf)


def instance_durations(aset: AnnotationSet) -> np.ndarray:
    """Durations (seconds) of every instance, rounded to 1 us so that e.g. 54.3 - 52.8 is exactly 1.5."""
    ends = [s.end for v in aset.videos.values() for s in v.segments]
    starts = [s.start for v in aset.videos.values() for s in v.segments]
    return np.round(np.asarray(ends, dtype=np.float64) - np.asarray(starts, dtype=np.float64), 6)


def bin_durations(durations: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Counts per bin [edges[i], edges[i+1]); zero-length instances (d == 0) are in no bin."""
    durations = np.asarray(durations, dtype=np.float64)
    index = np.searchsorted(np.asarray(edges[1:-1], dtype=np.float64), durations, side="right")
    return np.bincount(index[durations > 0], minlength=len(edges) - 1)


@dataclass
class SubsetStats:
    name: str
    videos: int
    videos_with_instances: int
    instances: int
    ambiguous: int
    classes_present: int
    zero_length: int
    past_video_end: int  # instances ending after the known video duration (real files have some)
    videos_with_duration: int
    video_hours: float  # total duration of videos with a known duration
    mean_instance_s: float
    median_instance_s: float
    a2net_bins: dict[str, int]
    log_histogram: list[int]


@dataclass
class ClassStats:
    name: str
    external_id: int | None
    instances: dict[str, int]  # per subset
    videos: int  # videos (any subset) with at least one instance
    mean_duration_s: float


@dataclass
class AnnotationStats:
    source: str
    format: str
    num_classes: int
    subsets: list[SubsetStats]
    classes: list[ClassStats]
    log_edges: list[float] = field(default_factory=lambda: list(LOG_EDGES))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["log_edges"] = [None if math.isinf(e) else e for e in self.log_edges]
        out["a2net_bins"] = [{"name": b.name, "low": b.low, "high": None if math.isinf(b.high) else b.high}
                             for b in A2NET_DURATION_BINS]
        return _finite_json(out)


def _finite_json(obj: Any) -> Any:
    """NaN (empty means/medians) -> None so --json output is strict JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite_json(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite_json(v) for v in obj]
    return obj


def annotation_stats(aset: AnnotationSet) -> AnnotationStats:
    """Videos / instances per subset and class, ambiguous counts and instance-duration histograms."""
    subsets = aset.subsets
    subset_of = {name: i for i, name in enumerate(subsets)}
    videos = list(aset.videos.values())
    # Flat columns over all instances, built in one pass; everything below is vectorized on them.
    segments = [s for v in videos for s in v.segments]
    per_video = np.fromiter((len(v.segments) for v in videos), dtype=np.int64, count=len(videos))
    video_subset = np.fromiter((subset_of[v.subset] for v in videos), dtype=np.int64, count=len(videos))
    video_index = np.repeat(np.arange(len(videos)), per_video)
    seg_subset = video_subset[video_index]
    class_of = {name: i for i, name in enumerate(aset.classes)}
    class_idx = np.fromiter((class_of[s.label] for s in segments), dtype=np.int64, count=len(segments))
    times = np.array([(s.start, s.end) for s in segments], dtype=np.float64).reshape(-1, 2)
    ends = times[:, 1]
    durations = np.round(times[:, 1] - times[:, 0], 6)  # same rule as instance_durations()
    video_duration = np.array([np.nan if v.duration is None else v.duration for v in videos], dtype=np.float64)
    past_end = ends > video_duration[video_index] + 1e-6  # NaN duration compares False
    ambiguous = np.fromiter((len(v.ambiguous) for v in videos), dtype=np.int64, count=len(videos))
    edges = [b.low for b in A2NET_DURATION_BINS] + [A2NET_DURATION_BINS[-1].high]

    subset_stats = []
    for s, name in enumerate(subsets):
        in_subset = video_subset == s
        seg_mask = seg_subset == s
        d = durations[seg_mask]
        a2 = bin_durations(d, edges)
        known = in_subset & np.isfinite(video_duration)
        subset_stats.append(SubsetStats(
            name=name,
            videos=int(in_subset.sum()),
            videos_with_instances=int((in_subset & (per_video > 0)).sum()),
            instances=int(seg_mask.sum()),
            ambiguous=int(ambiguous[in_subset].sum()),
            classes_present=int(np.unique(class_idx[seg_mask]).size),
            zero_length=int((d == 0).sum()),
            past_video_end=int(past_end[seg_mask].sum()),
            videos_with_duration=int(known.sum()),
            video_hours=float(video_duration[known].sum() / 3600.0),
            mean_instance_s=float(d.mean()) if d.size else math.nan,
            median_instance_s=float(np.median(d)) if d.size else math.nan,
            a2net_bins={b.name: int(c) for b, c in zip(A2NET_DURATION_BINS, a2)},
            log_histogram=bin_durations(d, LOG_EDGES).tolist(),
        ))

    num_classes = len(aset.classes)
    counts = np.zeros((num_classes, len(subsets)), dtype=np.int64)
    np.add.at(counts, (class_idx, seg_subset), 1)
    class_video = np.unique(class_idx * max(len(videos), 1) + video_index)  # distinct (class, video) pairs
    videos_per_class = np.bincount(class_video // max(len(videos), 1), minlength=num_classes)
    sum_duration = np.bincount(class_idx, weights=durations, minlength=num_classes)
    total = counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_duration = sum_duration / total
    class_stats = [
        ClassStats(
            name=name,
            external_id=aset.external_ids.get(name),
            instances={subset: int(counts[c, s]) for s, subset in enumerate(subsets)},
            videos=int(videos_per_class[c]),
            mean_duration_s=float(mean_duration[c]),
        )
        for c, name in enumerate(aset.classes)
    ]
    return AnnotationStats(source=aset.source, format=aset.format, num_classes=num_classes,
                           subsets=subset_stats, classes=class_stats)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], left: Collection[int] = (0,)) -> str:
    """Plain-text table: columns in ``left`` left-aligned (names, bars), the others right-aligned."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule] + [line(r) for r in cells[1:]])


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "-" if not math.isfinite(value) else f"{value:.2f}"
    return str(value)


def _edge(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value:g}"


def _interval(low: float, high: float) -> str:
    """Bins starting at 0 exclude zero-length instances, hence the open bracket."""
    return f"{'(' if low == 0 else '['}{_edge(low)},{_edge(high)})"


def format_stats(stats: AnnotationStats, max_bar: int = 40) -> str:
    """Human-readable report: subset table, A2Net duration bins, log histogram, per-class table."""
    subsets = [s.name for s in stats.subsets]
    out = [f"{stats.source} ({stats.format}): {stats.num_classes} classes, "
           f"{sum(s.videos for s in stats.subsets)} videos, {sum(s.instances for s in stats.subsets)} instances"
           + ("" if stats.subsets else " (no video in the file: every table below is empty)"), ""]
    out.append(_table(
        ["subset", "videos", "w/ inst", "instances", "ambiguous", "classes", "zero-len", "past end",
         "dur known", "hours", "mean s", "median s"],
        [[s.name, s.videos, s.videos_with_instances, s.instances, s.ambiguous, s.classes_present, s.zero_length,
          s.past_video_end, s.videos_with_duration, s.video_hours, s.mean_instance_s, s.median_instance_s]
         for s in stats.subsets],
    ))
    out += ["", "Instance duration, A2Net Table I bins (seconds):"]
    out.append(_table(
        ["subset"] + [f"{b.name} {_interval(b.low, b.high)}" for b in A2NET_DURATION_BINS],
        [[s.name] + [s.a2net_bins[b.name] for b in A2NET_DURATION_BINS] for s in stats.subsets],
    ))
    edges = stats.log_edges
    # an empty database has no subset: zero counts, not an IndexError
    totals = (np.sum([s.log_histogram for s in stats.subsets], axis=0) if stats.subsets
              else np.zeros(len(edges) - 1, dtype=np.int64))
    peak = max(int(totals.max()) if totals.size else 0, 1)
    out += ["", "Instance duration, log2 histogram (all subsets):"]
    out.append(_table(
        ["seconds"] + subsets + ["all", ""],
        [[_interval(edges[i], edges[i + 1])] + [s.log_histogram[i] for s in stats.subsets]
         + [int(totals[i]), "#" * int(round(max_bar * totals[i] / peak))] for i in range(len(edges) - 1)],
        left=(0, len(subsets) + 2),
    ))
    out += ["", "Per class:"]
    out.append(_table(
        ["class", "id"] + subsets + ["videos", "mean s"],
        [[c.name, c.external_id] + [c.instances[s] for s in subsets] + [c.videos, c.mean_duration_s]
         for c in stats.classes],
    ))
    return "\n".join(out)
