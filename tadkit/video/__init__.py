"""From a raw video to features: decoding (:mod:`.decode`), InceptionV1-I3D (:mod:`.i3d`), its
Kinetics-400 weights (:mod:`.weights`), TV-L1 flow (:mod:`.flow`) and :func:`.extract.extract_video`.

The common entry points are re-exported lazily so that ``import tadkit.video.decode`` stays light.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "extract_video": "tadkit.video.extract",
    "ExtractSettings": "tadkit.video.extract",
    "load_i3d": "tadkit.video.weights",
    "install_rgb_weights": "tadkit.video.weights",
    "I3D": "tadkit.video.i3d",
    "I3DConfig": "tadkit.video.i3d",
    "iter_frames": "tadkit.video.decode",
    "probe_video": "tadkit.video.decode",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'tadkit.video' has no attribute {name!r}")
