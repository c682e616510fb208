"""Synthetic videos for the video tests: frame i is a flat grey of level ``level(i)`` so a decoded
frame's index can be read back from its mean intensity (lossless x264: flat greys come back within +-1)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

LEVEL_STEP = 8
LEVEL_BASE = 12


def level(index: int) -> int:
    return LEVEL_BASE + LEVEL_STEP * index


def index_of(mean_intensity: float | np.ndarray) -> np.ndarray:
    """Inverse of ``level`` for a uint8 mean intensity."""
    return np.rint((np.asarray(mean_intensity, dtype=np.float64) - LEVEL_BASE) / LEVEL_STEP).astype(np.int64)


def write_video(
    path: Path, num_frames: int, fps: float | Fraction = 10, width: int = 64, height: int = 48, moving_square: bool = False
) -> Path:
    """Write ``num_frames`` flat grey frames (levels 12, 20, 28, ...; <= 30 frames stay below 255)."""
    assert level(num_frames - 1) <= 255, "too many frames for distinct grey levels"
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"qp": "0", "preset": "ultrafast"}  # lossless up to RGB<->YUV rounding
        yy, xx = np.mgrid[-7.5:8.5, -7.5:8.5]  # a smooth bright blob: no aperture problem, no aliasing
        texture = (60 + 190 * np.exp(-(xx**2 + yy**2) / 32.0)).astype(np.uint8)[..., None]
        for i in range(num_frames):
            image = np.full((height, width, 3), level(i), dtype=np.uint8)
            if moving_square:  # a blob moving 2 px right per frame on a fixed background
                image[:] = 30
                image[16:32, 8 + 2 * i : 24 + 2 * i] = texture
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


# ----------------------------------------------------------------------------- the helper itself


def test_synthetic_video_decodes_to_its_frames(tmp_path):
    """Frame count, times and grey levels survive the encode/decode round trip (the premise of
    every test that reads frame indices back)."""
    from tadkit.video.decode import iter_native_frames, probe_video

    path = write_video(tmp_path / "clip.mp4", 25, fps=10)
    info = probe_video(path)
    assert info.native_fps == 10 and (info.width, info.height) == (64, 48)
    frames = list(iter_native_frames(path))
    assert len(frames) == 25
    times = np.array([t for t, _ in frames])
    np.testing.assert_allclose(times, np.arange(25) / 10, atol=1e-9)
    assert np.array_equal(index_of([f.mean() for _, f in frames]), np.arange(25))
