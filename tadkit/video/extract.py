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

    @property
    def window(self) -> int:
        """Frames per stack window (one more with flow: S flow fields need S + 1 frames)."""
        return self.stack + (1 if "flow" in STREAMS[self.streams] else 0)


@dataclass
class _Pack:
    """What the window keeps of one frame: the RGB network input and/or the flow grayscale."""

    rgb: np.ndarray | None
    gray: np.ndarray | None


def _model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _run(model: I3D, batch: list[np.ndarray]) -> np.ndarray:
    """(B, S, H, W, C) frames -> (B, 1024) features. The NDHWC array viewed as NCDHW is already
    PyTorch's channels_last_3d layout, the fast one for CPU convolutions: no copy."""
    x = torch.from_numpy(np.stack(batch)).permute(0, 4, 1, 2, 3)
    x = x.to(_model_device(model))
    with torch.inference_mode():
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
) -> tuple[np.ndarray, dict[str, Any]]:
    """Features (T, 1024 * n_streams) float32 and metadata of one video.

    ``model`` is the RGB I3D (from :func:`tadkit.video.weights.load_i3d`), ``flow_model`` the 2-channel
    flow I3D; each is needed only if its stream is requested. ``flow_fn`` overrides TV-L1 (tests).
    Raises :class:`TadkitError` for unreadable videos and videos shorter than one stack.
    """
    settings = ExtractSettings(fps=fps, stack=stack, step=step, streams=streams)
    settings.validate()
    if batch < 1:
        raise TadkitError(f"batch must be >= 1, got {batch}", field="batch")
    wanted = STREAMS[streams]
    if "rgb" in wanted and model is None:
        raise TadkitError("the rgb stream needs an RGB I3D model", field="model")
    if "flow" in wanted and flow_model is None:
        raise TadkitError("the flow stream needs flow I3D weights (--flow-weights PATH)", field="flow_weights")
    if "flow" in wanted and flow_fn is None:
        flow_fn = make_tvl1()

    path = Path(path)
    video = video_id_of(path)
    info = probe_video(path)
    used_fps = info.native_fps if fps is None else float(fps)
    spec = Preprocess(settings.short_side, settings.crop)

    def transform(frame: np.ndarray) -> _Pack:
        try:
            return _Pack(
                rgb=preprocess_rgb(frame, spec) if "rgb" in wanted else None,
                gray=to_gray(frame, spec) if "flow" in wanted else None,
            )
        except ValueError as error:  # frame smaller than the crop after resizing
            raise TadkitError(str(error), file=str(path), video=video, field="frame size") from None

    frames = _Counter(iter_frames(path, fps))
    windows = iter_windows(frames, settings.window, step, transform)
    flows = FlowCache(flow_fn, settings.crop, FlowSpec(settings.flow_bound)) if "flow" in wanted else None

    estimate = info.num_frames if fps is None else round((info.duration or 0.0) * used_fps)
    bar = tqdm(total=num_stacks(estimate, settings.window, step) or None, desc=video, unit="stack", disable=not progress, leave=False)
    chunks: list[np.ndarray] = []
    starts: list[float] = []
    try:
        for group in _batched(windows, batch):
            parts = []
            if "rgb" in wanted:
                parts.append(_run(model, [np.stack([p.rgb for p in w.items[:stack]]) for w in group]))
            if "flow" in wanted:
                parts.append(_run(flow_model, [flows.stack(w.start, [p.gray for p in w.items]) for w in group]))
            chunks.append(np.concatenate(parts, axis=1))
            starts.extend(w.start_time for w in group)
            bar.update(len(group))
    finally:
        bar.close()

    if not chunks:
        raise TadkitError(
            f"video has {frames.count} frames at {used_fps:g} fps, fewer than one stack of {settings.window}",
            file=str(path),
            video=video,
            field="num_frames",
        )
    features = np.ascontiguousarray(np.concatenate(chunks, axis=0), dtype=np.float32)
    weights = []
    if "rgb" in wanted:
        weights.append(f"rgb: {getattr(model, 'weights_source', 'unknown')}")
    if "flow" in wanted:
        weights.append(f"flow: {getattr(flow_model, 'weights_source', 'unknown')}")
    meta = {
        "video": str(path),
        "video_id": video,
        "fps": used_fps,
        "native_fps": info.native_fps,
        "num_frames": frames.count,
        "stack": stack,
        "step": step,
        "streams": list(wanted),
        "feature_dim": int(features.shape[1]),
        "num_features": int(features.shape[0]),
        "timestamps": [round(float(t), 6) for t in starts],
        "clip_seconds": stack / used_fps,
        # decoded length vs the container's claim: a large gap means a truncated or corrupt file
        "duration": round(frames.last_time + 1.0 / used_fps, 6),
        "container_duration": info.duration,
        "resample": "native" if fps is None else "nearest",
        "requested_fps": fps,
        "preprocess": {"short_side": settings.short_side, "crop": settings.crop, "resize": "PIL bilinear"},
        "weights": "; ".join(weights),
    }
    if "flow" in wanted:
        meta["flow"] = {"method": "TV-L1 (OpenCV defaults)", "bound": settings.flow_bound}
    return features, meta


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


__all__ = ["STREAMS", "ExtractSettings", "extract_video", "feature_dim", "finished"]
