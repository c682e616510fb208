"""TV-L1 optical flow for the I3D flow stream (DeepMind's Kinetics recipe).

Each frame is resized (short side 256, PIL bilinear, like RGB) and converted to grayscale; TV-L1
flow is computed between consecutive frames on the full resized frame, then centre-cropped to 224,
clipped to [-20, 20] pixels and scaled to [-1, 1]. A stack of S flow fields needs S + 1 frames.

TV-L1 lives in OpenCV's contrib build, which is tadkit's only OpenCV (``pip install 'tadkit[flow]'``,
also part of the ``test`` extra): no other OpenCV wheel is needed, and none should sit beside it, since
every OpenCV wheel installs the same ``cv2`` package. Without it the flow stream raises a
:class:`TadkitError` saying so; the RGB stream never needs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from tadkit.errors import TadkitError
from tadkit.video.decode import Preprocess, crop_or_squeeze, resize_frame

FlowFn = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (gray0, gray1) uint8 (H, W) -> (H, W, 2) float32

CONTRIB_HINT = (
    "TV-L1 optical flow needs OpenCV's contrib modules: pip install 'tadkit[flow]' "
    "(opencv-contrib-python-headless; uninstall any other opencv-python* wheel, they share the cv2 package)"
)


def _cv2():
    """OpenCV, or a TadkitError saying how to install it (only the flow stream needs it)."""
    try:
        import cv2
    except ImportError:
        raise TadkitError(f"{CONTRIB_HINT} (no cv2 module is installed)", field="stream") from None
    return cv2


@dataclass(frozen=True)
class FlowSpec:
    bound: float = 20.0  # pixels; flow is clipped to [-bound, bound] then divided by bound


def tvl1_available() -> bool:
    """Whether an OpenCV build with a Dual TV-L1 implementation is installed."""
    try:
        import cv2
    except ImportError:
        return False
    optflow = getattr(cv2, "optflow", None)
    return hasattr(optflow, "DualTVL1OpticalFlow_create") or hasattr(cv2, "DualTVL1OpticalFlow_create")


def make_tvl1() -> FlowFn:
    """A TV-L1 flow function with OpenCV's default parameters (one instance per video: not thread safe)."""
    cv2 = _cv2()

    optflow = getattr(cv2, "optflow", None)
    if hasattr(optflow, "DualTVL1OpticalFlow_create"):
        solver = optflow.DualTVL1OpticalFlow_create()
    elif hasattr(cv2, "DualTVL1OpticalFlow_create"):  # OpenCV 3.x kept it in the main module
        solver = cv2.DualTVL1OpticalFlow_create()
    else:
        raise TadkitError(f"{CONTRIB_HINT} (this cv2 {cv2.__version__} has no DualTVL1OpticalFlow)", field="stream")

    def tvl1(gray0: np.ndarray, gray1: np.ndarray) -> np.ndarray:
        return solver.calc(gray0, gray1, None)

    return tvl1


def to_gray(frame: np.ndarray, spec: Preprocess = Preprocess()) -> np.ndarray:
    """Decoded RGB frame -> resized (short side ``spec.short_side``, or ``spec.frame_size``) uint8 grayscale."""
    import cv2

    return cv2.cvtColor(resize_frame(frame, spec), cv2.COLOR_RGB2GRAY)


def flow_to_unit(flow: np.ndarray, spec: FlowSpec = FlowSpec()) -> np.ndarray:
    """Clip to [-bound, bound] pixels and scale to [-1, 1] (float32)."""
    bound = np.float32(spec.bound)
    return np.clip(flow.astype(np.float32, copy=False), -bound, bound) / bound


class FlowCache:
    """Flow of each consecutive frame pair, computed once even when stacks overlap (step < S)."""

    def __init__(self, flow_fn: FlowFn, crop: int = 224, spec: FlowSpec = FlowSpec(),
                 preprocess: Preprocess | None = None) -> None:
        self.flow_fn = flow_fn
        self.crop = crop
        self.spec = spec
        # the flow field is cropped (or squeezed, as the releases resize their flow images) like RGB
        self.preprocess = Preprocess(crop=crop) if preprocess is None else preprocess
        self._flows: dict[int, np.ndarray] = {}

    def stack(self, start: int, grays: list[np.ndarray]) -> np.ndarray:
        """(len(grays) - 1, crop, crop, 2) flows for frames ``start .. start + len(grays) - 1``."""
        for old in [k for k in self._flows if k < start]:
            del self._flows[old]  # frames before this window are never needed again
        out = []
        for offset in range(len(grays) - 1):
            key = start + offset
            if key not in self._flows:
                flow = self.flow_fn(grays[offset], grays[offset + 1])
                # clip + scale first: the releases clip their flow before storing and resizing the images
                self._flows[key] = crop_or_squeeze(flow_to_unit(flow, self.spec), self.preprocess)
            out.append(self._flows[key])
        return np.stack(out)
