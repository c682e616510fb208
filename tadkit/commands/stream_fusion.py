"""RGB + flow fusion of two end-to-end (frame) checkpoints: the checks and the fused model.

The official two-stream test (ActionDetection-AFSD ``AFSD/thumos14/test.py`` with ``--fusion``) runs the RGB
model on RGB frames and the flow model on TV-L1 flow frames of the same clip (same offsets, same centre
crop, both ``/ 255 * 2 - 1`` and zero padded), averages the raw outputs (``loc``, ``prop_loc``, ``conf`` and
``prop_conf`` logits, ``center`` logit) and decodes the mean once, with the RGB run's config: softmax and
sigmoid, refinement and soft-NMS all come after the average. Here the two models read the channels of a
``rgb+flow`` frame store (RGB 0:3, flow 3:5) through :class:`tadkit.postprocess.video_classifier.FusedModel`,
which averages every floating-point output and lets the first (RGB) model decode.

Two checkpoints fuse only when they are an RGB and a flow model of one method, with the same classes in
the same order, trained on frames of the same rate, size, crop and clip length: anything else is one
:class:`TadkitError` (exit 2) naming the file and the field, before a video is decoded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tadkit.errors import TadkitError

RGB_CHANNELS, FLOW_CHANNELS = 3, 2
FUSED_STREAM = "rgb+flow"
FUSED_SLICES = [[0, RGB_CHANNELS], [RGB_CHANNELS, RGB_CHANNELS + FLOW_CHANNELS]]  # channels of an rgb+flow clip
STREAM_CHANNELS = {"rgb": RGB_CHANNELS, "flow": FLOW_CHANNELS}
# what makes two frame models read "the same clip": the decoding the video gets and the clips cut from it
FRAME_SETTINGS = ("data.frame_fps", "data.frame_size", "data.crop_size", "data.window", "data.stride_test",
                  "model.clip_length", "model.crop_size")


@dataclass
class StreamCheckpoint:
    """One side of the fusion: the model, its stored config and classes, and the file it came from."""

    path: str
    model: Any
    config: Any
    classes: list[str]

    @property
    def model_values(self) -> dict[str, Any]:
        getter = getattr(self.model, "config_dict", None)
        return dict(getter()) if callable(getter) else {}

    def stream(self) -> str:
        """``rgb`` or ``flow``: the stream the checkpoint's config names, checked against the model's
        input channels when the model says them."""
        stream = str(self.config.data.stream)
        if stream not in STREAM_CHANNELS:
            raise TadkitError(f"holds a {stream!r} model; fusion takes one RGB and one flow checkpoint",
                              file=self.path, field="data.stream")
        channels = self.model_values.get("in_channels")
        if isinstance(channels, int) and channels != STREAM_CHANNELS[stream]:
            raise TadkitError(f"data.stream says {stream} but the model takes {channels}-channel clips "
                              f"({STREAM_CHANNELS[stream]} expected)", file=self.path, field="data.stream")
        return stream

    def setting(self, dotted: str) -> Any:
        section, key = dotted.split(".", 1)
        if section == "model":
            return self.model_values.get(key)
        return getattr(self.config.data, key, None)


def read_stream_checkpoint(path: str | Path) -> StreamCheckpoint:
    from tadkit.commands.detect import checkpoint_classes
    from tadkit.engine.checkpoint import build_checkpoint_model, load_checkpoint

    stored = load_checkpoint(path, map_location="cpu", require=("model_name", "model_config", "model"))
    model, config = build_checkpoint_model(stored, path)
    return StreamCheckpoint(str(path), model, config, checkpoint_classes(stored, model))


def _describe_classes(classes: list[str]) -> str:
    shown = ", ".join(classes[:3]) + (", ..." if len(classes) > 3 else "")
    return f"{len(classes)} classes ({shown})"


def check_stream_pair(rgb: StreamCheckpoint, flow: StreamCheckpoint) -> None:
    """Refuse a pair the official fusion would not run: see the module doc."""
    from tadkit.engine.data import method_of

    for side in (rgb, flow):
        if method_of(side.config).data_kind != "frames":
            raise TadkitError(f"holds method {side.config.model.name!r}, which reads features; --fuse fuses two "
                              "end-to-end (frame) checkpoints (for feature models: tadkit test --fuse)",
                              file=side.path, field="--fuse")
    if str(rgb.config.model.name).lower() != str(flow.config.model.name).lower():
        raise TadkitError(f"holds method {flow.config.model.name!r}, --checkpoint holds {rgb.config.model.name!r}; "
                          "only models of one method can be fused", file=flow.path, field="model_name")
    if rgb.stream() != "rgb":
        raise TadkitError("is a flow model; pass the RGB checkpoint as --checkpoint and the flow one as --fuse",
                          file=rgb.path, field="--checkpoint")
    if flow.stream() != "flow":
        raise TadkitError("is an RGB model; --fuse takes the flow checkpoint (TV-L1 flow frames, 2 channels)",
                          file=flow.path, field="--fuse")
    if rgb.classes != flow.classes:
        where = next((i for i, (a, b) in enumerate(zip(rgb.classes, flow.classes)) if a != b), None)
        first = "" if where is None else f"; class {where} is {rgb.classes[where]!r} vs {flow.classes[where]!r}"
        raise TadkitError(f"the class sets differ: {_describe_classes(flow.classes)}, --checkpoint has "
                          f"{_describe_classes(rgb.classes)}{first}", file=flow.path, field="classes")
    differ = [f"{key} {flow.setting(key)!r} (--checkpoint: {rgb.setting(key)!r})"
              for key in FRAME_SETTINGS if flow.setting(key) != rgb.setting(key)]
    if differ:
        raise TadkitError("the frame settings differ from --checkpoint's, so the two models would not read the "
                          "same clips: " + "; ".join(differ), file=flow.path, field=differ[0].split(" ", 1)[0])


def fuse_rgb_flow(rgb: StreamCheckpoint, flow: StreamCheckpoint, config: Any) -> tuple[Any, Any]:
    """(the fused model, ``config`` reading ``rgb+flow`` frames) after :func:`check_stream_pair`.
    ``config`` is the run's (the RGB checkpoint's, with the user's overrides): its test section decodes."""
    from tadkit.engine.config import Config
    from tadkit.postprocess.video_classifier import FusedModel

    check_stream_pair(rgb, flow)
    values = config.to_dict()
    fused_config = Config.from_dict({**values, "data": {**values["data"], "stream": FUSED_STREAM}})
    fused_config.source = config.source  # errors keep naming the user's config file
    return FusedModel([rgb.model, flow.model], FUSED_SLICES, key="clip"), fused_config


def fuse_frame_checkpoints(path: str | Path, model: Any, stored: Any, fuse_paths: list[str], config: Any) -> tuple[Any, Any]:
    """`tadkit test --checkpoint RGB --fuse FLOW` of end-to-end models: the checked pair reading the
    ``rgb+flow`` frames of ``config``'s store (``data.stream`` and ``test.fuse_streams`` follow; set by
    hand they must say the same)."""
    from tadkit.commands.detect import checkpoint_classes
    from tadkit.engine.checkpoint import load_checkpoint

    if len(fuse_paths) != 1:
        raise TadkitError(f"{len(fuse_paths)} checkpoints to fuse; end-to-end models fuse as one RGB (--checkpoint) "
                          "and one flow model (--fuse)", field="test.fuse")
    streams = config.test.fuse_streams
    if streams is not None and [list(s) for s in streams] != FUSED_SLICES:
        raise TadkitError(f"is {streams}; an RGB + flow frame pair reads channels {FUSED_SLICES} of the "
                          f"{FUSED_STREAM} clips (leave it unset)", file=config.source, field="test.fuse_streams")
    raw = load_checkpoint(path, map_location="cpu", require=("model_name", "model_config", "model"))
    rgb = StreamCheckpoint(str(path), model, stored, checkpoint_classes(raw, model))
    return fuse_rgb_flow(rgb, read_stream_checkpoint(fuse_paths[0]), config)


__all__ = ["FUSED_SLICES", "FUSED_STREAM", "StreamCheckpoint", "check_stream_pair", "fuse_frame_checkpoints", "fuse_rgb_flow",
           "read_stream_checkpoint"]
