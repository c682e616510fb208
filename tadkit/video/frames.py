"""`tadkit data frames`: videos -> memory-mappable frame arrays for end-to-end AFSD.

Follows the official AFSD preprocessing (``AFSD/common/video2npy.py`` and
``AFSD/common/gen_denseflow_npy.py`` of TencentYoutuResearch/ActionDetection-AFSD @ ed86a0d):

* **Sampling** (10 fps by default). Not by timestamp: an accumulator over decoded frames. With
  ``step = native_fps / fps``, every decoded frame adds 1 to the accumulator; when it reaches
  ``step`` the frame is kept and ``step`` is subtracted. So native frame ``i`` (0-based) is kept iff
  the accumulator passes after ``i + 1`` frames; ``native_fps < fps`` is refused (as the official
  script does). The loop is kept literally (:class:`AccumulatorSampler`): the floating-point
  remainder it carries decides ties (e.g. 29.97 fps) and a closed form would not reproduce it.
* **At most N frames** (``--max-frames N``, the ActivityNet preprocessing ``AFSD/anet_data/transform_videos.py``
  + ``video2npy.py``): each video is sampled at its own rate ``native_fps * min(1, N / native_frames)``
  (``native_frames`` from the container, as the official ``CAP_PROP_FRAME_COUNT``; ``--fps`` is not used)
  with the same accumulator, and cut to N frames; the rate is stored per video (``"fps"`` of its entry).
  The official re-encodes with ``ffmpeg -r`` (timestamp-based frame picking), which can keep other frames.
* **Resize** of each kept frame to ``size x size`` with PIL bicubic, aspect ratio not preserved.
* **Flow** (``--flow``), TV-L1 (bound 20) encoded as denseflow does: clipped to [-20, 20] pixels and
  mapped to uint8 ``round(255 * (v + 20) / 40)``; x and y channels. Two sources:

  - ``frames`` (default; the script's ``__main__`` and the README's procedure): flow between
    consecutive *sampled, resized* frames, so flow ``k`` is frames ``k -> k + 1``; the last flow is
    repeated so there is one per RGB frame.
  - ``video`` (the script's ``gen_flow_npy_with_sample``): flow between consecutive *native*
    frames at full resolution, the same accumulator applied to the flow sequence (flow ``j`` =
    native ``j -> j + 1`` is kept iff native frame ``j`` is), each kept x/y image resized bicubic to
    ``size``; the last kept flow is repeated when the flow sequence (one shorter) comes up short.

  Not reproduced: the JPEG round trips of the official pipeline (frames written as JPEG before
  denseflow, flow stored as JPEG) and denseflow's CUDA TV-L1 (OpenCV's CPU Dual TV-L1 is used).

On-disk layout (read by :class:`tadkit.data.frames.FrameStore`)::

    OUT/frames.json        {"format": "tadkit-frames", "version": 1, "fps": 10.0, "size": [H, W],
                            "streams": ["rgb"] or ["rgb", "flow"],
                            "videos": {ID: {"num_frames", "native_fps", "native_frames",
                                            "duration", "source"[, "fps"]}}}
                           (with --max-frames: "fps": null, "max_frames": N and each video's "fps")
    OUT/rgb/ID.npy         uint8 (num_frames, H, W, 3) RGB
    OUT/flow/ID.npy        uint8 (num_frames, H, W, 2) x, y (only with --flow)

(``frames.json`` also records ``"flow": {"method", "bound", "source"}`` when flow is written.)
Every ``.npy`` is streamed into a temp file and renamed when complete; ``frames.json`` is rewritten
atomically after each video, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Iterable

import numpy as np

from tadkit.data.ids import check_video_id
from tadkit.errors import TadkitError

FORMAT = "tadkit-frames"
VERSION = 1
INDEX_FILE = "frames.json"
STREAM_CHANNELS = {"rgb": 3, "flow": 2}  # stream directory -> channels per frame
FLOW_BOUND = 20.0  # pixels, denseflow ``-b=20``
FLOW_SOURCES = ("frames", "video")
DEFAULT_FLOW_SOURCE = "frames"
INSTALL_FLOW_HINT = (
    "--flow needs TV-L1 optical flow from OpenCV's contrib build: pip install 'tadkit[flow]' "
    "(= opencv-contrib-python-headless, same version as your opencv)"
)

FlowFn = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (gray0, gray1) uint8 (H, W) -> (H, W, 2) float32

__all__ = [
    "AccumulatorSampler",
    "FORMAT",
    "FrameSettings",
    "INDEX_FILE",
    "STREAM_CHANNELS",
    "VERSION",
    "convert_video",
    "convert_videos",
    "find_videos",
    "keep_mask",
    "quantize_flow",
    "read_index",
    "register_frames_command",
    "resize_bicubic",
    "sampled_count",
]


# --------------------------------------------------------------------------------------------------
# the official sampling rule
# --------------------------------------------------------------------------------------------------


class AccumulatorSampler:
    """The official frame sampler: call once per decoded frame, in order; True = keep the frame."""

    def __init__(self, native_fps: float, fps: float = 10.0) -> None:
        if not (native_fps > 0 and fps > 0):
            raise ValueError(f"fps must be > 0 (native {native_fps}, target {fps})")
        self.step = native_fps / fps
        self.accumulated = 0.0

    def __call__(self) -> bool:
        self.accumulated += 1
        if self.accumulated >= self.step:
            self.accumulated -= self.step
            return True
        return False


def keep_mask(num_frames: int, native_fps: float, fps: float = 10.0) -> np.ndarray:
    """Which of ``num_frames`` native frames the official sampler keeps (bool array).

    A plain loop on purpose: the decision carries a float remainder from frame to frame, and only the
    same sequence of float operations gives the same answer at near-ties.
    """
    sampler = AccumulatorSampler(native_fps, fps)
    return np.fromiter((sampler() for _ in range(int(num_frames))), dtype=bool, count=int(num_frames))


def sampled_count(num_frames: int, native_fps: float, fps: float = 10.0) -> int:
    return int(keep_mask(num_frames, native_fps, fps).sum())


# --------------------------------------------------------------------------------------------------
# image operations
# --------------------------------------------------------------------------------------------------


def resize_bicubic(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 (h, w[, c]) -> (H, W[, c]) with PIL bicubic, aspect ratio not kept (the official ``imresize``)."""
    from PIL import Image

    height, width = size
    if image.shape[:2] == (height, width):
        return np.ascontiguousarray(image)
    return np.asarray(Image.fromarray(image).resize((width, height), Image.BICUBIC))


def to_gray(rgb: np.ndarray) -> np.ndarray:
    """RGB uint8 -> grayscale uint8 (OpenCV's weights: what denseflow does with its BGR input)."""
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


def quantize_flow(flow: np.ndarray, bound: float = FLOW_BOUND) -> np.ndarray:
    """(H, W, 2) float flow -> uint8: denseflow's encoding, 0 below -bound, 255 above +bound,
    else ``round(255 * (v + bound) / (2 * bound))`` (round half to even like ``cvRound``)."""
    v = flow.astype(np.float64)
    scaled = np.rint(255.0 * (v + bound) / (2.0 * bound))
    scaled = np.where(v > bound, 255.0, np.where(v < -bound, 0.0, scaled))
    return scaled.astype(np.uint8)


# --------------------------------------------------------------------------------------------------
# .npy written as a stream (first dimension unknown until the end)
# --------------------------------------------------------------------------------------------------


def _npy_header(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    buffer = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": tuple(shape)}
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue()


class NpyStreamWriter:
    """Append (H, W, C) uint8 frames to an open binary file; :meth:`finish` writes the .npy header.

    Room for the header is reserved first: numpy pads it to a fixed 64-byte multiple whose length does
    not depend on the frame count for any realistic shape. Only one frame is in memory at a time.
    """

    def __init__(self, handle: IO[bytes], frame_shape: tuple[int, ...], dtype: np.dtype = np.dtype(np.uint8)) -> None:
        self.handle = handle
        self.frame_shape = tuple(int(d) for d in frame_shape)
        self.dtype = np.dtype(dtype)
        self.count = 0
        self.last: np.ndarray | None = None
        self.offset = len(_npy_header((0, *self.frame_shape), self.dtype))
        handle.seek(0)
        handle.write(b"\0" * self.offset)

    def append(self, frame: np.ndarray) -> None:
        if frame.shape != self.frame_shape or frame.dtype != self.dtype:
            raise ValueError(f"frame {frame.shape} {frame.dtype} != {self.frame_shape} {self.dtype}")
        self.handle.write(np.ascontiguousarray(frame).tobytes())
        self.count += 1
        self.last = frame

    def finish(self) -> None:
        header = _npy_header((self.count, *self.frame_shape), self.dtype)
        if len(header) != self.offset:  # pragma: no cover - would need a first dimension of ~10^20 frames
            raise RuntimeError(f"npy header grew from {self.offset} to {len(header)} bytes")
        self.handle.seek(0)
        self.handle.write(header)
        self.handle.seek(0, os.SEEK_END)


# --------------------------------------------------------------------------------------------------
# settings and the index file
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FrameSettings:
    fps: float = 10.0
    size: int = 112
    flow: bool = False
    flow_source: str = DEFAULT_FLOW_SOURCE
    max_frames: int | None = None  # ActivityNet: each video at its own rate, at most this many frames

    def validate(self) -> None:
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise TadkitError(f"fps must be a positive number, got {self.fps}", field="fps")
        if self.max_frames is not None and self.max_frames < 1:
            raise TadkitError(f"max frames must be >= 1, got {self.max_frames}", field="max_frames")
        if self.size < 1:
            raise TadkitError(f"size must be >= 1, got {self.size}", field="size")
        if self.flow_source not in FLOW_SOURCES:
            raise TadkitError(f"flow source must be one of {FLOW_SOURCES}, got {self.flow_source!r}", field="flow")

    @property
    def hw(self) -> tuple[int, int]:
        return (self.size, self.size)

    @property
    def streams(self) -> list[str]:
        return ["rgb", "flow"] if self.flow else ["rgb"]

    def index_header(self) -> dict[str, Any]:
        header: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "fps": None if self.max_frames else float(self.fps),
            "size": list(self.hw),
            "streams": self.streams,
        }
        if self.max_frames:
            header["max_frames"] = int(self.max_frames)
        if self.flow:
            header["flow"] = {"method": "TV-L1 (OpenCV Dual TV-L1 defaults)", "bound": FLOW_BOUND,
                              "source": self.flow_source}
        return header


def read_index(out_dir: Path) -> dict[str, Any] | None:
    path = out_dir / INDEX_FILE
    if not path.exists():
        return None
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise TadkitError(f"cannot read: {error}", file=str(path)) from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise TadkitError(f"not a {FORMAT} index (field format is {index.get('format') if isinstance(index, dict) else None!r})",
                          file=str(path), field="format")
    if index.get("version") != VERSION:
        raise TadkitError(f"version {index.get('version')!r} is not supported (expected {VERSION})", file=str(path),
                          field="version")
    if not isinstance(index.get("videos"), dict):
        raise TadkitError("'videos' must be an object", file=str(path), field="videos")
    for video in index["videos"]:  # the index is data: its ids become rgb/<id>.npy paths
        check_video_id(video, file=path, field="videos")
    return index


def check_index(index: dict[str, Any], settings: FrameSettings, path: Path) -> None:
    """An existing index must have been made with the same settings (a field-named error otherwise)."""
    wanted = settings.index_header()
    for key, label in (("max_frames", "--max-frames"), ("fps", "--fps"), ("size", "--size"), ("streams", "--flow"),
                       ("flow", "--flow-from")):
        have, want = index.get(key), wanted.get(key)
        if key == "fps" and isinstance(have, (int, float)) and isinstance(want, float):
            same = math.isclose(float(have), want, rel_tol=0, abs_tol=1e-9)
        elif key == "flow" and not settings.flow:
            same = True  # an rgb-only run compares streams only
        else:
            same = have == want
        if not same:
            raise TadkitError(
                f"the output directory was made with {key} {have!r}, this run asks for {want!r} ({label}); "
                "use the same settings or another --out",
                file=str(path), field=key,
            )


def _entry_complete(out_dir: Path, video: str, entry: Any, settings: FrameSettings) -> bool:
    """Listed, and each stream's file is there with the listed frame count and the expected shape."""
    if not isinstance(entry, dict) or not isinstance(entry.get("num_frames"), int):
        return False
    for stream in settings.streams:
        channels = STREAM_CHANNELS[stream]
        try:
            array = np.load(out_dir / stream / f"{video}.npy", mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError):
            return False
        if array.dtype != np.uint8 or array.shape != (entry["num_frames"], *settings.hw, channels):
            return False
    return True


# --------------------------------------------------------------------------------------------------
# one video
# --------------------------------------------------------------------------------------------------


def _flow_fn_or_error(flow_fn: FlowFn | None) -> FlowFn:
    if flow_fn is not None:
        return flow_fn
    from tadkit.video.flow import make_tvl1, tvl1_available

    if not tvl1_available():
        raise TadkitError(INSTALL_FLOW_HINT, field="flow")
    return make_tvl1()


def convert_video(
    path: str | Path, out_dir: str | Path, settings: FrameSettings = FrameSettings(), flow_fn: FlowFn | None = None
) -> dict[str, Any]:
    """Write ``OUT/rgb/ID.npy`` (and ``OUT/flow/ID.npy``) for one video; return its index entry.

    Each file goes to a temp file renamed on success: on any error neither is left half-written.
    ``flow_fn`` overrides TV-L1 (tests).
    """
    from tadkit.utils.io import atomic_open
    from tadkit.video.decode import iter_native_frames, probe_video, video_id_of

    settings.validate()
    path, out_dir = Path(path), Path(out_dir)
    video = video_id_of(path)
    flow = _flow_fn_or_error(flow_fn) if settings.flow else None
    info = probe_video(path)
    fps = settings.fps
    if settings.max_frames:  # the ActivityNet rate: native, lowered so the video gives at most max_frames
        native_count = info.num_frames or (round(info.duration * info.native_fps) if info.duration else 0)
        if native_count <= 0:
            raise TadkitError("the container gives no frame count or duration (needed by --max-frames)",
                              file=str(path), video=video, field="num_frames")
        fps = info.native_fps * min(1.0, settings.max_frames / native_count)
    elif info.native_fps < settings.fps:
        raise TadkitError(
            f"native frame rate {info.native_fps:g} fps is below the sampling rate {settings.fps:g} fps "
            "(the official sampler refuses such videos)",
            file=str(path), video=video, field="native_fps",
        )
    sample = AccumulatorSampler(info.native_fps, fps)
    hw = settings.hw
    from_video = settings.flow and settings.flow_source == "video"

    def encoded(gray0: np.ndarray, gray1: np.ndarray) -> np.ndarray:
        image = quantize_flow(flow(gray0, gray1))
        if image.shape[:2] != hw:  # native-resolution flow: each channel resized like an image
            image = np.stack([resize_bicubic(image[..., c], hw) for c in range(2)], axis=-1)
        return image

    flow_cm = atomic_open(out_dir / "flow" / f"{video}.npy", "wb") if settings.flow else contextlib.nullcontext()
    with atomic_open(out_dir / "rgb" / f"{video}.npy", "wb") as rgb_handle, flow_cm as flow_handle:
        rgb_out = NpyStreamWriter(rgb_handle, (*hw, 3))
        flow_out = NpyStreamWriter(flow_handle, (*hw, 2)) if settings.flow else None
        previous: np.ndarray | None = None  # gray awaiting its successor (sampled frame, or kept native frame)
        native = 0
        for _, image in iter_native_frames(path):
            native += 1
            gray_native = None
            if from_video and previous is not None:  # flow of the kept native frame -> this one
                gray_native = to_gray(image)
                flow_out.append(encoded(previous, gray_native))
                previous = None
            if not sample():
                continue
            if settings.max_frames and rgb_out.count >= settings.max_frames:
                break  # video2npy.py: imgs[:max_frame_num]
            small = resize_bicubic(image, hw)
            rgb_out.append(small)
            if settings.flow and not from_video:
                gray = to_gray(small)
                if previous is not None:
                    flow_out.append(encoded(previous, gray))
                previous = gray
            elif from_video:
                previous = gray_native if gray_native is not None else to_gray(image)
        if rgb_out.count == 0:
            raise TadkitError(f"no frame kept ({native} frames decoded)", file=str(path), video=video, field="frames")
        if flow_out is not None:
            if flow_out.last is None:
                raise TadkitError(f"optical flow needs at least 2 frames; {native} decoded, {rgb_out.count} sampled",
                                  file=str(path), video=video, field="frames")
            while flow_out.count < rgb_out.count:  # the official "repeat the last flow frame"
                flow_out.append(flow_out.last)
            flow_out.finish()
        rgb_out.finish()
    entry = {
        "num_frames": rgb_out.count,
        "native_fps": float(info.native_fps),
        "native_frames": native,
        "duration": native / float(info.native_fps),
        "source": str(path.resolve()),
    }
    if settings.max_frames:
        entry["fps"] = float(fps)
    return entry


def _convert_worker(path: str, out_dir: str, settings: FrameSettings) -> tuple[str, dict[str, Any] | str]:
    """Process-pool entry: (video_id, entry) or (video_id, error message)."""
    from tadkit.video.decode import video_id_of

    try:
        return "ok", convert_video(path, out_dir, settings)
    except TadkitError as error:
        return "error", str(error)
    except Exception as error:  # noqa: BLE001 - reported per video, the run goes on
        return "error", f"file {path}, video {video_id_of(path)}: {type(error).__name__}: {error}"


# --------------------------------------------------------------------------------------------------
# many videos
# --------------------------------------------------------------------------------------------------


def find_videos(inputs: Iterable[str | Path]) -> list[Path]:
    """Files as given, directories -> their video files (by extension, sorted); ids must be unique."""
    from tadkit.video.decode import VIDEO_EXTENSIONS, video_id_of

    found: list[Path] = []
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            found.extend(sorted(p for p in item.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS))
        elif item.is_file():
            found.append(item)
        else:
            raise TadkitError("no such file or directory", file=str(item))
    if not found:
        raise TadkitError(f"no video files ({', '.join(VIDEO_EXTENSIONS)})", file=", ".join(map(str, inputs)))
    seen: dict[str, Path] = {}
    for path in found:
        video = check_video_id(video_id_of(path), file=path)
        if video in seen and seen[video].resolve() != path.resolve():
            raise TadkitError(f"two videos share the id {video!r}: {seen[video]} and {path}", file=str(path),
                              video=video)
        seen[video] = path
    return list(seen.values())


@dataclass
class FramesSummary:
    written: list[str]
    skipped: list[str]
    failed: dict[str, str]  # video -> error message


PARTS_DIR = ".frames-parts"  # per-rank index entries of a torchrun run, merged into frames.json by rank 0


def _part_path(out_dir: Path, rank: int) -> Path:
    return out_dir / PARTS_DIR / f"rank{rank}.json"


def _merge_parts(out_dir: Path, index: dict[str, Any], settings: FrameSettings) -> bool:
    """Fold the per-rank entries a torchrun run left (finished or killed) into ``index``; True if any.

    An entry counts only if its files are complete; the part files go once the index is written.
    """
    parts = sorted((out_dir / PARTS_DIR).glob("rank*.json")) if (out_dir / PARTS_DIR).is_dir() else []
    for part in parts:
        try:
            entries = json.loads(part.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # written atomically, so only a foreign file gets here; its videos are redone
        if not isinstance(entries, dict):
            continue
        for video, entry in entries.items():
            if isinstance(video, str) and _entry_complete(out_dir, video, entry, settings):
                index["videos"][video] = entry
    return bool(parts)


def _remove_parts(out_dir: Path) -> None:
    folder = out_dir / PARTS_DIR
    if folder.is_dir():
        for part in folder.glob("rank*.json"):
            part.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            folder.rmdir()


def _open_index(out_dir: Path, settings: FrameSettings, merge_parts: bool = True) -> dict[str, Any]:
    """The index to continue: ``frames.json`` checked against ``settings``, plus (``merge_parts``: the
    process holding the lock) what an interrupted torchrun run finished, written back at once."""
    from tadkit.utils.io import write_json

    index_path = out_dir / INDEX_FILE
    index = read_index(out_dir)
    if index is not None and index["videos"]:
        check_index(index, settings, index_path)
        index = {**index, **settings.index_header()}
    else:
        index = {**settings.index_header(), "videos": {}}
    if merge_parts and _merge_parts(out_dir, index, settings):
        index["videos"] = dict(sorted(index["videos"].items()))
        write_json(index_path, index)
        _remove_parts(out_dir)
    return index


def convert_videos(
    inputs: Iterable[str | Path],
    out_dir: str | Path,
    settings: FrameSettings = FrameSettings(),
    *,
    jobs: int = 1,
    overwrite: bool = False,
    flow_fn: FlowFn | None = None,
    show_progress: bool = True,
    ctx: Any = None,
) -> FramesSummary:
    """Convert every video not yet done; ``frames.json`` is rewritten after each one.

    Videos that fail are reported in the summary (the others are still converted); their files are
    not written. ``ctx`` (a :class:`tadkit.engine.distributed.DistContext` of a torchrun job): this
    rank converts its share (:func:`tadkit.video.sharding.rank_share`) and records each finished video
    in ``OUT/.frames-parts/rank<R>.json``; rank 0 holds the directory lock and, after every rank is
    done, writes ``frames.json`` once. The summary is the whole job's on every rank.
    """
    from tadkit.engine.distributed import DistContext, all_gather_objects, broadcast_object
    from tadkit.utils.io import ensure_writable_dir, lock_directory, remove_stale_tmp, write_json
    from tadkit.utils.progress import progress
    from tadkit.video.decode import video_id_of
    from tadkit.video.sharding import rank_share

    settings.validate()
    if jobs < 1:
        raise TadkitError(f"jobs must be >= 1, got {jobs}", field="jobs")
    ctx = ctx or DistContext()
    videos = find_videos(inputs)
    out_dir = Path(out_dir)
    if settings.flow and flow_fn is None:
        _flow_fn_or_error(None)  # fail before any work when TV-L1 is missing
    lock, problem = None, None
    if ctx.is_main:
        try:
            ensure_writable_dir(out_dir)
            lock = lock_directory(out_dir, hint="another `tadkit data frames` is writing there")
            # the lock is ours and no rank writes before the broadcast below: any temp file is a killed run's
            for folder in (out_dir, out_dir / "rgb", out_dir / "flow"):
                remove_stale_tmp(folder)
            index = _open_index(out_dir, settings)
        except TadkitError as error:
            problem = error
    # every rank stops with rank 0's one clear error (as text: not every TadkitError unpickles)
    reason = broadcast_object(None if problem is None else str(problem), ctx)
    if reason is not None:
        if lock is not None:
            lock.release()
        raise problem if problem is not None else TadkitError(reason)
    try:
        if not ctx.is_main:
            index = _open_index(out_dir, settings, merge_parts=False)  # rank 0 has merged and written it
        index_path = out_dir / INDEX_FILE
        mine = rank_share(videos, ctx.rank, ctx.world_size).videos if ctx.is_distributed else videos

        todo: list[Path] = []
        skipped: list[str] = []
        for path in mine:
            video = video_id_of(path)
            if not overwrite and _entry_complete(out_dir, video, index["videos"].get(video), settings):
                skipped.append(video)
            else:
                todo.append(path)

        from tadkit.video.sharding import remove_stale_partials

        for stream in settings.streams:  # temp files a killed run left for the videos this rank converts
            remove_stale_partials(out_dir / stream, {video_id_of(p) for p in todo}, (".npy",))
        summary = FramesSummary(written=[], skipped=skipped, failed={})
        entries: dict[str, Any] = {}  # this rank's finished videos (torchrun)

        def record(video: str, status: str, result: Any) -> None:
            if status != "ok":
                summary.failed[video] = str(result)
                if not ctx.is_distributed and index["videos"].pop(video, None) is not None:
                    write_json(index_path, index)  # --overwrite of a now unreadable video
                return
            summary.written.append(video)
            if ctx.is_distributed:
                entries[video] = result
                write_json(_part_path(out_dir, ctx.rank), entries)
            else:
                index["videos"][video] = result
                index["videos"] = dict(sorted(index["videos"].items()))
                write_json(index_path, index)

        desc = f"frames [rank {ctx.rank}/{ctx.world_size}]" if ctx.is_distributed else "frames"
        bar = progress(total=len(todo), desc=desc, unit="video", disable=not show_progress)
        try:
            if jobs == 1 or len(todo) <= 1:
                for path in todo:
                    video = video_id_of(path)
                    bar.set_postfix_str(video)
                    try:
                        record(video, "ok", convert_video(path, out_dir, settings, flow_fn=flow_fn))
                    except TadkitError as error:
                        record(video, "error", error)
                    bar.update(1)
            else:
                import multiprocessing
                from concurrent.futures import ProcessPoolExecutor, as_completed

                context = multiprocessing.get_context("spawn")
                with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
                    futures = {pool.submit(_convert_worker, str(p), str(out_dir), settings): video_id_of(p)
                               for p in todo}
                    for future in as_completed(futures):
                        status, result = future.result()
                        record(futures[future], status, result)
                        bar.update(1)
        finally:
            bar.close()
        if ctx.is_distributed:
            summary = _finish_distributed(out_dir, index, summary, entries, ctx, all_gather_objects)
    finally:
        if lock is not None:
            lock.release()
    return summary


def _finish_distributed(out_dir: Path, index: dict[str, Any], summary: FramesSummary, entries: dict[str, Any],
                        ctx: Any, gather: Callable) -> FramesSummary:
    """Every rank's results in one summary; rank 0 writes ``frames.json`` (after all ranks finished)."""
    from tadkit.utils.io import write_json

    parts = gather((summary.written, summary.skipped, summary.failed, entries), ctx)
    merged = FramesSummary(written=[], skipped=[], failed={})
    for written, skipped, failed, rank_entries in parts:
        merged.written.extend(written)
        merged.skipped.extend(skipped)
        merged.failed.update(failed)
        index["videos"].update(rank_entries)
    for video in merged.failed:
        index["videos"].pop(video, None)  # --overwrite of a now unreadable video
    if ctx.is_main:
        index["videos"] = dict(sorted(index["videos"].items()))
        write_json(out_dir / INDEX_FILE, index)
        _remove_parts(out_dir)
    return merged


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------


def register_frames_command(data_subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = data_subparsers.add_parser(
        "frames",
        help="decode videos to 10-fps 112x112 uint8 frame arrays (end-to-end AFSD input)",
        description=(
            "Decode each video, keep frames with the official AFSD sampler (an accumulator: a frame is kept "
            "each time native_fps/fps frames have passed), resize them bicubic to SIZExSIZE (aspect not kept) "
            "and write OUT/rgb/<video>.npy (and OUT/flow/<video>.npy with --flow) plus OUT/frames.json. "
            "Re-running skips finished videos."
        ),
    )
    parser.add_argument("inputs", nargs="+", metavar="VIDEO_DIR_OR_FILE", help="video files or directories of videos")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory")
    parser.add_argument("--fps", type=float, default=10.0, help="sampling rate (default 10, the official)")
    parser.add_argument("--size", type=int, default=112, help="output frames are SIZE x SIZE (default 112)")
    parser.add_argument("--max-frames", type=int, default=None, metavar="N", dest="max_frames",
                        help="ActivityNet (AFSD anet_data): each video at its own rate native_fps x min(1, N / "
                             "its frames), at most N frames (official 768); --fps is then not used")
    parser.add_argument("--flow", action="store_true",
                        help="also write TV-L1 flow (needs the opencv-contrib extra: pip install 'tadkit[flow]')")
    parser.add_argument("--flow-from", choices=FLOW_SOURCES, default=DEFAULT_FLOW_SOURCE, dest="flow_source",
                        help="frames: flow between consecutive sampled SIZExSIZE frames (default; the official "
                             "script's main path); video: flow between native frames at full resolution, then "
                             "sampled and resized (the official gen_flow_npy_with_sample)")
    parser.add_argument("--jobs", type=int, default=1, help="videos converted in parallel (default 1)")
    parser.add_argument("--overwrite", action="store_true", help="convert again videos already finished")
    parser.set_defaults(func=run_frames_command)
    return parser


FAILURES_FILE = "frames_failures.json"


def run_frames_command(args: argparse.Namespace) -> int:
    from tadkit.engine.distributed import cleanup_distributed, init_distributed
    from tadkit.video.sharding import JOB_TIMEOUT_S, write_failure_list

    settings = FrameSettings(fps=float(args.fps), size=int(args.size), flow=bool(args.flow),
                             flow_source=args.flow_source, max_frames=args.max_frames)
    settings.validate()
    ctx = init_distributed("cpu", timeout_s=JOB_TIMEOUT_S)  # under torchrun: this rank's share
    finished = False
    try:
        summary = convert_videos(args.inputs, args.out, settings, jobs=args.jobs, overwrite=args.overwrite, ctx=ctx)
        if ctx.is_main:
            write_failure_list(Path(args.out) / FAILURES_FILE, summary.failed)
        finished = True
    finally:
        cleanup_distributed(ctx, synchronize=finished)
    if not ctx.is_main:  # rank 0 reports for the job; the exit code is the same on every rank
        return 2 if summary.failed else 0
    print(f"{args.out}: {len(summary.written)} video(s) written, {len(summary.skipped)} already done"
          + (f", {len(summary.failed)} failed" if summary.failed else "")
          + (f" by {ctx.world_size} ranks" if ctx.is_distributed else ""))
    if summary.failed:
        lines = list(summary.failed.values())
        for line in lines[1:]:
            print(f"  failed: {line}", file=sys.stderr)
        more = f" (and {len(lines) - 1} more video(s), listed above)" if len(lines) > 1 else ""
        raise TadkitError(f"{lines[0]}{more}; finished videos are kept (list: {FAILURES_FILE})")
    return 0
