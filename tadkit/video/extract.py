"""Video -> I3D feature sequence (T, 1024 per stream) plus the metadata that maps features to seconds.

Feature k comes from the stack of frames ``k * step .. k * step + stack - 1`` of the frame sequence
used (native frames, or nearest-frame resampled to ``fps``) and covers
``[timestamps[k], timestamps[k] + stack / fps)`` seconds. With the flow stream a stack needs
``stack + 1`` frames (``stack`` flow fields); in ``rgb+flow`` both streams use that rule so the two
halves of each 2048-d feature come from the same stack.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from tqdm import tqdm

from tadkit.errors import TadkitError
from tadkit.video.decode import (
    Preprocess,
    Window,
    iter_frames,
    iter_windows,
    num_stacks,
    preprocess_rgb,
    probe_video,
    video_id_of,
)
from tadkit.video.flow import FlowCache, FlowFn, FlowSpec, make_tvl1, to_gray
from tadkit.video.i3d import FEATURE_DIM, MIN_SIDE, MIN_STACK, I3D

STREAMS: dict[str, tuple[str, ...]] = {"rgb": ("rgb",), "flow": ("flow",), "rgb+flow": ("rgb", "flow")}


@dataclass(frozen=True)
class ExtractSettings:
    """Everything that changes the features (stored in the metadata; re-runs compare it)."""

    fps: float | None = None  # None = native frame rate
    stack: int = 16
    step: int = 16
    streams: str = "rgb"
    short_side: int = 256
    crop: int = 224
    flow_bound: float = 20.0
    frame_size: tuple[int, int] | None = None  # (width, height): frames resized to exactly this (a preset's 340 x 256)
    squeeze: bool = False  # whole frame resized to crop x crop instead of centre-cropped (CMCS sample_mode resize)

    def validate(self) -> None:
        if self.streams not in STREAMS:
            raise TadkitError(f"unknown stream {self.streams!r}; use one of {sorted(STREAMS)}", field="stream")
        if self.stack < MIN_STACK:
            raise TadkitError(f"stack {self.stack} is too short for I3D (needs >= {MIN_STACK} frames)", field="stack")
        if self.step < 1:
            raise TadkitError(f"step must be >= 1, got {self.step}", field="step")
        if self.fps is not None and not (math.isfinite(self.fps) and self.fps > 0):
            raise TadkitError(f"fps must be a positive number, got {self.fps}", field="fps")
        if self.crop < MIN_SIDE or self.short_side < self.crop:
            raise TadkitError(f"need short_side >= crop >= {MIN_SIDE} (I3D's final 7x7 pool)", field="crop")
        if self.frame_size is not None and min(self.frame_size) < self.crop:
            raise TadkitError(f"frame size {self.frame_size} is smaller than the {self.crop} crop", field="crop")

    @property
    def window(self) -> int:
        """Frames per stack window (one more with flow: S flow fields need S + 1 frames)."""
        return self.stack + (1 if "flow" in STREAMS[self.streams] else 0)


def preprocess_record(settings: ExtractSettings) -> dict[str, Any]:
    """What the sidecar says about the spatial steps."""
    if settings.frame_size is None:
        return {"short_side": settings.short_side, "crop": settings.crop, "resize": "PIL bilinear"}
    return {"frame_size": list(settings.frame_size), "resize": "PIL bilinear",
            "crop": settings.crop, "squeeze": "PIL LANCZOS" if settings.squeeze else "centre crop"}


@dataclass
class _Pack:
    """What the window keeps of one frame: the RGB network input and/or the flow grayscale."""

    rgb: np.ndarray | None
    gray: np.ndarray | None


@dataclass
class InputBatch:
    """Network inputs of up to ``batch`` consecutive stacks of one video (NDHWC float32 arrays)."""

    rgb: np.ndarray | None  # (B, stack, crop, crop, 3) in [-1, 1], or None without the rgb stream
    flow: np.ndarray | None  # (B, stack, crop, crop, 2) in [-1, 1], or None without the flow stream
    starts: list[float]  # start time (s) of each stack


def _model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def run_i3d(model: I3D, inputs: np.ndarray | torch.Tensor, *, non_blocking: bool = False, amp: bool = False) -> np.ndarray:
    """(B, S, H, W, C) frames -> (B, 1024) float32 features. The NDHWC array viewed as NCDHW is already
    PyTorch's channels_last_3d layout, the fast one for CPU convolutions: no copy. ``non_blocking``
    with a pinned CPU tensor overlaps the copy to the GPU; ``amp``: float16 autocast (CUDA only)."""
    x = torch.from_numpy(inputs) if isinstance(inputs, np.ndarray) else inputs
    device = _model_device(model)
    x = x.permute(0, 4, 1, 2, 3).to(device, non_blocking=non_blocking)
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.float16, enabled=amp and device.type == "cuda"):
        features, _ = model(x)
    return features.float().cpu().numpy()


def _batched(windows: Iterator[Window], size: int) -> Iterator[list[Window]]:
    batch: list[Window] = []
    for window in windows:
        batch.append(window)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class _Counter:
    """Wraps the frame iterator to count the frames the pipeline saw."""

    def __init__(self, frames: Iterator[tuple[float, np.ndarray]]) -> None:
        self.frames = frames
        self.count = 0
        self.last_time = 0.0

    def __iter__(self) -> Iterator[tuple[float, np.ndarray]]:
        for item in self.frames:
            self.count += 1
            self.last_time = item[0]
            yield item


class StackReader:
    """The decoding half of extraction: one video -> :class:`InputBatch` es, no network involved.

    Runs in the main process or in a DataLoader worker (it holds only paths and settings until
    iterated). After iteration, :attr:`num_frames` and :attr:`last_time` describe what was decoded;
    a video shorter than one stack raises :class:`TadkitError` at the end of the iteration.
    """

    def __init__(self, path: str | Path, settings: ExtractSettings, batch: int = 1, flow_fn: FlowFn | None = None) -> None:
        settings.validate()
        if batch < 1:
            raise TadkitError(f"batch must be >= 1, got {batch}", field="batch")
        self.path = Path(path)
        self.video = video_id_of(self.path)
        self.settings = settings
        self.batch = batch
        self.wanted = STREAMS[settings.streams]
        self.flow_fn = flow_fn
        self.info = probe_video(self.path)
        self.used_fps = self.info.native_fps if settings.fps is None else float(settings.fps)
        self.spec = Preprocess(settings.short_side, settings.crop, settings.frame_size, settings.squeeze)
        self.num_frames = 0
        self.last_time = 0.0

    @property
    def expected_stacks(self) -> int:
        """Stacks the container's header promises (0 when it does not say)."""
        info, settings = self.info, self.settings
        estimate = info.num_frames if settings.fps is None else round((info.duration or 0.0) * self.used_fps)
        return num_stacks(estimate, settings.window, settings.step)

    def _transform(self, frame: np.ndarray) -> _Pack:
        try:
            return _Pack(
                rgb=preprocess_rgb(frame, self.spec) if "rgb" in self.wanted else None,
                gray=to_gray(frame, self.spec) if "flow" in self.wanted else None,
            )
        except ValueError as error:  # frame smaller than the crop after resizing
            raise TadkitError(str(error), file=str(self.path), video=self.video, field="frame size") from None

    def __iter__(self) -> Iterator[InputBatch]:
        settings, stack = self.settings, self.settings.stack
        flows = None
        if "flow" in self.wanted:
            flows = FlowCache(self.flow_fn or make_tvl1(), settings.crop, FlowSpec(settings.flow_bound), self.spec)
        frames = _Counter(iter_frames(self.path, settings.fps))
        windows = iter_windows(frames, settings.window, settings.step, self._transform)
        emitted = 0
        for group in _batched(windows, self.batch):
            rgb = np.stack([np.stack([p.rgb for p in w.items[:stack]]) for w in group]) if "rgb" in self.wanted else None
            flow = np.stack([flows.stack(w.start, [p.gray for p in w.items]) for w in group]) if flows else None
            emitted += len(group)
            yield InputBatch(rgb, flow, [w.start_time for w in group])
        self.num_frames, self.last_time = frames.count, frames.last_time
        if emitted == 0:
            raise TadkitError(
                f"video has {frames.count} frames at {self.used_fps:g} fps, fewer than one stack of {settings.window}",
                file=str(self.path),
                video=self.video,
                field="num_frames",
            )

    def metadata(self, features: np.ndarray, starts: list[float], weights: str) -> dict[str, Any]:
        """The ``<video_id>.json`` of the finished video (call after iterating)."""
        settings, info, fps = self.settings, self.info, self.settings.fps
        meta = {
            "video": str(self.path),
            "video_id": self.video,
            "fps": self.used_fps,
            "native_fps": info.native_fps,
            "num_frames": self.num_frames,
            "stack": settings.stack,
            "step": settings.step,
            "streams": list(self.wanted),
            "feature_dim": int(features.shape[1]),
            "num_features": int(features.shape[0]),
            "timestamps": [round(float(t), 6) for t in starts],
            "clip_seconds": settings.stack / self.used_fps,
            # decoded length vs the container's claim: a large gap means a truncated or corrupt file
            "duration": round(self.last_time + 1.0 / self.used_fps, 6),
            "container_duration": info.duration,
            "resample": "native" if fps is None else "nearest",
            "requested_fps": fps,
            "preprocess": preprocess_record(settings),
            "weights": weights,
        }
        if "flow" in self.wanted:
            meta["flow"] = {"method": "TV-L1 (OpenCV defaults)", "bound": settings.flow_bound}
        return meta


def weights_description(model: I3D | None, flow_model: I3D | None, streams: str) -> str:
    """Which weights made each stream (the metadata's ``weights``)."""
    wanted = STREAMS[streams]
    weights = []
    if "rgb" in wanted:
        weights.append(f"rgb: {getattr(model, 'weights_source', 'unknown')}")
    if "flow" in wanted:
        weights.append(f"flow: {getattr(flow_model, 'weights_source', 'unknown')}")
    return "; ".join(weights)


def check_models(streams: str, model: I3D | None, flow_model: I3D | None) -> None:
    wanted = STREAMS[streams]
    if "rgb" in wanted and model is None:
        raise TadkitError("the rgb stream needs an RGB I3D model", field="model")
    if "flow" in wanted and flow_model is None:
        raise TadkitError("the flow stream needs flow I3D weights (--flow-weights PATH)", field="flow_weights")


def features_of(batch: InputBatch, model: I3D | None, flow_model: I3D | None, *, non_blocking: bool = False,
                amp: bool = False) -> np.ndarray:
    """(B, 1024 per stream) features of one input batch, RGB first."""
    parts = []
    if batch.rgb is not None:
        parts.append(run_i3d(model, batch.rgb, non_blocking=non_blocking, amp=amp))
    if batch.flow is not None:
        parts.append(run_i3d(flow_model, batch.flow, non_blocking=non_blocking, amp=amp))
    return np.concatenate(parts, axis=1)


def extract_video(
    path: str | Path,
    model: I3D | None,
    *,
    flow_model: I3D | None = None,
    fps: float | None = None,
    stack: int = 16,
    step: int = 16,
    streams: str = "rgb",
    batch: int = 1,
    flow_fn: FlowFn | None = None,
    progress: bool = False,
    frame_size: tuple[int, int] | None = None,
    squeeze: bool = False,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Features (T, 1024 * n_streams) float32 and metadata of one video, decoded in this process.

    ``model`` is the RGB I3D (from :func:`tadkit.video.weights.load_i3d`), ``flow_model`` the 2-channel
    flow I3D; each is needed only if its stream is requested. ``flow_fn`` overrides TV-L1 (tests).
    ``frame_size`` / ``squeeze``: the releases' spatial steps (:class:`~tadkit.video.decode.Preprocess`).
    Raises :class:`TadkitError` for unreadable videos and videos shorter than one stack.
    """
    settings = ExtractSettings(fps=fps, stack=stack, step=step, streams=streams, frame_size=frame_size,
                               squeeze=squeeze)
    settings.validate()
    if batch < 1:
        raise TadkitError(f"batch must be >= 1, got {batch}", field="batch")
    check_models(streams, model, flow_model)
    if "flow" in STREAMS[streams] and flow_fn is None:
        flow_fn = make_tvl1()
    reader = StackReader(path, settings, batch, flow_fn)
    bar = tqdm(total=reader.expected_stacks or None, desc=reader.video, unit="stack", disable=not progress, leave=False)
    chunks: list[np.ndarray] = []
    starts: list[float] = []
    try:
        for inputs in reader:
            chunks.append(features_of(inputs, model, flow_model))
            starts.extend(inputs.starts)
            bar.update(len(inputs.starts))
    finally:
        bar.close()
    features = np.ascontiguousarray(np.concatenate(chunks, axis=0), dtype=np.float32)
    return features, reader.metadata(features, starts, weights_description(model, flow_model, streams))


def feature_dim(streams: str) -> int:
    return FEATURE_DIM * len(STREAMS[streams])


def finished(out_dir: Path, video_id: str, settings: ExtractSettings) -> bool:
    """Both output files present, readable, consistent with each other and made with ``settings``."""
    npy, meta_path = out_dir / f"{video_id}.npy", out_dir / f"{video_id}.json"
    if not (npy.is_file() and meta_path.is_file()):
        return False
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        features = np.load(npy, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError):
        return False
    return (
        isinstance(meta, dict)
        and features.ndim == 2
        and features.dtype == np.float32
        and features.shape[1] == feature_dim(settings.streams)
        and len(meta.get("timestamps", ())) == features.shape[0]
        and meta.get("stack") == settings.stack
        and meta.get("step") == settings.step
        and meta.get("streams") == list(STREAMS[settings.streams])
        and meta.get("requested_fps") == settings.fps
    )


__all__ = [
    "STREAMS",
    "ExtractSettings",
    "InputBatch",
    "StackReader",
    "check_models",
    "extract_video",
    "feature_dim",
    "features_of",
    "finished",
    "run_i3d",
    "weights_description",
]
