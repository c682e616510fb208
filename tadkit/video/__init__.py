"""From a raw video to features: decoding (:mod:`.decode`), InceptionV1-I3D (:mod:`.i3d`), its
Kinetics-400 weights (:mod:`.weights`), TV-L1 flow (:mod:`.flow`), :func:`.extract.extract_video`,
the feature cache (:mod:`.cache`) and zero-shot Kinetics-400 localization (:mod:`.zeroshot`).

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
    "cached_extract": "tadkit.video.cache",
    "kinetics400_labels": "tadkit.video.zeroshot",
    "localize_zero_shot": "tadkit.video.zeroshot",
    "ZeroShotConfig": "tadkit.video.zeroshot",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'tadkit.video' has no attribute {name!r}")
