"""Video decoding (PyAV) and the I3D input pipeline, streamed so long videos stay small in memory.

Pipeline (DeepMind's Kinetics preprocessing, as used for the golden fixture):

1. decode every frame as RGB at native fps, or resample to a target fps by NEAREST FRAME: output
   frame j has time ``j / fps`` and shows the decoded frame whose presentation time is closest
   (ties go to the earlier frame); output times run while ``j / fps < last_frame_time + 1 / native_fps``;
2. resize with PIL bilinear so the short side is 256 and the long side ``int(256 * long / short)``;
3. centre crop 224 x 224 at offsets ``floor((H - 224) / 2)``, ``floor((W - 224) / 2)``;
4. scale to [-1, 1] with ``x * 2 / 255 - 1``;
5. stacks of S frames starting every K frames; only full stacks (``start + S <= N``).

Frame times are relative to the first decoded frame (its presentation time is 0).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
from PIL import Image

from tadkit.errors import TadkitError
from tadkit.utils.io import check_input_file

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp", ".ts")


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about the first video stream (``num_frames`` may be 0 = unknown)."""

    path: str
    native_fps: float
    num_frames: int
    width: int
    height: int
    duration: float | None  # seconds, container estimate


@dataclass(frozen=True)
class Preprocess:
    """Spatial preprocessing: short side resized to ``short_side``, centre crop ``crop`` x ``crop``.

    The releases' recipe instead (``tadkit extract --preset a2net_thumos14``): every frame resized to exactly
    ``frame_size`` (width, height; their 340 x 256 frames), then, with ``squeeze``, the whole frame resized
    to ``crop`` x ``crop`` (the CMCS extractor's ``--sample_mode resize``) rather than centre-cropped.
    """

    short_side: int = 256
    crop: int = 224
    frame_size: tuple[int, int] | None = None
    squeeze: bool = False


@dataclass
class Window:
    """``length`` consecutive frames ``start .. start + length - 1``, each already transformed."""

    index: int  # k: this is the k-th window of the video
    start: int  # first frame index (in the frame sequence actually used, i.e. after resampling)
    start_time: float  # seconds, presentation time of frame ``start``
    items: list


def video_id_of(path: str | Path) -> str:
    """Video id = file stem (``v_GGSY1Qvo990.mp4`` -> ``v_GGSY1Qvo990``)."""
    return Path(path).stem


def _open(path: str | Path):
    import av

    path = Path(path)
    check_input_file(path, "video file", video=video_id_of(path))
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, ValueError) as error:
        raise TadkitError(f"cannot open video: {error}", file=str(path), video=video_id_of(path), field="container") from None
    if not container.streams.video:
        container.close()
        raise TadkitError("no video stream in file", file=str(path), video=video_id_of(path), field="streams")
    return container


def _stream_fps(stream) -> float | None:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and float(rate) > 0:
            return float(Fraction(rate))
    return None


def probe_video(path: str | Path) -> VideoInfo:
    """Read the container header (no decoding)."""
    container = _open(path)
    try:
        stream = container.streams.video[0]
        fps = _stream_fps(stream)
        if fps is None:
            raise TadkitError("video stream has no frame rate", file=str(path), video=video_id_of(path), field="fps")
        duration = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000
        return VideoInfo(
            path=str(path),
            native_fps=fps,
            num_frames=int(stream.frames or 0),
            width=int(stream.codec_context.width),
            height=int(stream.codec_context.height),
            duration=duration,
        )
    finally:
        container.close()


def iter_native_frames(path: str | Path) -> Iterator[tuple[float, np.ndarray]]:
    """Every decoded frame as ``(time_seconds, RGB uint8 (H, W, 3))`` in presentation order."""
    import av

    container = _open(path)
    video = video_id_of(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame + slice threading; decode order/pixels unchanged
        fps = _stream_fps(stream) or 25.0
        t0: float | None = None
        index = 0
        try:
            for frame in container.decode(stream):
                t = frame.time if frame.pts is not None else index / fps
                if t0 is None:
                    t0 = t
                yield t - t0, frame.to_ndarray(format="rgb24")
                index += 1
        except av.error.FFmpegError as error:
            raise TadkitError(f"decoding failed after {index} frames: {error}", file=str(path), video=video, field="frames") from None
    finally:
        container.close()


# Timestamps are floats (pts * time_base): equal up to this many seconds counts as equal, so that a
# target exactly half-way between two frames reliably goes to the earlier one.
TIME_EPS = 1e-6


def resample_nearest(
    frames: Iterable[tuple[float, np.ndarray]], fps: float, native_fps: float
) -> Iterator[tuple[float, np.ndarray]]:
    """Nearest-frame resampling by timestamp to ``fps`` (see module doc); frames may repeat or drop."""
    if fps <= 0:
        raise ValueError("fps must be > 0")
    j = 0
    prev: tuple[float, np.ndarray] | None = None
    for t, image in frames:
        while j / fps <= t + TIME_EPS:
            target = j / fps
            # Nearest of the previous and the current frame; a tie goes to the earlier one.
            if prev is not None and target - prev[0] <= t - target + TIME_EPS:
                yield target, prev[1]
            else:
                yield target, image
            j += 1
        prev = (t, image)
    if prev is None:
        return
    end = prev[0] + 1.0 / native_fps
    while j / fps < end - TIME_EPS:
        yield j / fps, prev[1]
        j += 1


def iter_frames(path: str | Path, fps: float | None = None) -> Iterator[tuple[float, np.ndarray]]:
    """Frames at native fps (``fps=None``) or nearest-frame resampled to ``fps``."""
    frames = iter_native_frames(path)
    if fps is None:
        return frames
    return resample_nearest(frames, fps, probe_video(path).native_fps)


def resized_size(height: int, width: int, short_side: int = 256) -> tuple[int, int]:
    """(new_h, new_w): short side -> ``short_side``, long side -> ``int(short_side * long / short)``."""
    if height <= width:
        return short_side, int(short_side * width / height)
    return int(short_side * height / width), short_side


def resize_short_side(frame: np.ndarray, short_side: int = 256) -> np.ndarray:
    """PIL bilinear resize (uint8 in, uint8 out); PIL's filter is what the reference features used."""
    new_h, new_w = resized_size(frame.shape[0], frame.shape[1], short_side)
    if (new_h, new_w) == frame.shape[:2]:
        return frame
    return np.asarray(Image.fromarray(frame).resize((new_w, new_h), Image.BILINEAR))


def resize_frame(frame: np.ndarray, spec: Preprocess) -> np.ndarray:
    """The first spatial step: to ``spec.frame_size`` exactly when set, else short side ``spec.short_side``."""
    if spec.frame_size is None:
        return resize_short_side(frame, spec.short_side)
    width, height = spec.frame_size
    if frame.shape[:2] == (height, width):
        return frame
    return np.asarray(Image.fromarray(frame).resize((width, height), Image.BILINEAR))


def squeeze_to(image: np.ndarray, side: int) -> np.ndarray:
    """Resize a whole (H, W) or (H, W, C) image to ``side`` x ``side`` with PIL's LANCZOS (its old name
    ANTIALIAS, the CMCS script's filter); float channels are resized one by one and keep their values."""
    if image.dtype == np.uint8:
        return np.asarray(Image.fromarray(image).resize((side, side), Image.LANCZOS))
    channels = image[..., None] if image.ndim == 2 else image
    out = [np.asarray(Image.fromarray(np.ascontiguousarray(channels[..., c], dtype=np.float32), mode="F")
                      .resize((side, side), Image.LANCZOS)) for c in range(channels.shape[-1])]
    return np.stack(out, axis=-1) if image.ndim == 3 else out[0]


def crop_or_squeeze(image: np.ndarray, spec: Preprocess) -> np.ndarray:
    """The second spatial step: centre crop ``spec.crop``, or with ``spec.squeeze`` the whole image resized."""
    return squeeze_to(image, spec.crop) if spec.squeeze else center_crop(image, spec.crop)


def center_crop(frames: np.ndarray, crop: int = 224) -> np.ndarray:
    """Centre crop the two axes before the last (works for (H, W, C) and (N, H, W, C))."""
    height, width = frames.shape[-3], frames.shape[-2]
    if height < crop or width < crop:
        raise ValueError(f"frame {height}x{width} is smaller than the {crop}x{crop} crop")
    top, left = (height - crop) // 2, (width - crop) // 2
    return frames[..., top : top + crop, left : left + crop, :]


def to_unit_range(frames: np.ndarray) -> np.ndarray:
    """uint8 [0, 255] -> float32 [-1, 1] as ``x * 2 / 255 - 1``."""
    return frames.astype(np.float32) * np.float32(2.0 / 255.0) - np.float32(1.0)


def preprocess_rgb(frame: np.ndarray, spec: Preprocess = Preprocess()) -> np.ndarray:
    """One decoded RGB frame -> (crop, crop, 3) float32 in [-1, 1]."""
    return to_unit_range(crop_or_squeeze(resize_frame(frame, spec), spec))


def frame_in_some_stack(index: np.ndarray | int, length: int, step: int) -> np.ndarray | bool:
    """Whether frame ``index`` falls inside any window ``[k * step, k * step + length)``."""
    return np.asarray(index) % step < length


def num_stacks(num_frames: int, stack: int, step: int) -> int:
    """Number of full stacks (``start + stack <= num_frames``) starting at 0, step, 2 step, ..."""
    if num_frames < stack:
        return 0
    return (num_frames - stack) // step + 1


def iter_windows(
    frames: Iterable[tuple[float, np.ndarray]],
    length: int,
    step: int,
    transform: Callable[[np.ndarray], Any],
) -> Iterator[Window]:
    """Full windows of ``length`` transformed frames every ``step`` frames, from a rolling buffer.

    Only the last ``length`` transformed frames are held; frames that fall in no window (``step >
    length``) are never transformed. A window is emitted as soon as its last frame arrives.
    """
    if length < 1 or step < 1:
        raise ValueError("length and step must be >= 1")
    buffer: deque[Any] = deque(maxlen=length)
    times: deque[float] = deque(maxlen=length)
    count = 0
    for index, (t, image) in enumerate(frames):
        if not frame_in_some_stack(index, length, step):
            continue
        buffer.append(transform(image))
        times.append(t)
        start = index - length + 1
        if start >= 0 and start % step == 0:
            yield Window(index=count, start=start, start_time=times[0], items=list(buffer))
            count += 1


def count_frames(path: str | Path, fps: float | None = None) -> int:
    """Exact number of frames the pipeline sees (decodes the whole video; used by tests/tools)."""
    return sum(1 for _ in iter_frames(path, fps))


def expected_stack_starts(num_frames: int, stack: int, step: int) -> np.ndarray:
    """Start frames of all full stacks."""
    return np.arange(num_stacks(num_frames, stack, step), dtype=np.int64) * step


__all__ = [
    "VIDEO_EXTENSIONS",
    "VideoInfo",
    "Preprocess",
    "Window",
    "video_id_of",
    "probe_video",
    "iter_native_frames",
    "resample_nearest",
    "iter_frames",
    "resized_size",
    "resize_short_side",
    "resize_frame",
    "crop_or_squeeze",
    "center_crop",
    "to_unit_range",
    "preprocess_rgb",
    "frame_in_some_stack",
    "num_stacks",
    "iter_windows",
    "count_frames",
    "expected_stack_starts",
]
