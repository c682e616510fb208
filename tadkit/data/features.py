"""Per-video feature files, their time mapping, and checks that keep a wrong mapping from passing silently.

On-disk layout (the contract ``tadkit.data.synthetic`` and ``tadkit extract`` write to; full
description in ``docs/features.md``)::

    <dir>/features.json        required; dataset-level timing and layout (FeatureSpec)
    <dir>/<video_id>.npy       layout "concat": (T, D) time-major float32/float16, streams already
                               concatenated along D in ``streams`` order (RGB first, as in A2Net)
    <dir>/<stream>/<video_id>.npy   layout "split": one (T, D_s) file per stream, concatenated on load
    <dir>/<video_id>.npz       layout "npz": one (T, D_s) array per stream name, concatenated on load
                               (layout "concat" also accepts a .npz with a single array "features")
    <dir>/<video_id>.json      optional sidecar; overrides the timing of that one video

Time mapping: feature ``k`` stands for second ``(k * stride_frames + offset_frames) / fps``.
``offset_frames = 0`` is the clip-start convention (A2Net: feature k starts at frame 4k);
``offset_frames = clip_frames / 2`` ("centre") is the clip-centre convention.

Files are memory-mapped (``np.load(mmap_mode="r")``; uncompressed .npz members are mapped too), so
reading a window touches only its rows.

Values: :meth:`FeatureStore.scan_values` (run by the dataset builders of ``tadkit train/test/detect``)
checks every file for NaN/Inf once, in row chunks of a memory-mapped array, and caches each file's
verdict by (path, size, mtime) in ``<dir>/.tadkit_scan.json`` (``~/.cache/tadkit/scan/`` when the
directory is not writable), so an unchanged file is never read twice for it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from tadkit.utils.progress import progress as tqdm  # a bar on a terminal, plain lines in a log

from tadkit.data.ids import check_video_id, is_usable_video_id
from tadkit.errors import TadkitError
from tadkit.utils.io import atomic_open, check_input_file, numpy_save, write_json

FEATURES_JSON = "features.json"
FORMAT_TAG = "tadkit-features/1"
LAYOUTS = ("concat", "split", "npz")
# Streams whose lengths differ by at most this many features are cut to the shortest
# (TV-L1 flow routinely yields one feature fewer than RGB); a larger gap is an error.
STREAM_LENGTH_SLACK = 1

# A2Net (THUMOS14) converts frames <-> seconds with 30 fps except these videos (spec a2net.md 1.2/1.3);
# 29.97-fps videos are treated as 30.
A2NET_THUMOS_FPS_EXCEPTIONS: dict[str, float] = {
    "video_validation_0000311": 25.0,
    "video_validation_0000413": 25.0,
    "video_validation_0000419": 25.0,
    "video_validation_0000420": 25.0,
    "video_validation_0000484": 25.0,
    "video_validation_0000666": 25.0,
    "video_test_0000950": 25.0,
    "video_test_0001058": 25.0,
    "video_test_0001195": 25.0,
    "video_test_0001255": 25.0,
    "video_test_0001459": 25.0,
    "video_test_0001207": 24.0,
}


def a2net_thumos_fps(video_id: str) -> float:
    """Frame rate A2Net uses for a THUMOS14 video: 25/24 for the listed videos, 30 otherwise."""
    return A2NET_THUMOS_FPS_EXCEPTIONS.get(video_id, 30.0)


# Named per-video fps tables, for configs (``data.fps_table: a2net_thumos``).
FPS_TABLES: dict[str, Callable[[str], float]] = {"a2net_thumos": a2net_thumos_fps}  # keys: tadkit.data.choices


def fps_table_by_name(name: str) -> Callable[[str], float]:
    if name not in FPS_TABLES:
        raise TadkitError(f"unknown fps table {name!r} (known: {sorted(FPS_TABLES)})", field="fps_table")
    return FPS_TABLES[name]


# --------------------------------------------------------------------------------------------------
# Time mapping
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureTiming:
    """Affine map between feature index and seconds: ``t(k) = (k * stride_frames + offset_frames) / fps``."""

    fps: float
    stride_frames: float = 4.0
    clip_frames: float = 16.0
    offset_frames: float = 0.0

    def __post_init__(self) -> None:
        for name in ("fps", "stride_frames", "clip_frames"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"FeatureTiming.{name} must be a positive number, got {value!r}")
        if not math.isfinite(self.offset_frames):
            raise ValueError(f"FeatureTiming.offset_frames must be finite, got {self.offset_frames!r}")

    @classmethod
    def clip_start(cls, fps: float, stride_frames: float = 4.0, clip_frames: float = 16.0) -> "FeatureTiming":
        """Feature k stands for the first frame of its clip (A2Net)."""
        return cls(fps, stride_frames, clip_frames, 0.0)

    @classmethod
    def clip_centre(cls, fps: float, stride_frames: float = 4.0, clip_frames: float = 16.0) -> "FeatureTiming":
        """Feature k stands for the centre of its clip (offset = clip / 2 frames)."""
        return cls(fps, stride_frames, clip_frames, clip_frames / 2.0)

    @classmethod
    def uniform(cls, duration: float, length: int) -> "FeatureTiming":
        """``length`` features spread evenly over ``duration`` seconds (pre-resampled features, ECM)."""
        if not (duration > 0 and length > 0):
            raise ValueError(f"uniform timing needs duration > 0 and length > 0, got {duration}, {length}")
        step = duration / length
        # fps = 1 makes one "frame" one second, so the affine form above holds unchanged.
        return cls(fps=1.0, stride_frames=step, clip_frames=step, offset_frames=0.0)

    @property
    def seconds_per_feature(self) -> float:
        return self.stride_frames / self.fps

    @property
    def t0(self) -> float:
        """Second that feature 0 stands for."""
        return self.offset_frames / self.fps

    def index_to_seconds(self, index: Any) -> np.ndarray:
        """Feature index (int or fractional, any shape) -> seconds."""
        return (np.asarray(index, dtype=np.float64) * self.stride_frames + self.offset_frames) / self.fps

    def seconds_to_index(self, seconds: Any) -> np.ndarray:
        """Seconds (any shape) -> fractional feature index; inverse of :meth:`index_to_seconds`."""
        return (np.asarray(seconds, dtype=np.float64) * self.fps - self.offset_frames) / self.stride_frames

    def expected_length_range(self, num_frames: float) -> tuple[int, int]:
        """Plausible feature counts for a video of ``num_frames`` frames (at this fps).

        Lower end: only full clips (``floor((F - clip) / stride) + 1``); upper end: the last clips
        padded (``ceil(F / stride)``). Extractors land in between.
        """
        lo = math.floor((num_frames - self.clip_frames) / self.stride_frames) + 1 if num_frames >= self.clip_frames else 0
        hi = math.ceil(num_frames / self.stride_frames - 1e-9)
        return max(lo, 0), max(hi, lo, 1)


@dataclass(frozen=True)
class LengthTolerance:
    """How far a feature count may fall outside :meth:`FeatureTiming.expected_length_range`."""

    min_features: int = 2
    fraction: float = 0.05

    def slack(self, expected: int) -> int:
        return max(int(self.min_features), int(math.ceil(self.fraction * expected)))


# --------------------------------------------------------------------------------------------------
# features.json
# --------------------------------------------------------------------------------------------------


def _positive_number(value: Any, *, file: Path, field_name: str, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise TadkitError(f"must be a positive number, got {value!r}", file=file, field=field_name)
    return float(value)


@dataclass(frozen=True)
class FeatureSpec:
    """Contents of ``features.json``: how every feature file of a directory maps to time."""

    fps: float | None = None  # None = per video (sidecar, fps table or annotations)
    stride_frames: float = 4.0
    clip_frames: float = 16.0
    offset_frames: float = 0.0
    dim: int | None = None  # total D after concatenating streams; None = not checked against a constant
    streams: tuple[str, ...] = ()
    layout: str = "concat"
    fixed_length: int | None = None  # every video pre-resampled to this many features (ECM: 750 / 100)
    extra: dict[str, Any] = field(default_factory=dict, compare=False)  # unknown keys, kept verbatim

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], file: Path | str = FEATURES_JSON) -> "FeatureSpec":
        file = Path(file)
        if not isinstance(data, Mapping):
            raise TadkitError("must hold a JSON object", file=file)
        data = dict(data)
        tag = data.pop("format", FORMAT_TAG)
        if tag != FORMAT_TAG:
            raise TadkitError(f"unsupported format {tag!r} (expected {FORMAT_TAG!r})", file=file, field="format")
        fps = _positive_number(data.pop("fps", None), file=file, field_name="fps", allow_none=True)
        stride = _positive_number(data.pop("stride_frames", 4), file=file, field_name="stride_frames")
        clip = _positive_number(data.pop("clip_frames", 16), file=file, field_name="clip_frames")
        offset_raw = data.pop("offset_frames", 0)
        if isinstance(offset_raw, str) and offset_raw.lower() in ("centre", "center"):
            offset = clip / 2.0
        elif isinstance(offset_raw, str) and offset_raw.lower() == "start":
            offset = 0.0
        elif isinstance(offset_raw, (int, float)) and not isinstance(offset_raw, bool) and math.isfinite(offset_raw):
            offset = float(offset_raw)
        else:
            raise TadkitError(
                f"must be a number of frames, \"start\" or \"centre\", got {offset_raw!r}", file=file, field="offset_frames"
            )
        dim = data.pop("dim", None)
        if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0):
            raise TadkitError(f"must be a positive integer or null, got {dim!r}", file=file, field="dim")
        streams_raw = data.pop("streams", None) or []
        if isinstance(streams_raw, str):
            streams_raw = [streams_raw]
        if not isinstance(streams_raw, list) or not all(isinstance(s, str) and s for s in streams_raw):
            raise TadkitError(f"must be a list of stream names, got {streams_raw!r}", file=file, field="streams")
        if len(set(streams_raw)) != len(streams_raw):
            raise TadkitError(f"stream names repeat: {streams_raw}", file=file, field="streams")
        layout = data.pop("layout", "concat")
        if layout not in LAYOUTS:
            raise TadkitError(f"must be one of {list(LAYOUTS)}, got {layout!r}", file=file, field="layout")
        if layout in ("split", "npz") and not streams_raw:
            raise TadkitError(f"layout {layout!r} needs the list of stream names", file=file, field="streams")
        fixed = data.pop("fixed_length", None)
        if fixed is not None and (isinstance(fixed, bool) or not isinstance(fixed, int) or fixed <= 0):
            raise TadkitError(f"must be a positive integer or null, got {fixed!r}", file=file, field="fixed_length")
        return cls(
            fps=fps,
            stride_frames=stride,
            clip_frames=clip,
            offset_frames=offset,
            dim=dim,
            streams=tuple(streams_raw),
            layout=layout,
            fixed_length=fixed,
            extra=data,
        )

    @classmethod
    def load(cls, root: str | Path) -> "FeatureSpec":
        path = Path(root) / FEATURES_JSON
        if not path.is_file():
            raise TadkitError(
                "missing: every feature directory needs a features.json (see docs/features.md)", file=path
            )
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise TadkitError(f"not valid JSON ({error})", file=path) from None
        return cls.from_dict(data, path)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": FORMAT_TAG,
            "fps": self.fps,
            "stride_frames": self.stride_frames,
            "clip_frames": self.clip_frames,
            "offset_frames": self.offset_frames,
            "dim": self.dim,
            "streams": list(self.streams),
            "layout": self.layout,
        }
        if self.fixed_length is not None:
            out["fixed_length"] = self.fixed_length
        out.update(self.extra)
        return out

    def save(self, root: str | Path) -> Path:
        path = Path(root) / FEATURES_JSON
        write_json(path, self.to_dict())
        return path


# --------------------------------------------------------------------------------------------------
# Memory-mapped reading
# --------------------------------------------------------------------------------------------------


def _mmap_npz_member(path: Path, key: str) -> np.ndarray | None:
    """Memory-map array ``key`` of an .npz when it is stored uncompressed; None when compressed."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(f"{key}.npy")
    if info.compress_type != zipfile.ZIP_STORED:
        return None
    with open(path, "rb") as handle:
        handle.seek(info.header_offset)
        local = handle.read(30)
        if local[:4] != b"PK\x03\x04":
            raise ValueError("bad zip local header")
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        handle.seek(info.header_offset + 30 + name_len + extra_len)
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
        offset = handle.tell()
    if dtype.hasobject:
        raise ValueError("object arrays are not features")
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")


def _open_array(path: Path, key: str | None, video_id: str) -> np.ndarray:
    """Open one (T, D) array lazily; any failure is a TadkitError naming file, video and field."""
    check_input_file(path, "feature file", field="path", video=video_id, missing="feature file is missing")
    try:
        if key is None:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
            if not isinstance(array, np.ndarray):  # np.load goes by content: a zip under a .npy name
                array.close()
                raise TadkitError("is an .npz archive, expected one .npy array (rename it to .npz)", file=path,
                                  video=video_id, field="path")
        else:
            with np.load(path, allow_pickle=False) as archive:
                names = list(archive.files)
            if key == "features" and key not in names and len(names) == 1:
                key = names[0]  # a concat-layout .npz may name its single array anything
            if key not in names:
                raise TadkitError(
                    f"has no array {key!r} (arrays: {names})", file=path, video=video_id, field=key
                )
            array = _mmap_npz_member(path, key)
            if array is None:  # compressed member: cannot be mapped, read it whole
                with np.load(path, allow_pickle=False) as archive:
                    array = archive[key]
    except TadkitError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as error:
        raise TadkitError(f"cannot read features ({error})", file=path, video=video_id, field="path") from None
    if array.ndim != 2:
        raise TadkitError(
            f"must be a 2-D (T, D) time-major array, got shape {tuple(array.shape)}",
            file=path,
            video=video_id,
            field="shape",
        )
    if not np.issubdtype(array.dtype, np.floating):
        raise TadkitError(
            f"must be a floating-point array (float16, float32 or float64; read as float32), got {array.dtype}",
            file=path, video=video_id, field="dtype"
        )
    return array


def open_feature_array(path: str | Path, video_id: str, key: str | None = None) -> np.ndarray:
    """One (T, D) floating-point array of a feature file, memory-mapped, never unpickled; a missing,
    empty, cut, object-dtype or wrongly shaped file is a TadkitError naming the file and the video."""
    return _open_array(Path(path), key, video_id)


def frames_at(annotation: Any, fps: float) -> float | None:
    """Frame count of an annotated video on a clock of ``fps`` (its own count when the rates agree)."""
    num_frames = getattr(annotation, "num_frames", None)
    native = getattr(annotation, "fps", None)
    if num_frames and native and abs(native - fps) < 1e-6:
        return float(num_frames)
    duration = getattr(annotation, "duration", None)
    if duration is not None and duration > 0:
        return float(duration) * fps
    return None


class VideoFeatures:
    """One video's features as a lazy (T, D) float32 array: streams side by side, rows read on demand.

    Supports ``len``, ``.shape``, and indexing rows with an int, a slice or an integer array
    (``video[10:20]``, ``video[np.array([0, 5, 5])]``), always returning a new float32 array.
    """

    dtype = np.dtype(np.float32)

    def __init__(self, arrays: list[np.ndarray], length: int, video_id: str = "") -> None:
        self.arrays = arrays
        self.video_id = video_id
        self.shape = (int(length), int(sum(a.shape[1] for a in arrays)))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: Any) -> np.ndarray:
        if isinstance(index, tuple):
            raise TypeError("VideoFeatures indexes rows only")
        if isinstance(index, slice):
            start, stop, step = index.indices(self.shape[0])  # clamp to the common length of the streams
            if step != 1:
                return self[np.arange(start, stop, step)]
            index, rows = slice(start, max(stop, start)), max(stop - start, 0)
        elif np.isscalar(index):
            index = int(index)
            if not -self.shape[0] <= index < self.shape[0]:
                raise IndexError(f"feature {index} out of range for {self.shape[0]} features")
            return self[index % self.shape[0] : index % self.shape[0] + 1][0]
        else:
            index = np.asarray(index)
            if index.dtype == bool:
                index = np.flatnonzero(index)
            index = index.astype(np.int64)
            if index.size and (index.min() < -self.shape[0] or index.max() >= self.shape[0]):
                raise IndexError(f"feature index out of range for {self.shape[0]} features")
            index = index % max(self.shape[0], 1)
            rows = index.shape[0]
        out = np.empty((rows, self.shape[1]), dtype=np.float32)
        column = 0
        for array in self.arrays:
            width = array.shape[1]
            out[:, column : column + width] = array[index]  # reads only these rows; casts f16 -> f32
            column += width
        return out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)


@dataclass
class FeatureCheckReport:
    """What :meth:`FeatureStore.check` verified."""

    num_videos: int
    dim: int | None
    num_features: dict[str, int]
    length_unchecked: list[str]  # no duration / frame count known, so the length could not be checked
    values_scanned: bool

    def summary(self) -> str:
        total = sum(self.num_features.values())
        text = f"{self.num_videos} videos, {total} features, D={self.dim}"
        if self.length_unchecked:
            text += f"; length not checked for {len(self.length_unchecked)} videos (no duration)"
        if not self.values_scanned:
            text += "; values not scanned"
        return text


# --------------------------------------------------------------------------------------------------
# Value scan (NaN / Inf), cached per file
# --------------------------------------------------------------------------------------------------

SCAN_CACHE_NAME = ".tadkit_scan.json"
SCAN_CACHE_FORMAT = "tadkit-value-scan/1"
SCAN_CHUNK_ELEMENTS = 1 << 22  # values per chunk (16 MB of float32): bounded memory, vectorised
_MISSING = object()


def first_non_finite(array: Any, chunk_rows: int | None = None) -> tuple[int, int] | None:
    """(row, column) of the first NaN/Inf of a (T, D) array in row-major order, None when all finite.

    Reads ``chunk_rows`` rows at a time (default: about :data:`SCAN_CHUNK_ELEMENTS` values), so a
    memory-mapped file is checked with bounded memory.
    """
    rows, cols = int(array.shape[0]), int(array.shape[1]) if array.ndim > 1 else 1
    step = int(chunk_rows) if chunk_rows else max(1, SCAN_CHUNK_ELEMENTS // max(cols, 1))
    for begin in range(0, rows, step):
        block = np.asarray(array[begin : begin + step]).reshape(-1, cols)
        finite = np.isfinite(block)
        if not finite.all():
            row, col = divmod(int(np.argmin(finite.reshape(-1))), cols)
            return begin + row, col
    return None


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/tadkit`` (default ``~/.cache/tadkit``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tadkit"


class ValueScanCache:
    """Per-file NaN/Inf verdicts of one feature directory, keyed by (path, size, mtime_ns).

    Stored in ``<dir>/.tadkit_scan.json`` when the directory is writable (and has a write bit), else in
    ``~/.cache/tadkit/scan/<hash of the directory>.json``; both are read. A verdict is ``None`` (all
    finite) or the first bad ``(row, column)``. Writes are atomic and merge what another process
    wrote meanwhile; a cache that cannot be written anywhere only costs a rescan.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.local = self.root / SCAN_CACHE_NAME
        digest = hashlib.sha1(str(self.root.resolve()).encode("utf-8")).hexdigest()[:16]
        self.fallback = user_cache_dir() / "scan" / f"{digest}.json"
        self._stored = [self._read(self.local), self._read(self.fallback)]
        self.updates: dict[str, dict[str, Any]] = {}

    def _dir_writable(self) -> bool:
        """Writable, and meant to be: a directory without any write bit (``chmod a-w``) is left
        alone even by root, who could write it anyway."""
        try:
            return bool(self.root.stat().st_mode & 0o222) and os.access(self.root, os.W_OK)
        except OSError:
            return False

    @staticmethod
    def _read(path: Path) -> dict[str, Any]:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("format") != SCAN_CACHE_FORMAT or not isinstance(data.get("files"), dict):
            return {}
        return data["files"]

    def key(self, path: Path, member: str | None) -> str:
        try:
            name = path.relative_to(self.root).as_posix()
        except ValueError:
            name = str(path.resolve())
        return name if member is None else f"{name}:{member}"

    def get(self, key: str, stat: os.stat_result) -> Any:
        """The cached verdict when a stored entry matches the file's size and mtime, else ``_MISSING``."""
        for entries in (self.updates, *self._stored):
            entry = entries.get(key)
            if not isinstance(entry, dict) or entry.get("size") != stat.st_size or entry.get("mtime_ns") != stat.st_mtime_ns:
                continue
            bad = entry.get("bad")
            if bad is None:
                return None
            if isinstance(bad, list) and len(bad) == 2 and all(isinstance(x, int) for x in bad):
                return int(bad[0]), int(bad[1])
        return _MISSING

    def put(self, key: str, stat: os.stat_result, verdict: tuple[int, int] | None) -> None:
        self.updates[key] = {"size": int(stat.st_size), "mtime_ns": int(stat.st_mtime_ns),
                             "bad": None if verdict is None else [int(verdict[0]), int(verdict[1])]}

    def save(self) -> Path | None:
        """Write the new verdicts (feature directory first, then the user cache); the path or None."""
        if not self.updates:
            return None
        for path in ((self.local, self.fallback) if self._dir_writable() else (self.fallback,)):
            merged = {**self._read(path), **self.updates}
            try:
                write_json(path, {"format": SCAN_CACHE_FORMAT, "root": str(self.root.resolve()), "files": merged},
                           indent=None)
            except (OSError, TadkitError):
                continue
            self.updates = {}
            return path
        return None


@dataclass
class ValueScanReport:
    """What :meth:`FeatureStore.scan_values` did: files read now, files whose cached verdict held."""

    num_videos: int
    files_scanned: int
    files_cached: int
    cache_file: Path | None


def _combine_problems(problems: list[TadkitError]) -> TadkitError:
    """The first problem, its message counting the others (and naming up to 5 of their videos)."""
    first = problems[0]
    if len(problems) > 1:
        others = sorted({p.video for p in problems[1:] if p.video and p.video != first.video})
        shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
        first.message += f" ({len(problems) - 1} more problem(s)" + (f" in {shown}" if shown else "") + ")"
        first.args = (str(first),)
    return first


FpsTable = Mapping[str, float] | Callable[[str], float | None]


class FeatureStore:
    """A feature directory: memory-mapped per-video arrays plus their time mapping.

    ``fps_table`` supplies per-video frame rates when ``features.json`` has ``fps: null`` (e.g.
    :func:`a2net_thumos_fps`); it beats the annotations' fps but never a sidecar.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        spec: FeatureSpec | None = None,
        fps_table: FpsTable | None = None,
        length_tolerance: LengthTolerance = LengthTolerance(),
        max_open: int = 64,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise TadkitError("feature directory does not exist", file=self.root, field="path")
        self.spec = spec if spec is not None else FeatureSpec.load(self.root)
        if self.spec.fps is not None and fps_table is not None:
            raise TadkitError(
                f"fixes fps={self.spec.fps}; an fps table cannot apply as well (set fps to null to use it)",
                file=self.root / FEATURES_JSON,
                field="fps",
            )
        self.fps_table = fps_table
        self.length_tolerance = length_tolerance
        self._max_open = max_open
        self._open: OrderedDict[str, list[np.ndarray]] = OrderedDict()
        self._sidecars: dict[str, dict[str, Any]] = {}

    def __getstate__(self) -> dict[str, Any]:
        # DataLoader workers started by "spawn" pickle the dataset: never pickle mapped file contents
        state = self.__dict__.copy()
        state["_open"] = OrderedDict()
        return state

    # -- files -------------------------------------------------------------------------------------

    def files(self, video_id: str) -> list[tuple[Path, str | None]]:
        """(path, array name inside an .npz or None) per stream, in concatenation order."""
        check_video_id(video_id, file=self.root)
        layout = self.spec.layout
        if layout == "split":
            return [(self.root / stream / f"{video_id}.npy", None) for stream in self.spec.streams]
        if layout == "npz":
            return [(self.root / f"{video_id}.npz", stream) for stream in self.spec.streams]
        npy = self.root / f"{video_id}.npy"
        npz = self.root / f"{video_id}.npz"
        if not npy.exists() and npz.exists():
            return [(npz, "features")]
        return [(npy, None)]

    def exists(self, video_id: str) -> bool:
        return all(path.is_file() for path, _ in self.files(video_id))

    def video_ids(self) -> list[str]:
        """Videos with a complete set of feature files, sorted."""
        if self.spec.layout == "split":
            first = self.root / self.spec.streams[0]
            candidates = [p.stem for p in first.glob("*.npy")] if first.is_dir() else []
        elif self.spec.layout == "npz":
            candidates = [p.stem for p in self.root.glob("*.npz")]
        else:
            candidates = [p.stem for p in self.root.glob("*.npy")] + [p.stem for p in self.root.glob("*.npz")]
        return sorted({v for v in candidates if is_usable_video_id(v) and self.exists(v)})

    def arrays(self, video_id: str) -> list[np.ndarray]:
        """Memory-mapped raw arrays, one per stream (no data is read)."""
        cached = self._open.get(video_id)
        if cached is not None:
            self._open.move_to_end(video_id)
            return cached
        arrays = [_open_array(path, key, video_id) for path, key in self.files(video_id)]
        self._open[video_id] = arrays
        if len(self._open) > self._max_open:
            self._open.popitem(last=False)
        return arrays

    def num_features(self, video_id: str) -> int:
        arrays = self.arrays(video_id)
        lengths = [a.shape[0] for a in arrays]
        if max(lengths) - min(lengths) > STREAM_LENGTH_SLACK:
            detail = ", ".join(f"{s} {n}" for s, n in zip(self.spec.streams, lengths))
            raise TadkitError(
                f"streams disagree on the number of features ({detail})",
                file=self.files(video_id)[0][0],
                video=video_id,
                field="length",
            )
        return min(lengths)

    def dim(self, video_id: str) -> int:
        return int(sum(a.shape[1] for a in self.arrays(video_id)))

    def video(self, video_id: str) -> "VideoFeatures":
        """Lazy (T, D) float32 view of one video; indexing it reads only the rows asked for."""
        return VideoFeatures(self.arrays(video_id), self.num_features(video_id), video_id)

    def read(self, video_id: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Rows [start, stop) as a float32 (n, D) array; only those rows are read from disk."""
        return self.video(video_id)[start:stop]

    # -- timing ------------------------------------------------------------------------------------

    def sidecar(self, video_id: str) -> dict[str, Any]:
        """Validated contents of ``<dir>/<video_id>.json`` ({} when absent)."""
        if video_id in self._sidecars:
            return self._sidecars[video_id]
        check_video_id(video_id, file=self.root)
        path = self.root / f"{video_id}.json"
        data: dict[str, Any] = {}
        if path.is_file():
            try:
                with open(path, encoding="utf-8") as handle:
                    raw = json.load(handle)
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                raise TadkitError(f"not valid JSON ({error})", file=path, video=video_id) from None
            if not isinstance(raw, dict):
                raise TadkitError("must hold a JSON object", file=path, video=video_id)
            data = dict(raw)
            for key in ("fps", "step", "stack"):
                if data.get(key) is not None:
                    data[key] = _positive_number(data[key], file=path, field_name=key)
            if data.get("offset_frames") is not None:
                value = data["offset_frames"]
                if isinstance(value, str) and value.lower() in ("centre", "center"):
                    data["offset_frames"] = None  # resolved against the clip length below
                    data["_centre"] = True
                elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    data["offset_frames"] = float(value)
                else:
                    raise TadkitError(f"must be a number or \"centre\", got {value!r}", file=path, video=video_id, field="offset_frames")
            if data.get("timestamps") is not None:
                stamps = data["timestamps"]
                try:
                    stamps = np.asarray(stamps, dtype=np.float64)
                except (TypeError, ValueError):
                    raise TadkitError("must be a list of seconds", file=path, video=video_id, field="timestamps") from None
                if stamps.ndim != 1 or not np.all(np.isfinite(stamps)):
                    raise TadkitError("must be a flat list of finite seconds", file=path, video=video_id, field="timestamps")
                data["timestamps"] = stamps
        self._sidecars[video_id] = data
        return data

    def _table_fps(self, video_id: str) -> float | None:
        table = self.fps_table
        if table is None:
            return None
        value = table(video_id) if callable(table) else table.get(video_id)
        return None if value is None else float(value)

    def timing(self, video_id: str, annotation: Any | None = None) -> FeatureTiming:
        """Time mapping of one video. fps precedence: sidecar > features.json > fps table > annotations."""
        spec = self.spec
        if spec.fixed_length is not None:
            duration = getattr(annotation, "duration", None)
            if duration is None or not duration > 0:
                raise TadkitError(
                    f"features are resampled to {spec.fixed_length} steps, which needs the video duration; "
                    "the annotations give none",
                    file=self.root / FEATURES_JSON,
                    video=video_id,
                    field="duration",
                )
            return FeatureTiming.uniform(float(duration), spec.fixed_length)
        side = self.sidecar(video_id)
        side_path = self.root / f"{video_id}.json"
        stride = side.get("step") or spec.stride_frames
        clip = side.get("stack") or spec.clip_frames
        offset = side.get("offset_frames")
        if side.get("_centre"):
            offset = clip / 2.0
        if offset is None:
            offset = spec.offset_frames
        fps = side.get("fps") or spec.fps or self._table_fps(video_id) or getattr(annotation, "fps", None)
        if fps is None or not fps > 0:
            raise TadkitError(
                "frame rate unknown: features.json has fps null, there is no sidecar or fps table entry, "
                "and the annotations give none" + ("" if annotation is not None else " (no annotation passed)"),
                file=self.root / FEATURES_JSON,
                video=video_id,
                field="fps",
            )
        stamps = side.get("timestamps")
        if stamps is None or len(stamps) == 0:
            return FeatureTiming(float(fps), float(stride), float(clip), float(offset))
        return _timing_from_timestamps(stamps, float(fps), float(clip), side.get("step"), side_path, video_id)

    # -- validation --------------------------------------------------------------------------------

    def check(
        self,
        annotations: Any,
        *,
        scan_values: bool = True,
        progress: bool = True,
        chunk_rows: int | None = None,
    ) -> FeatureCheckReport:
        """Validate every annotated video; raise one TadkitError (the first problem, others counted).

        Checks: file present and readable, (T, D) float array, D equal to ``dim`` (or the same for
        every video), frame rate known, sidecar timestamps one per feature, T consistent with
        duration * fps / stride within :class:`LengthTolerance`, and (``scan_values``) no NaN/Inf
        (as :meth:`scan_values`: chunked, with the per-file verdict cache).
        """
        videos = list(annotations.videos.values())
        scan_cache = ValueScanCache(self.root) if scan_values else None
        problems: list[TadkitError] = []
        lengths: dict[str, int] = {}
        unchecked: list[str] = []
        dim_seen: int | None = self.spec.dim
        dim_from: str | None = None
        iterator = tqdm(videos, desc="check features", unit="video", disable=not progress, leave=False)
        for video in iterator:
            try:
                n, dim, length_checked = self._check_video(video, scan_values, chunk_rows, scan_cache)
            except TadkitError as error:
                problems.append(error)
                continue
            if dim_seen is None:
                dim_seen, dim_from = dim, video.video_id
            elif dim != dim_seen:
                problems.append(
                    TadkitError(
                        f"has D={dim} but "
                        + (f"features.json says dim={self.spec.dim}" if dim_from is None else f"{dim_from} has D={dim_seen}"),
                        file=self.files(video.video_id)[0][0],
                        video=video.video_id,
                        field="dim",
                    )
                )
                continue
            lengths[video.video_id] = n
            if not length_checked:
                unchecked.append(video.video_id)
        if scan_cache is not None:
            scan_cache.save()
        if problems:
            raise _combine_problems(problems)
        return FeatureCheckReport(
            num_videos=len(lengths),
            dim=dim_seen,
            num_features=lengths,
            length_unchecked=unchecked,
            values_scanned=scan_values,
        )

    def _check_video(self, video: Any, scan_values: bool, chunk_rows: int | None,
                     scan_cache: ValueScanCache | None = None) -> tuple[int, int, bool]:
        """(num_features, dim, whether the length could be checked) of one video."""
        vid = video.video_id
        first_file = self.files(vid)[0][0]
        self.arrays(vid)  # opens every file of the video: a missing or unreadable one fails here
        n = self.num_features(vid)
        dim = self.dim(vid)
        if self.spec.dim is not None and dim != self.spec.dim:
            raise TadkitError(
                f"has D={dim} but features.json says dim={self.spec.dim}", file=first_file, video=vid, field="dim"
            )
        if n == 0:
            raise TadkitError("holds no features (T = 0)", file=first_file, video=vid, field="length")
        timing = self.timing(vid, video)
        stamps = self.sidecar(vid).get("timestamps")
        if stamps is not None and len(stamps) != n:
            raise TadkitError(
                f"lists {len(stamps)} timestamps for {n} features",
                file=self.root / f"{vid}.json",
                video=vid,
                field="timestamps",
            )
        checked = self._check_length(vid, video, n, timing, first_file)
        if scan_values:
            self._scan_video(vid, scan_cache, chunk_rows)
        return n, dim, checked

    def scan_values(
        self,
        video_ids: Iterable[str],
        *,
        progress: bool = False,
        chunk_rows: int | None = None,
        cache: bool = True,
    ) -> ValueScanReport:
        """Check every feature file of ``video_ids`` for NaN/Inf before any training or inference.

        Files are memory-mapped and read in row chunks (vectorised ``np.isfinite``); each file's
        verdict is cached by (path, size, mtime) (:class:`ValueScanCache`), so an unchanged file is
        read once. Raises one TadkitError naming the first bad file, its video and the first bad
        (feature, column), with the other bad videos counted; missing or unreadable files raise the
        usual errors of :meth:`arrays`.
        """
        ids = list(dict.fromkeys(video_ids))
        scan_cache = ValueScanCache(self.root) if cache else None
        problems: list[TadkitError] = []
        scanned = cached = 0
        try:
            for vid in tqdm(ids, desc="scan feature values", unit="video", disable=not progress, leave=False):
                try:
                    fresh, known = self._scan_video(vid, scan_cache, chunk_rows)
                except TadkitError as error:
                    problems.append(error)
                    continue
                scanned, cached = scanned + fresh, cached + known
        finally:
            cache_file = scan_cache.save() if scan_cache is not None else None
        if problems:
            raise _combine_problems(problems)
        return ValueScanReport(len(ids), scanned, cached, cache_file)

    def _scan_video(self, vid: str, scan_cache: ValueScanCache | None, chunk_rows: int | None) -> tuple[int, int]:
        """NaN/Inf check of one video's files; (files read, files answered by the cache)."""
        scanned = cached = 0
        arrays: list[np.ndarray] | None = None
        for index, (path, member) in enumerate(self.files(vid)):
            try:
                stat = path.stat()
            except OSError:
                self.arrays(vid)  # the usual "missing" / "cannot read" error
                raise TadkitError("feature file is missing", file=path, video=vid, field="path") from None
            key = scan_cache.key(path, member) if scan_cache is not None else ""
            verdict = scan_cache.get(key, stat) if scan_cache is not None else _MISSING
            if verdict is _MISSING:
                arrays = arrays if arrays is not None else self.arrays(vid)
                verdict = first_non_finite(arrays[index], chunk_rows)
                if scan_cache is not None:
                    scan_cache.put(key, stat, verdict)
                scanned += 1
            else:
                cached += 1
            if verdict is not None:
                row, column = verdict
                shown = path.resolve() if path.is_symlink() else path
                inside = f" (array {member!r})" if member is not None and self.spec.layout == "npz" else ""
                raise TadkitError(
                    f"contains NaN or Inf{inside}, first at feature {row}, column {column}: these features "
                    "cannot be trained on or detected from; re-extract them or drop the video",
                    file=shown, video=vid, field="values",
                )  # fmt: skip
        return scanned, cached

    def _check_length(self, vid: str, video: Any, n: int, timing: FeatureTiming, file: Path) -> bool:
        if self.spec.fixed_length is not None:
            if n != self.spec.fixed_length:
                raise TadkitError(
                    f"has {n} features but features.json says every video is resampled to {self.spec.fixed_length}",
                    file=file,
                    video=vid,
                    field="length",
                )
            return True
        frames = frames_at(video, timing.fps)
        if frames is None:
            return False
        lo, hi = timing.expected_length_range(frames)
        slack = self.length_tolerance.slack(hi)
        if n < lo - slack or n > hi + slack:
            seconds = frames / timing.fps
            raise TadkitError(
                f"has {n} features, but {seconds:.2f} s at {timing.fps:g} fps with a stride of "
                f"{timing.stride_frames:g} frames (clip {timing.clip_frames:g}) expects {lo}..{hi} "
                f"(tolerance {slack}); wrong fps, stride or features for this video?",
                file=file,
                video=vid,
                field="length",
            )
        return True


def _timing_from_timestamps(
    stamps: np.ndarray, fps: float, clip: float, step: float | None, file: Path, video_id: str
) -> FeatureTiming:
    """Affine timing fitted to sidecar timestamps; they must be evenly spaced (within half a frame)."""
    if len(stamps) == 1:
        stride_s = (step or 1.0) / fps
    else:
        stride_s = (stamps[-1] - stamps[0]) / (len(stamps) - 1)
    if not stride_s > 0:
        raise TadkitError("must increase", file=file, video=video_id, field="timestamps")
    fitted = stamps[0] + stride_s * np.arange(len(stamps))
    worst = float(np.max(np.abs(stamps - fitted)))
    if worst > 0.5 / fps + 1e-9:
        raise TadkitError(
            f"are not evenly spaced (off by up to {worst:.4f} s); windows need a constant step",
            file=file,
            video=video_id,
            field="timestamps",
        )
    stride_frames = stride_s * fps
    if step is not None and abs(stride_frames - step) > 0.5:
        raise TadkitError(
            f"are {stride_s:.4f} s apart = {stride_frames:.3f} frames at {fps:g} fps, but step says {step:g}",
            file=file,
            video=video_id,
            field="timestamps",
        )
    return FeatureTiming(fps=fps, stride_frames=float(stride_frames), clip_frames=clip, offset_frames=float(stamps[0] * fps))


# --------------------------------------------------------------------------------------------------
# Sub-sampling: keep every k-th feature (config ``data.feature_subsample``; OpenTAD ``sample_stride``)
# --------------------------------------------------------------------------------------------------


def _subsampled_length(length: int, factor: int) -> int:
    """Rows ``0, k, 2k, ...`` of ``length`` rows: ``ceil(length / k)`` (as ``features[::k]``)."""
    return -(-int(length) // int(factor))


class SubsampledVideoFeatures:
    """Rows ``0, k, 2k, ...`` of a :class:`VideoFeatures`, indexed like it (int, slice, int/bool array);
    only the kept rows are read from disk."""

    dtype = np.dtype(np.float32)

    def __init__(self, video: VideoFeatures, factor: int) -> None:
        self.video = video
        self.factor = int(factor)
        self.video_id = video.video_id
        self.shape = (_subsampled_length(len(video), self.factor), video.shape[1])

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: Any) -> np.ndarray:
        n = self.shape[0]
        if isinstance(index, tuple):
            raise TypeError("SubsampledVideoFeatures indexes rows only")
        if isinstance(index, slice):
            return self.video[np.arange(*index.indices(n), dtype=np.int64) * self.factor]
        if np.isscalar(index):
            row = int(index)
            if not -n <= row < n:
                raise IndexError(f"feature {row} out of range for {n} features")
            return self.video[(row % n) * self.factor]
        rows = np.asarray(index)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        rows = rows.astype(np.int64)
        if rows.size and (rows.min() < -n or rows.max() >= n):
            raise IndexError(f"feature index out of range for {n} features")
        return self.video[(rows % max(n, 1)) * self.factor]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)


class SubsampledFeatureStore:
    """A :class:`FeatureStore` seen with every ``factor``-th feature kept (OpenTAD ``sample_stride``).

    Feature ``j`` is the store's feature ``j * factor``, so its time mapping is the store's with
    ``stride_frames`` multiplied by ``factor`` (``clip_frames`` and ``offset_frames`` unchanged):
    ``t(j) = (j * factor * stride_frames + offset_frames) / fps``, exactly. A video of T features has
    ``ceil(T / factor)``. :meth:`check` validates the files as stored (lengths against the stored
    stride); everything else (``root``, ``spec``, ``dim``, ``files``, ...) is the wrapped store's.
    """

    def __init__(self, store: FeatureStore, factor: int) -> None:
        if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
            raise TadkitError(f"must be a positive integer, got {factor!r}", field="data.feature_subsample")
        self.store = store
        self.factor = factor

    def __getattr__(self, name: str) -> Any:
        if name in ("store", "factor") or name.startswith("__"):
            raise AttributeError(name)  # unpickling: the wrapped store is not set yet
        return getattr(self.store, name)

    def num_features(self, video_id: str) -> int:
        return _subsampled_length(self.store.num_features(video_id), self.factor)

    def timing(self, video_id: str, annotation: Any | None = None) -> FeatureTiming:
        base = self.store.timing(video_id, annotation)
        return FeatureTiming(base.fps, base.stride_frames * self.factor, base.clip_frames, base.offset_frames)

    def video(self, video_id: str) -> SubsampledVideoFeatures:
        return SubsampledVideoFeatures(self.store.video(video_id), self.factor)

    def read(self, video_id: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        return self.video(video_id)[start:stop]

    def check(self, annotations: Any, **kwargs: Any) -> FeatureCheckReport:
        return self.store.check(annotations, **kwargs)


def subsample_store(store: Any, factor: int) -> Any:
    """``store`` itself for ``factor == 1``, else a :class:`SubsampledFeatureStore` over it."""
    if factor == 1 and not isinstance(factor, bool):
        return store
    return SubsampledFeatureStore(store, factor)


# --------------------------------------------------------------------------------------------------
# Writing (used by synthetic data, `tadkit extract`, converters)
# --------------------------------------------------------------------------------------------------


def _validate_written(array: Any, name: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"{name}: features must be a 2-D (T, D) float array, got {array.dtype} {array.shape}")
    if array.dtype not in (np.float32, np.float16):
        array = array.astype(np.float32)
    return np.ascontiguousarray(array)


def save_features(
    root: str | Path,
    video_id: str,
    features: np.ndarray | Mapping[str, np.ndarray],
    spec: FeatureSpec,
    sidecar: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Write one video's features in ``spec``'s layout (atomically). Returns the written paths.

    ``features`` is a (T, D) array for layout "concat", or {stream: (T, D_s)} for "split"/"npz"
    (a mapping is also accepted for "concat" and concatenated in ``spec.streams`` order).
    """
    root = Path(root)
    check_video_id(video_id, file=root)
    written: list[Path] = []
    if isinstance(features, Mapping):
        missing = [s for s in spec.streams if s not in features]
        if missing or not spec.streams:
            raise ValueError(f"{video_id}: need arrays for streams {list(spec.streams)}, got {list(features)}")
        parts = {s: _validate_written(features[s], f"{video_id}/{s}") for s in spec.streams}
    else:
        if spec.layout != "concat":
            raise ValueError(f"{video_id}: layout {spec.layout!r} needs a {{stream: array}} mapping")
        parts = {"features": _validate_written(features, video_id)}
    if spec.layout == "concat":
        array = parts["features"] if "features" in parts else np.concatenate([parts[s] for s in spec.streams], axis=1)
        path = root / f"{video_id}.npy"
        numpy_save(path, array)
        written.append(path)
    elif spec.layout == "split":
        for stream, array in parts.items():
            path = root / stream / f"{video_id}.npy"
            numpy_save(path, array)
            written.append(path)
    else:
        path = root / f"{video_id}.npz"
        with atomic_open(path, "wb") as handle:
            np.savez(handle, **parts)  # uncompressed, so members stay memory-mappable
        written.append(path)
    if sidecar is not None:
        side = dict(sidecar)
        if "timestamps" in side:
            side["timestamps"] = [float(t) for t in np.asarray(side["timestamps"]).ravel()]
        path = root / f"{video_id}.json"
        write_json(path, side)
        written.append(path)
    return written


def write_feature_dir(
    root: str | Path,
    spec: FeatureSpec,
    videos: Mapping[str, np.ndarray | Mapping[str, np.ndarray]] | Iterable[tuple[str, Any]],
) -> Path:
    """Write ``features.json`` and every video's features; returns the directory."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    items = videos.items() if isinstance(videos, Mapping) else videos
    for video_id, features in items:
        save_features(root, video_id, features, spec)
    spec.save(root)
    return root


__all__ = [
    "A2NET_THUMOS_FPS_EXCEPTIONS",
    "FEATURES_JSON",
    "FPS_TABLES",
    "FORMAT_TAG",
    "FeatureCheckReport",
    "FeatureSpec",
    "FeatureStore",
    "FeatureTiming",
    "LengthTolerance",
    "SCAN_CACHE_NAME",
    "SubsampledFeatureStore",
    "SubsampledVideoFeatures",
    "ValueScanCache",
    "ValueScanReport",
    "VideoFeatures",
    "a2net_thumos_fps",
    "fps_table_by_name",
    "first_non_finite",
    "open_feature_array",
    "frames_at",
    "save_features",
    "subsample_store",
    "write_feature_dir",
]
