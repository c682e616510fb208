"""Extraction presets: the recipes behind released THUMOS14 I3D feature sets (``tadkit extract --preset NAME``).

A preset fixes what tadkit's extractor can reproduce of a release's recipe (frame rate, chunk length and
stride, streams, flow clipping, and the time mapping the consumer of the features assumes) and records the
rest (the source's resize / crop, flow program, weights) so that docs/video.md can say, setting by setting,
where each value comes from and what tadkit does instead. Sources are the releases' READMEs and scripts:

* CMCS extractor: Finspire13/pytorch-i3d-feature-extraction ``extract_features.py`` @ d7f5452 (Daochang Liu,
  author of CMCS, CVPR 2019) and its README ("Format the videos to 25 FPS");
* A2Net: LeYangNwpu/A2Net @ 3d8186d ``lib/dataset/prepare_data/README.md`` and ``construct_feature_thumos.py``
  (feature directories ``CMCS_feat/THUMOS14_FEATURES/I3D-4/thumos-test-{rgb,flow}-resize``);
* ECM: VividLe/Equivalent-Classification-Mapping @ bc89606 (features only as downloads; no recipe);
* ACRNet: leftthomas/ACRNet @ 5718240 ``README.md``, ``dataset.py`` (ffmpeg ``-r 25``, denseFlow_GPU) and
  ``extract.py`` (replaces the CMCS script: centre crop 224 of frames with short side 256, 16 / 16);
* ActionFormer: happyharrycn/actionformer_release @ 61ea7eb ``README.md`` ("clips of 16 frames at the video
  frame rate (~30 fps) and a stride of 4 frames") and ``libs/datasets/thumos14.py``
  (``feat_offset = 0.5 * num_frames / feat_stride``: a feature stands for its clip's centre).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tadkit.errors import TadkitError

CHUNK = 16  # every release: 16-frame I3D chunks (CMCS / ACRNet chunk_size, A2Net, ActionFormer README)


@dataclass(frozen=True)
class Preset:
    """One release's recipe. ``fps`` None = the video's native rate."""

    name: str
    release: str
    fps: float | None
    step: int
    offset_frames: float  # the frame feature k stands for: k * step + offset_frames (consumer's convention)
    streams: str = "rgb+flow"
    stack: int = CHUNK
    flow_bound: float = 20.0
    frame_size: tuple[int, int] | None = None  # (width, height) every frame is resized to first; None = short side 256
    squeeze: bool = False  # then the whole frame to 224 x 224 (CMCS --sample_mode resize) instead of a centre crop
    # what tadkit does not reproduce (printed by --preset, listed in docs/video.md)
    source_frames: str = ""
    source_flow: str = ""
    differences: tuple[str, ...] = ()

    def chunk_starts(self, num_frames: int) -> np.ndarray:
        """First frame of every chunk over ``num_frames`` frames (for two streams: the frames that have a
        flow field, one fewer than decoded). The CMCS / ACRNet rule: the last start is the largest multiple of
        ``step`` with a full chunk after it; nothing for a video of at most one chunk's frames."""
        if num_frames < self.stack:
            return np.zeros(0, dtype=np.int64)
        return np.arange(0, num_frames - self.stack + 1, self.step, dtype=np.int64)

    def seconds(self, index: np.ndarray | int, fps: float) -> np.ndarray:
        """Second that feature ``index`` stands for under the consumer's convention."""
        return (np.asarray(index, dtype=np.float64) * self.step + self.offset_frames) / fps

    def features_json(self, streams: str, feature_dim: int) -> dict[str, Any]:
        """The directory's time mapping (docs/features.md); per-video fps comes from the sidecars."""
        return {
            "format": "tadkit-features/1",
            "fps": self.fps,
            "stride_frames": self.step,
            "clip_frames": self.stack,
            "offset_frames": self.offset_frames,
            "dim": feature_dim,
            "streams": streams.split("+"),
            "layout": "concat",
            "preset": self.name,
        }

    def annotate(self, meta: dict[str, Any]) -> dict[str, Any]:
        """A `tadkit extract` sidecar with this preset's time mapping: timestamps under its convention."""
        fps = float(meta["fps"])
        starts = np.asarray(meta["timestamps"], dtype=np.float64)
        return {
            **meta,
            "preset": self.name,
            "offset_frames": self.offset_frames,
            "timestamp_convention": "start" if self.offset_frames == 0 else f"start + {self.offset_frames:g} frames",
            "timestamps": [round(float(t), 6) for t in starts + self.offset_frames / fps],
        }


_CMCS_RESIZE = ("frames decoded at 340 x 256 (TSN's extractor, CV2; the CMCS script asserts that size) and "
                "resized to 224 x 224 (`--sample_mode resize`, PIL ANTIALIAS)")
_TSN_FLOW = "TV-L1 by TSN's dense_flow (GPU), clipped to [-20, 20] and stored as 8-bit JPEG"
_NOT_CROP = ("tadkit resizes the short side to 256 and centre-crops 224 (keeps the aspect ratio) where the "
             "release squeezes the whole frame to 224 x 224")
_NOT_JPEG = "frames and flow are not round-tripped through JPEG / 8-bit images"
_RELEASE_FRAMES = ("frames resized to 340 x 256 with PIL bilinear (TSN's extractor used OpenCV), then the whole "
                   "frame to 224 x 224 with PIL LANCZOS (= ANTIALIAS); flow clipped, then resized the same way")
_RELEASE_SIZE = {"frame_size": (340, 256), "squeeze": True}
_NOT_GPU_FLOW = "flow is OpenCV's CPU Dual TV-L1 with default parameters, not the release's GPU program"

PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            name="a2net_thumos14",
            release="A2Net THUMOS14 features (CMCS extractor, frequency 4, resize)",
            fps=None, step=4, offset_frames=0.0, **_RELEASE_SIZE,
            source_frames=_CMCS_RESIZE, source_flow=_TSN_FLOW,
            differences=(_RELEASE_FRAMES, _NOT_JPEG, _NOT_GPU_FLOW),
        ),
        Preset(
            name="ecm_thumos14",
            release="ECM THUMOS14 features (not documented; A2Net's CMCS stride-4 recipe assumed)",
            fps=None, step=4, offset_frames=0.0, **_RELEASE_SIZE,
            source_frames="not stated by the release; assumed as A2Net: " + _CMCS_RESIZE,
            source_flow="not stated by the release; assumed as A2Net: " + _TSN_FLOW,
            differences=(_RELEASE_FRAMES, _NOT_JPEG, _NOT_GPU_FLOW,
                         "the release's fixed 750-step resampling is done at load time by the ECM config"),
        ),
        Preset(
            name="acrnet_thumos14",
            release="ACRNet THUMOS14 features (ffmpeg -r 25, denseFlow_GPU, CMCS script with centre crop)",
            fps=25.0, step=16, offset_frames=0.0,
            source_frames=("ffmpeg -r 25 re-encode; frames with short side 256 (asserted by extract.py), "
                           "torchvision CenterCrop(224)"),
            source_flow="denseFlow_GPU (TV-L1 on GPU) with the program's default options; images rescaled like RGB",
            differences=("ffmpeg's -r 25 duplicates / drops frames by its own timestamp rule; tadkit takes the "
                         "nearest frame per 1/25 s (not checked against ffmpeg frame by frame)", _NOT_JPEG,
                         _NOT_GPU_FLOW),
        ),
        Preset(
            name="actionformer_thumos14",
            release="ActionFormer THUMOS14 features (16-frame clips, stride 4, native ~30 fps; centre convention)",
            fps=None, step=4, offset_frames=CHUNK / 2,
            source_frames="not stated by the release (README: two-stream I3D, 16 frames, stride 4, ~30 fps); "
                          "A2Net's CMCS 'I3D-4' recipe is the same chunking",
            source_flow="not stated by the release (two-stream I3D)",
            differences=(_NOT_CROP + " (the release does not say which it did)", _NOT_JPEG, _NOT_GPU_FLOW),
        ),
        Preset(
            name="cmcs_thumos14",
            release="CMCS extractor README recipe (25 fps, chunk 16, frequency 16)",
            fps=25.0, step=16, offset_frames=0.0, **_RELEASE_SIZE,
            source_frames=("videos formatted to 25 fps (README), frames 340 x 256; --sample_mode has no default "
                           "(resize, center_crop, or oversample, which stops at a pdb.set_trace() in the script); "
                           "tadkit takes resize, the mode of A2Net's CMCS features"),
            source_flow="not stated (flow images 340 x 256 rescaled like RGB)",
            differences=(_RELEASE_FRAMES, _NOT_JPEG, _NOT_GPU_FLOW),
        ),
    )
}


def write_features_json(out_dir: Path, spec: dict[str, Any], overwrite: bool) -> None:
    """Write ``<out>/features.json``; one already there that says something else (another preset's time
    mapping over the same sidecars) is an error unless ``overwrite`` (then the videos are redone too)."""
    from tadkit.utils.io import write_json

    path = Path(out_dir) / "features.json"
    if path.is_file() and not overwrite:
        try:
            current = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            current = None
        if current != spec:
            name = current.get("preset") if isinstance(current, dict) else None
            raise TadkitError(f"already holds another time mapping (preset {name!r}, this run {spec['preset']!r}); "
                              "use another --out or --overwrite", file=str(path), field="preset")
    write_json(path, spec)


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise TadkitError(f"unknown preset {name!r}; use one of {sorted(PRESETS)}", field="preset") from None


def apply_to_args(args: argparse.Namespace, defaults: dict[str, Any]) -> Preset | None:
    """``tadkit extract``: options left unset (None) take the preset's value, else the parser's ``defaults``.
    Next to ``--preset`` an explicit value that differs from the preset is an error, except ``--stream``
    naming one of the preset's streams (e.g. only RGB weights at hand)."""
    name = getattr(args, "preset", None)
    preset = None if name is None else get_preset(name)
    for key, default in defaults.items():
        given = getattr(args, key)
        if preset is None:
            setattr(args, key, default if given is None else given)
            continue
        value = {"fps": preset.fps, "stack": preset.stack, "step": preset.step, "stream": preset.streams}[key]
        if given is None or given == value or (key == "stream" and given in preset.streams.split("+")):
            setattr(args, key, value if given is None else given)
        else:
            raise TadkitError(f"--{key} {given} conflicts with --preset {preset.name} ({key} {value})", field=key)
    return preset


__all__ = ["CHUNK", "PRESETS", "Preset", "apply_to_args", "get_preset", "write_features_json"]
