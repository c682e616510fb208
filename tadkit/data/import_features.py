"""Import feature files released with official code bases into tadkit's per-video layout.

``tadkit data import-features SRC --layout L --out DIR`` reads one of these layouts and writes
``DIR/features.json`` + ``DIR/<video>.npy`` ((T, D) time-major, RGB first) with the source's exact
time mapping (docs/features.md, "Importing released features"):

=============  ==================================================================  =====================================
layout         source files                                                        time mapping written
=============  ==================================================================  =====================================
``a2net``      one ``.npz`` per 128-feature window: ``vid_name``, ``begin_frame``,   stride 4, clip 16, offset 0 (feature k
               ``feat_spa`` / ``feat_tem`` (1024, 128) channel-first                 = frame 4k); per-video fps sidecar
                                                                                   from A2Net's table (30, 25/24 listed)
``ecm``        one ``.npz`` per video: ``feat_spa`` / ``feat_tem`` (1024, T),        ``fixed_length`` T: feature k at
               ``frame_num``, ``fps`` (every video resampled to the same T)        k * duration / T
``acrnet``     ``<video>_rgb.npy`` + ``<video>_flow.npy`` (or ``rgb/<video>.npy`` +   fps 25, stride 16, clip 16, offset 0
               ``flow/<video>.npy``), (n, 1024) time-major
``actionformer`` ``<video>.npy`` (T, 2048) time-major (THUMOS14 I3D)                stride 4, clip 16, offset centre (8
                                                                                   frames); fps from the annotations
=============  ==================================================================  =====================================

A2Net's training split only holds windows that contain ground truth, so its videos have stretches
no window covers. They are never filled silently: ``gaps="error"`` (default) stops and lists them,
``"zero"`` writes zeros there and records the ranges in the video's sidecar (``gaps``, feature
indices, end exclusive) and in ``import_report.json``, ``"drop"`` leaves such videos out.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from tadkit.data.features import FEATURES_JSON, FeatureSpec, a2net_thumos_fps, save_features
from tadkit.data.ids import check_video_id
from tadkit.errors import TadkitError
from tadkit.utils.io import ensure_writable_dir, write_json
from tadkit.utils.progress import progress

__all__ = ["DUPLICATE_POLICIES", "GAP_POLICIES", "IMPORT_LAYOUTS", "ImportReport", "VideoImport", "import_features",
           "REPORT_FILE"]

IMPORT_LAYOUTS: tuple[str, ...] = ("a2net", "ecm", "acrnet", "actionformer")
GAP_POLICIES: tuple[str, ...] = ("error", "zero", "drop")
DUPLICATE_POLICIES: tuple[str, ...] = ("error", "first", "last")
REPORT_FILE = "import_report.json"
_A2NET_STRIDE = 4  # frames per feature (A2Net: "I3D-4")
_A2NET_NAME = re.compile(r"^(?P<video>.+)_(?P<begin>\d+)$")  # <vid_name>_<begin_frame zero-padded>.npz


@dataclass
class VideoImport:
    """What was written for one video."""

    video_id: str
    num_features: int
    sources: int  # files read
    gaps: list[tuple[int, int]] = field(default_factory=list)  # [start, end) feature ranges no window covers
    padding_trimmed: int = 0  # a2net: trailing rows that repeated the last feature (window padding)
    length_cut: int = 0  # acrnet: rows cut so RGB and flow agree
    note: str = ""


@dataclass
class ImportReport:
    layout: str
    out: str
    spec: dict[str, Any]
    videos: list[VideoImport]
    dropped: dict[str, str] = field(default_factory=dict)  # video -> reason
    gaps_policy: str = "error"
    duplicates: dict[str, list[str]] = field(default_factory=dict)  # video -> source files read, the kept one first
    duplicates_policy: str = "error"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for video in out["videos"]:
            video["gaps"] = [list(g) for g in video["gaps"]]
        return out

    def summary(self) -> str:
        n = len(self.videos)
        feats = sum(v.num_features for v in self.videos)
        lines = [f"imported {n} video(s), {feats} features (layout {self.layout}) -> {self.out}"]
        gapped = [v for v in self.videos if v.gaps]
        if gapped:
            missing = sum(e - s for v in gapped for s, e in v.gaps)
            lines.append(f"{len(gapped)} video(s) have {sum(len(v.gaps) for v in gapped)} gap(s) no window covers "
                         f"({missing} features, filled with zeros; ranges in each sidecar and {REPORT_FILE})")
        if self.dropped:
            shown = ", ".join(list(self.dropped)[:5]) + (", ..." if len(self.dropped) > 5 else "")
            lines.append(f"{len(self.dropped)} video(s) left out: {shown} (reasons in {REPORT_FILE})")
        if self.duplicates:
            shown = ", ".join(list(self.duplicates)[:5]) + (", ..." if len(self.duplicates) > 5 else "")
            lines.append(f"{len(self.duplicates)} video(s) had several source files, the {self.duplicates_policy} "
                         f"(in sorted path order) kept: {shown} (all files in {REPORT_FILE})")
        trimmed = [v for v in self.videos if v.padding_trimmed]
        if trimmed:
            lines.append(f"{len(trimmed)} video(s): trailing window padding removed "
                         f"({sum(v.padding_trimmed for v in trimmed)} repeated features)")
        cut = [v for v in self.videos if v.length_cut]
        if cut:
            lines.append(f"{len(cut)} video(s): RGB/flow lengths differed by 1, longer stream cut")
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# reading helpers
# ----------------------------------------------------------------------------------------------


def _open_npz(path: Path) -> Any:
    try:
        return np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as error:
        raise TadkitError(f"not a readable .npz file ({error})", file=path, field="path") from None


def _member(data: Any, path: Path, key: str) -> np.ndarray:
    if key not in data.files:
        raise TadkitError(f"has no array {key!r} (arrays: {', '.join(data.files) or 'none'})", file=path, field=key)
    try:
        return data[key]
    except (ValueError, OSError, zipfile.BadZipFile) as error:
        raise TadkitError(f"array {key!r} cannot be read ({error})", file=path, field=key) from None


def _float_2d(array: np.ndarray, path: Path, key: str, what: str) -> np.ndarray:
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.floating):
        raise TadkitError(f"must be a 2-D float array {what}, got {array.dtype} {array.shape}", file=path, field=key)
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise TadkitError(f"is empty: shape {array.shape}", file=path, field=key)
    if array.dtype not in (np.float32, np.float16):
        array = array.astype(np.float32)
    return array


def _scalar(data: Any, path: Path, key: str, kind: Callable[[Any], Any]) -> Any:
    value = _member(data, path, key)
    if value.size != 1:
        raise TadkitError(f"must be a single value, got shape {value.shape}", file=path, field=key)
    try:
        return kind(value.reshape(()).item())
    except (TypeError, ValueError):
        raise TadkitError(f"is not a valid {kind.__name__}: {value.reshape(()).item()!r}", file=path,
                          field=key) from None


def _load_npy(path: Path, key: str) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise TadkitError(f"not a readable .npy file ({error})", file=path, field=key) from None


def _gaps(covered: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) runs of False in a boolean mask."""
    edges = np.diff(np.concatenate([[0], (~covered).astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [(int(s), int(e)) for s, e in zip(starts, ends)]


# ----------------------------------------------------------------------------------------------
# A2Net: 128-feature windows
# ----------------------------------------------------------------------------------------------


@dataclass
class _Window:
    path: Path
    begin_frame: int


def _a2net_index(src: Path) -> dict[str, list[_Window]]:
    files = sorted(src.rglob("*.npz"))
    if not files:
        raise TadkitError("no .npz window files found (A2Net names them <video>_<begin_frame>.npz)", file=src,
                          field="path")
    videos: dict[str, list[_Window]] = {}
    for path in files:
        match = _A2NET_NAME.match(path.stem)
        if match is None:
            raise TadkitError("file name is not <video>_<begin_frame>.npz as in A2Net's release", file=path,
                              field="path")
        video = check_video_id(match["video"], file=path)
        videos.setdefault(video, []).append(_Window(path, int(match["begin"])))
    return videos


def _a2net_video(
    video: str, windows: list[_Window], trim_padding: bool, expected: int | None = None
) -> tuple[np.ndarray, VideoImport]:
    """Reassemble one video's (T, 2048) features from its windows (RGB = feat_spa first).

    ``expected``: the video's feature count when the annotations give its duration; coverage that
    ends before it leaves a final gap (the training split's last window need not reach the end)."""
    blocks: list[tuple[int, np.ndarray, Path]] = []
    for window in windows:
        data = _open_npz(window.path)
        with data:
            name = _scalar(data, window.path, "vid_name", str)
            begin = _scalar(data, window.path, "begin_frame", int)
            spa = _float_2d(_member(data, window.path, "feat_spa"), window.path, "feat_spa", "(1024, 128) channel-first")
            tem = _float_2d(_member(data, window.path, "feat_tem"), window.path, "feat_tem", "(1024, 128) channel-first")
        if name != video:
            raise TadkitError(f"vid_name is {name!r} but the file name says {video!r}", file=window.path,
                              field="vid_name")
        if begin != window.begin_frame:
            raise TadkitError(f"begin_frame is {begin} but the file name says {window.begin_frame}",
                              file=window.path, field="begin_frame")
        if begin < 0:
            raise TadkitError(f"begin_frame must be >= 0, got {begin}", file=window.path, field="begin_frame")
        if spa.shape[1] != tem.shape[1]:
            raise TadkitError(f"feat_spa has {spa.shape[1]} steps but feat_tem {tem.shape[1]} (both are "
                              "channel-first: (channels, steps))", file=window.path, field="feat_tem")
        block = np.concatenate([spa.T, tem.T.astype(spa.dtype)], axis=1)  # (W, D), time-major, RGB first
        blocks.append((begin // _A2NET_STRIDE, block, window.path))  # feature index = floor(begin_frame / 4)
    dims = {b.shape[1] for _, b, _ in blocks}
    if len(dims) > 1:
        raise TadkitError(f"windows of this video have different channel counts {sorted(dims)}",
                          file=blocks[0][2].parent, video=video, field="feat_spa")
    blocks.sort(key=lambda item: item[0])
    length = max(start + len(b) for start, b, _ in blocks)
    _check_span(video, blocks, length, expected)  # before allocating what a file name may ask for
    out = np.zeros((length, dims.pop()), dtype=blocks[0][1].dtype)
    covered = np.zeros(length, dtype=bool)
    owner = np.full(length, -1, dtype=np.int64)
    for i, (start, block, path) in enumerate(blocks):
        stop = start + len(block)
        seen = covered[start:stop]
        differs = seen & ~np.all(out[start:stop] == block, axis=1)
        if differs.any():
            row = start + int(np.flatnonzero(differs)[0])
            raise TadkitError(
                f"overlapping windows disagree at feature {row} (also in {blocks[owner[row]][2].name}); "
                "not windows of one feature sequence?", file=path, video=video, field="feat_spa")
        out[start:stop] = block
        covered[start:stop] = True
        owner[start:stop] = i
    trimmed = 0
    if trim_padding and length > 1:
        # A2Net pads a window that runs past the video by repeating the last feature: drop that tail.
        same = np.all(out[1:] == out[:-1], axis=1)
        tail = len(same) - (int(np.flatnonzero(~same)[-1]) + 1) if (~same).any() else len(same)
        trimmed = int(tail)
        if trimmed:
            out, covered = out[: length - trimmed], covered[: length - trimmed]
    note = ""
    if expected is not None and expected > len(out):
        tail = expected - len(out)
        out = np.concatenate([out, np.zeros((tail, out.shape[1]), out.dtype)])
        covered = np.concatenate([covered, np.zeros(tail, bool)])
    elif expected is None:
        note = "video end unknown (no duration given): features end with the last window"
    info = VideoImport(video, len(out), len(blocks), _gaps(covered), trimmed, note=note)
    return out, info


def _check_span(video: str, blocks: list[tuple[int, np.ndarray, Path]], length: int, expected: int | None) -> None:
    """Bound the features a video's windows ask for by what its data can need: the video's own length
    (from its duration) plus one window of padding, or without a duration no more uncovered features
    than covered ones (a real release tiles its videos). A ``begin_frame`` of 4e12 is refused here,
    not by an allocator."""
    starts = np.array([start for start, _, _ in blocks], dtype=np.int64)
    stops = starts + np.array([len(b) for _, b, _ in blocks], dtype=np.int64)
    reach = np.maximum.accumulate(stops)  # blocks are sorted by start: union length without a mask
    covered = int(np.sum(np.clip(stops - np.maximum(starts, np.concatenate([[0], reach[:-1]])), 0, None)))
    longest = int(np.max(stops - starts))
    limit = expected + longest if expected is not None else 2 * covered
    if length <= limit:
        return
    far = int(np.argmax(stops))
    bound = (f"the video has {expected} features by its duration" if expected is not None
             else f"its windows cover only {covered} features (pass --annotations to bound it by the duration)")
    raise TadkitError(f"begin_frame puts this window at features {int(starts[far])}..{length}, past the video's "
                      f"end: {bound}", file=blocks[far][2], video=video, field="begin_frame")


def _a2net_expected_lengths(annotations: Any, videos: list[str], fps: float | None) -> dict[str, int]:
    """floor(duration * fps / 4) per annotated video (A2Net's fps table unless ``fps`` is fixed)."""
    if annotations is None:
        return {}
    if not hasattr(annotations, "videos"):
        from tadkit.data.annotations import load_annotations

        annotations = load_annotations(annotations)
    out = {}
    for video in videos:
        ann = annotations.videos.get(video)
        if ann is None or not ann.duration:
            continue
        rate = fps if fps is not None else a2net_thumos_fps(video)
        out[video] = int(np.floor(ann.duration * rate / _A2NET_STRIDE + 1e-6))
    return out


# ----------------------------------------------------------------------------------------------
# the importer
# ----------------------------------------------------------------------------------------------


def _ecm_videos(src: Path) -> list[tuple[str, Path]]:
    """(video, file) per ``.npz``: the video is the file's ``vid_name`` when it has one, else its stem."""
    files = sorted(src.rglob("*.npz"))
    if not files:
        raise TadkitError("no per-video .npz files found (ECM: <video>.npz with feat_spa, feat_tem, frame_num, fps)",
                          file=src, field="path")
    videos = []
    for path in files:
        with _open_npz(path) as data:
            video = _scalar(data, path, "vid_name", str) if "vid_name" in data.files else path.stem
        videos.append((check_video_id(video, file=path, field="vid_name" if video != path.stem else "path"), path))
    return videos


def _one_source(sources: dict[str, list[Path]], policy: str, kept: dict[str, list[str]],
                what: str = "") -> dict[str, Path]:
    """One file per video: ``policy`` "error" refuses a video with several source files (naming two of
    them), "first" / "last" keeps the first / last in sorted path order and records all in ``kept``."""
    chosen = {}
    for video, paths in sources.items():
        paths = sorted(paths)
        if len(paths) > 1:
            if policy == "error":
                raise TadkitError(f"two source files for video {video!r}{what}: {paths[0]} and {paths[1]}; one "
                                  "would silently replace the other. Remove one, or pass --on-duplicate first|last",
                                  file=paths[1], video=video, field="path")
            paths = paths if policy == "first" else paths[::-1]
            kept.setdefault(video, []).extend(str(p) for p in paths)
        chosen[video] = paths[0]
    return chosen


def _acrnet_pairs(src: Path, on_duplicate: str, duplicates: dict[str, list[str]]) -> list[tuple[str, Path, Path]]:
    found: dict[str, dict[str, list[Path]]] = {}
    for path in sorted(src.rglob("*.npy")):
        stem = path.stem
        if stem.endswith("_rgb") or stem.endswith("_flow"):
            video, stream = stem.rsplit("_", 1)
        elif path.parent.name in ("rgb", "flow"):
            video, stream = stem, path.parent.name
        else:
            continue
        found.setdefault(check_video_id(video, file=path), {}).setdefault(stream, []).append(path)
    by_stream = {stream: _one_source({v: p[stream] for v, p in found.items() if stream in p}, on_duplicate, duplicates,
                                     f" ({stream})") for stream in ("rgb", "flow")}
    pairs = {video: {stream: by_stream[stream][video] for stream in p} for video, p in found.items()}
    if not pairs:
        raise TadkitError("no ACRNet feature files found (<video>_rgb.npy + <video>_flow.npy, or rgb/<video>.npy + "
                          "flow/<video>.npy)", file=src, field="path")
    out = []
    for video, streams in sorted(pairs.items()):
        for stream in ("rgb", "flow"):
            if stream not in streams:
                have = next(iter(streams.values()))
                raise TadkitError(f"has no matching {stream} file for video {video!r}", file=have, video=video,
                                  field=stream)
        out.append((video, streams["rgb"], streams["flow"]))
    return out


def import_features(
    src: str | Path,
    out: str | Path,
    layout: str,
    *,
    gaps: str = "error",
    fps: float | None = None,
    trim_padding: bool = True,
    annotations: Any = None,
    overwrite: bool = False,
    show_progress: bool = True,
    on_duplicate: str = "error",
) -> ImportReport:
    """Convert ``src`` (a directory of released feature files) into a tadkit feature directory ``out``.

    Args:
        layout: one of :data:`IMPORT_LAYOUTS` (module docstring).
        gaps: ``a2net`` only: ``error`` | ``zero`` | ``drop`` for stretches no window covers.
        fps: fix the frame rate in ``features.json`` (``a2net``: instead of A2Net's THUMOS14 table;
            ``actionformer``: instead of the annotations' fps). Not used by ``ecm``/``acrnet``.
        trim_padding: ``a2net``: drop trailing rows that repeat the last feature (the window padding).
        annotations: ``a2net``: an AnnotationSet (or a file for ``load_annotations``) giving durations,
            so a video whose last window stops short of its end (training split) gets a final gap up to
            ``floor(duration * fps / 4)`` features instead of silently ending early.
        overwrite: allow an ``out`` that already has a ``features.json``.
        on_duplicate: several source files for one video (ECM files with the same ``vid_name``,
            ``a/v.npy`` and ``b/v.npy``): ``error`` (default) names two of them, ``first`` / ``last``
            keeps the first / last in sorted path order and lists them all in the report.
    """
    src, out = Path(src), Path(out)
    if layout not in IMPORT_LAYOUTS:
        raise TadkitError(f"unknown layout {layout!r}; choose from {', '.join(IMPORT_LAYOUTS)}", field="layout")
    if on_duplicate not in DUPLICATE_POLICIES:
        raise TadkitError(f"unknown duplicate policy {on_duplicate!r}; choose from {', '.join(DUPLICATE_POLICIES)}",
                          field="on_duplicate")
    if gaps not in GAP_POLICIES:
        raise TadkitError(f"unknown gap policy {gaps!r}; choose from {', '.join(GAP_POLICIES)}", field="gaps")
    if not src.is_dir():
        raise TadkitError("source must be a directory of feature files", file=src, field="path")
    if fps is not None and not (np.isfinite(fps) and fps > 0):
        raise TadkitError(f"must be > 0, got {fps}", field="fps")
    if fps is not None and layout in ("ecm", "acrnet"):
        raise TadkitError(f"the {layout} layout fixes its own time mapping; --fps does not apply", field="fps")
    if (out / FEATURES_JSON).exists() and not overwrite:
        raise TadkitError("already holds a feature directory; choose another --out or pass --overwrite",
                          file=out / FEATURES_JSON, field="out")
    ensure_writable_dir(out, hint="choose a writable --out")  # read-only or full: one clear error, before any work
    videos: list[VideoImport] = []
    dropped: dict[str, str] = {}
    duplicates: dict[str, list[str]] = {}
    dims: set[int] = set()

    def write(video: str, array: np.ndarray, spec: FeatureSpec, sidecar: dict[str, Any] | None) -> None:
        dims.add(int(array.shape[1]))
        if len(dims) > 1:
            raise TadkitError(f"has D={array.shape[1]} but earlier videos have D={min(dims - {array.shape[1]})}",
                              video=video, field="dim")
        save_features(out, video, array, spec, sidecar=sidecar)

    if layout == "a2net":
        spec = FeatureSpec(fps=fps, stride_frames=_A2NET_STRIDE, clip_frames=16, offset_frames=0,
                           streams=("rgb", "flow"), extra={"source_layout": "a2net"})
        index = _a2net_index(src)
        expected = _a2net_expected_lengths(annotations, list(index), fps)
        reassembled: list[tuple[np.ndarray, VideoImport]] = []
        for video, windows in progress(index.items(), total=len(index), desc="read A2Net windows", unit="video",
                                       disable=not show_progress):
            reassembled.append(_a2net_video(video, windows, trim_padding, expected.get(video)))
        with_gaps = [info for _, info in reassembled if info.gaps]
        if with_gaps and gaps == "error":
            first = with_gaps[0]
            shown = ", ".join(f"[{s}, {e})" for s, e in first.gaps[:4]) + (", ..." if len(first.gaps) > 4 else "")
            raise TadkitError(
                f"{len(with_gaps)} of {len(reassembled)} videos have features no window covers ({first.video_id}: "
                f"features {shown} of {first.num_features}); A2Net's training split only ships windows that contain "
                "ground truth. Pass --gaps zero (fill with zeros, ranges noted per video) or --gaps drop "
                "(leave those videos out)", file=src, video=first.video_id, field="gaps")
        for array, info in reassembled:
            if info.gaps and gaps == "drop":
                dropped[info.video_id] = f"{len(info.gaps)} gap(s): {info.gaps}"
                continue
            sidecar: dict[str, Any] = {} if fps is not None else {"fps": a2net_thumos_fps(info.video_id)}
            if info.gaps:
                sidecar["gaps"] = [list(g) for g in info.gaps]
                sidecar["gaps_filled"] = "zero"
                info.note = "; ".join(filter(None, ["zeros where no window covers the video", info.note]))
            write(info.video_id, array, spec, sidecar or None)
            videos.append(info)
    elif layout == "ecm":
        spec = FeatureSpec(fps=None, stride_frames=4, clip_frames=16, offset_frames=0, streams=("rgb", "flow"),
                           extra={"source_layout": "ecm"})
        lengths: dict[int, str] = {}
        sources: dict[str, list[Path]] = {}
        for video, path in _ecm_videos(src):
            sources.setdefault(video, []).append(path)
        chosen = _one_source(sources, on_duplicate, duplicates)
        for video, path in progress(sorted(chosen.items()), desc="import ECM features", unit="video",
                                    disable=not show_progress):
            data = _open_npz(path)
            with data:
                spa = _float_2d(_member(data, path, "feat_spa"), path, "feat_spa", "(1024, T) channel-first")
                tem = _float_2d(_member(data, path, "feat_tem"), path, "feat_tem", "(1024, T) channel-first")
                frame_num = _scalar(data, path, "frame_num", float)
                video_fps = _scalar(data, path, "fps", float)
            if spa.shape[1] != tem.shape[1]:
                raise TadkitError(f"feat_spa has {spa.shape[1]} steps but feat_tem {tem.shape[1]}", file=path,
                                  field="feat_tem")
            if not (frame_num > 0 and video_fps > 0):
                raise TadkitError(f"frame_num ({frame_num:g}) and fps ({video_fps:g}) must be > 0", file=path,
                                  field="frame_num" if not frame_num > 0 else "fps")
            steps = int(spa.shape[1])
            lengths.setdefault(steps, str(path))
            if len(lengths) > 1:
                first_len, first_file = next(iter(lengths.items()))
                raise TadkitError(f"has {steps} steps but {first_file} has {first_len}; ECM resamples every video to "
                                  "the same T", file=path, field="feat_spa")
            spec = replace(spec, fixed_length=steps)
            array = np.concatenate([spa.T, tem.T.astype(spa.dtype)], axis=1)
            write(video, array, spec, {"fps": video_fps, "frame_num": frame_num,
                                       "ecm_duration": frame_num / video_fps})
            videos.append(VideoImport(video, steps, 1, note=f"resampled to {steps}; ECM time: k * frame_num / "
                                                           f"({steps} * fps) = k * {frame_num / video_fps / steps:.4g} s"))
    elif layout == "acrnet":
        spec = FeatureSpec(fps=25.0, stride_frames=16, clip_frames=16, offset_frames=0, streams=("rgb", "flow"),
                           extra={"source_layout": "acrnet"})
        pairs = _acrnet_pairs(src, on_duplicate, duplicates)
        for video, rgb_path, flow_path in progress(pairs, desc="import ACRNet features", unit="video",
                                                   disable=not show_progress):
            rgb = _float_2d(_load_npy(rgb_path, "rgb"), rgb_path, "rgb", "(n, 1024) time-major")
            flow = _float_2d(_load_npy(flow_path, "flow"), flow_path, "flow", "(n, 1024) time-major")
            n = min(len(rgb), len(flow))
            if max(len(rgb), len(flow)) - n > 1:
                raise TadkitError(f"has {len(flow)} features but {rgb_path.name} has {len(rgb)}", file=flow_path,
                                  video=video, field="flow")
            array = np.concatenate([np.asarray(rgb[:n]), np.asarray(flow[:n]).astype(rgb.dtype)], axis=1)
            write(video, array, spec, None)
            videos.append(VideoImport(video, n, 2, length_cut=max(len(rgb), len(flow)) - n))
    else:  # actionformer
        spec = FeatureSpec(fps=fps, stride_frames=4, clip_frames=16, offset_frames=8.0,  # clip centre
                           extra={"source_layout": "actionformer"})
        files = sorted(src.rglob("*.npy"))
        if not files:
            raise TadkitError("no <video>.npy files found (ActionFormer THUMOS14: (T, 2048) time-major)", file=src,
                              field="path")
        sources = {}
        for path in files:
            sources.setdefault(check_video_id(path.stem, file=path), []).append(path)
        chosen = _one_source(sources, on_duplicate, duplicates)
        for video, path in progress(sorted(chosen.items()), desc="import ActionFormer features", unit="video",
                                    disable=not show_progress):
            array = _float_2d(_load_npy(path, "features"), path, "features", "(T, D) time-major")
            write(video, np.asarray(array), spec, None)
            videos.append(VideoImport(video, len(array), 1))
    if not videos:
        raise TadkitError(f"no video left to write ({len(dropped)} dropped for gaps)", file=src, field="gaps")
    spec = replace(spec, dim=dims.pop())
    spec.save(out)
    report = ImportReport(layout, str(out), spec.to_dict(), videos, dropped, gaps, duplicates, on_duplicate)
    write_json(out / REPORT_FILE, report.to_dict())
    return report


def register_import_command(subparsers: Any) -> None:
    """``tadkit data import-features``; called by tadkit.commands.data."""
    parser = subparsers.add_parser(
        "import-features",
        help="convert released feature files (A2Net, ECM, ACRNet, ActionFormer) to tadkit's layout",
        description=(
            "Read the feature files an official code base released and write tadkit's per-video layout "
            "(features.json + <video>.npy, (T, D) time-major, RGB first) with that source's exact time mapping. "
            "Layouts: a2net (npz windows; stride 4 at the video fps, A2Net's THUMOS14 fps table), ecm (per-video "
            "npz resampled to T: fixed_length), acrnet (<video>_rgb.npy + <video>_flow.npy, 16 frames per feature "
            "at 25 fps), actionformer (<video>.npy, stride 4, 16-frame clips, feature at the clip centre). "
            "Details: docs/features.md."
        ),
    )
    parser.add_argument("src", metavar="SRC", help="directory of released feature files (searched recursively)")
    parser.add_argument("--layout", required=True, choices=IMPORT_LAYOUTS, help="which release SRC holds")
    parser.add_argument("--out", required=True, metavar="DIR", help="tadkit feature directory to write")
    parser.add_argument("--gaps", choices=GAP_POLICIES, default="error",
                        help="a2net: video stretches no window covers (the training split ships only windows with "
                             "ground truth): error (default; lists them), zero (fill, ranges noted in each sidecar "
                             "and import_report.json), drop (leave those videos out)")
    parser.add_argument("--fps", type=float, default=None,
                        help="a2net/actionformer: one frame rate for every video (default: a2net A2Net's THUMOS14 "
                             "table, actionformer the annotations' fps)")
    parser.add_argument("--annotations", default=None, metavar="GT",
                        help="a2net: annotations with durations (e.g. ActionFormer's thumos14.json), so a video "
                             "whose last window stops before its end gets a final gap instead of ending early")
    parser.add_argument("--keep-padding", action="store_true",
                        help="a2net: keep trailing rows that repeat the last feature (window padding)")
    parser.add_argument("--on-duplicate", choices=DUPLICATE_POLICIES, default="error",
                        help="several source files for one video id (ECM files with the same vid_name, a/v.npy and "
                             "b/v.npy): error (default; names them), first / last (keep the first / last in sorted "
                             "path order; all are listed in import_report.json)")
    parser.add_argument("--overwrite", action="store_true", help="write into a directory with a features.json")
    parser.set_defaults(func=_run)


def _run(args: Any) -> int:
    report = import_features(args.src, args.out, args.layout, gaps=args.gaps, fps=args.fps,
                             trim_padding=not args.keep_padding, annotations=args.annotations,
                             overwrite=args.overwrite, on_duplicate=args.on_duplicate)
    print(report.summary())
    return 0
