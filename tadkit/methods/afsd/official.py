"""Official AFSD checkpoints (TencentYoutuResearch/ActionDetection-AFSD ``checkpoint-*.ckpt``) -> tadkit
models, keys unchanged.

The head (``coarse_pyramid_detection.*``) is loaded strictly into :class:`AFSD` (I3D taps) or
:class:`AFSDFeatures` (a head whose first pyramid conv is a Conv1d); widths, tap channels, spatial
kernels, classes and levels are read off the tensors. Backbone keys (``backbone.*``) are accepted:
loaded into ``backbone=`` when a module is given, otherwise kept on the model as
``official_backbone_state`` (keys without the ``backbone.`` prefix).

An END-TO-END checkpoint (``BDNet``: ``I3D_BackBone`` keeps pytorch-i3d's ``InceptionI3d`` as ``self._model``,
so its keys are ``backbone._model.*``, built up to Mixed_5c) becomes an :class:`AFSDEndToEnd` (method
``afsd_e2e``): every backbone key mapped into a ``pytorch_i3d``-layout I3D (:mod:`tadkit.video.pytorch_i3d`;
input channels and width read off the tensors, every shape checked, nothing left over), the head loaded as
above, and the test-time settings of the official THUMOS14 config (10 fps frames of 112 x 112, centre crop
from the head's spatial kernels: 96 -> 6 / 3, clip stride clip_length / 2) and, for 20 classes, the THUMOS14
class names in the official ``Class Index_Detection.txt`` order stored with the checkpoint
(``checkpoint_extras``), so ``tadkit detect video.mp4 --checkpoint`` runs it.

The ActivityNet head (``AFSD/anet/BDNet.py``: one spatial conv on Mixed_5c, no Mixed_4f) is recognised by its
keys; it gets :data:`ACTIVITYNET_HEAD` (strides, scale ranges, loss options; ``overrides`` still win) and,
end to end, the ActivityNet test settings (at most 768 frames per video, one window, class ``action``).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from tadkit.errors import TadkitError
from tadkit.methods.afsd.model import AFSD, AFSDConfig, AFSDFeatures
from tadkit.models.base import official_tensors

HEAD_PREFIX = "coarse_pyramid_detection."
BACKBONE_PREFIX = "backbone."
E2E_BACKBONE_PREFIX = "backbone._model."  # BDNet.backbone = I3D_BackBone; I3D_BackBone._model = InceptionI3d
# configs/thumos14.yaml (testing) and the README's data preparation: 10 fps, 112 x 112 frames, stride 128 of 256
OFFICIAL_FRAME_FPS = 10.0
OFFICIAL_FRAME_SIZE = 112
# The ActivityNet head (AFSD/anet/BDNet.py fpn_strides, multisegment_loss.py bounds, the README's training flags
# --lw 1 --cw 1 --piou 0.6, train.py's SSL scales): what a Mixed_5c-only pyramid of 6 levels is built with
ACTIVITYNET_HEAD: dict[str, Any] = {
    "loc_strides": (4, 8, 16, 32, 64, 128),
    "scale_ranges": ((0, 30), (15, 60), (30, 120), (60, 240), (96, 768), (256, 768)),
    "adaptive_piou": True,
    "per_sample_normalisation": True,
    "prop_loc_loss": "smooth_l1",
    "triplet_scales": (1.0, 4.0, 4.0),
    "loc_weight": 1.0,
    "cls_weight": 1.0,
    "piou": 0.6,
    "clip_length": 768,
    "conf_thresh": 1e-9,  # anet/test.py keeps every candidate scoring > 1e-9 (no conf_thresh)
}


def from_official_state_dict(
    state_dict: Mapping[str, Any], source: str | None = None, backbone: nn.Module | None = None, **overrides: Any
) -> AFSD | AFSDFeatures:
    """Build the AFSD model the tensors describe and load them unchanged.

    ``overrides`` set what shapes cannot tell (``clip_length``, ``gn_groups``, loss / decode settings).
    ``source`` only names the file in error messages.
    """
    sd = official_tensors(state_dict, source)
    head = {k[len(HEAD_PREFIX):]: v for k, v in sd.items() if k.startswith(HEAD_PREFIX)}
    backbone_sd = {k[len(BACKBONE_PREFIX):]: v for k, v in sd.items() if k.startswith(BACKBONE_PREFIX)}
    other = sorted(k for k in sd if not k.startswith((HEAD_PREFIX, BACKBONE_PREFIX)))
    if not head:
        raise TadkitError(f"no '{HEAD_PREFIX}*' keys: not an AFSD state_dict", file=source, field=HEAD_PREFIX)
    if other:
        raise TadkitError(f"unexpected key(s) {other[:5]}", file=source, field=other[0])

    def shape(key: str) -> torch.Size:
        if key not in head:
            raise TadkitError("missing official AFSD key", file=source, field=HEAD_PREFIX + key)
        return head[key].shape

    values: dict[str, Any] = {}
    if "pyramids.0.0.conv3d.weight" in head and "pyramids.1.0.conv3d.weight" not in head:
        # the ActivityNet head (AFSD/anet/BDNet.py): one spatial conv on Mixed_5c, then strided Conv1d levels;
        # the Mixed_4f entries are not used by it (official values, scaled like Mixed_5c's kernel)
        w5 = shape("pyramids.0.0.conv3d.weight")
        values.update(
            input_kind="i3d",
            pyramid_taps="mixed_5c",
            width=int(w5[0]),
            backbone_channels=(AFSDConfig.backbone_channels[0], int(w5[1])),
            spatial_kernels=(2 * int(w5[-1]), int(w5[-1])),
        )
    elif "pyramids.0.0.conv3d.weight" in head:
        w4 = shape("pyramids.0.0.conv3d.weight")
        w5 = shape("pyramids.1.0.conv3d.weight")
        values.update(
            input_kind="i3d",
            width=int(w4[0]),
            backbone_channels=(int(w4[1]), int(w5[1])),
            spatial_kernels=(int(w4[-1]), int(w5[-1])),
        )
    else:
        w0 = shape("pyramids.0.0.conv1d.weight")
        values.update(input_kind="features", width=int(w0[0]), in_dim=int(w0[1]))
    values["num_classes"] = int(shape("conf_head.conv1d.weight")[0]) - 1
    num_levels = 0
    while f"loc_heads.{num_levels}.scale" in head:
        num_levels += 1
    values["num_levels"] = num_levels
    if values.get("pyramid_taps") == "mixed_5c" and num_levels == len(ACTIVITYNET_HEAD["loc_strides"]):
        values.update(ACTIVITYNET_HEAD)  # overrides below still win
    end_to_end = E2E_BACKBONE_PREFIX + "Conv3d_1a_7x7.conv3d.weight" in sd and backbone is None
    backbone_overrides: dict[str, Any] = {}
    if end_to_end:
        from dataclasses import fields

        from tadkit.methods.afsd.e2e import BackboneConfig

        names = {f.name for f in fields(BackboneConfig)}
        backbone_overrides = {k: v for k, v in overrides.items() if k in names}
        overrides = {k: v for k, v in overrides.items() if k not in names}
    values.update(overrides)
    try:
        config = AFSDConfig.from_dict(values)
    except TadkitError as error:
        raise TadkitError(error.message, file=source, field=error.field) from None
    model: AFSD | AFSDFeatures
    if end_to_end:
        model = _end_to_end_model(config, sd, backbone_overrides, source)
        backbone_sd = {}  # loaded into the model's I3D
    elif config.input_kind == "i3d":
        model = AFSD(config, backbone=backbone)
    else:
        if backbone_sd:
            raise TadkitError("a feature-input AFSD has no backbone", file=source, field=BACKBONE_PREFIX)
        model = AFSDFeatures(config)
    target = model.coarse_pyramid_detection
    expected = set(target.state_dict())
    missing = sorted(expected - set(head))
    unexpected = sorted(set(head) - expected)
    if missing or unexpected:
        key = HEAD_PREFIX + (missing or unexpected)[0]
        raise TadkitError(
            f"official AFSD keys do not match: missing {missing[:5]}, unexpected {unexpected[:5]}",
            file=source,
            field=key,
        )
    for key, value in head.items():
        if target.state_dict()[key].shape != value.shape:
            raise TadkitError(
                f"shape {tuple(value.shape)} does not fit {tuple(target.state_dict()[key].shape)}",
                file=source,
                field=HEAD_PREFIX + key,
            )
    target.load_state_dict(head, strict=True)
    if backbone_sd:
        if backbone is not None:
            backbone.load_state_dict(backbone_sd, strict=False)  # official: non-strict pretrained load
        else:
            model.official_backbone_state = backbone_sd  # type: ignore[union-attr]
    return model


def _end_to_end_model(
    config: AFSDConfig, sd: Mapping[str, torch.Tensor], overrides: dict[str, Any], source: str | None
) -> Any:
    """The head ``config`` on a pytorch-i3d backbone built from, and loaded with, the ``backbone._model.*`` keys.
    ``overrides``: :class:`BackboneConfig` fields the user set (``crop_size``, ``freeze_bn``)."""
    from tadkit.methods.afsd.e2e import TAPS, AFSDEndToEnd, BackboneConfig, build_backbone, tap_spatial_sizes
    from tadkit.video.pytorch_i3d import convert_pytorch_i3d_state
    from tadkit.video.weights import check_state_dict, config_from_state_dict

    stray = sorted(k for k in sd if k.startswith(BACKBONE_PREFIX) and not k.startswith(E2E_BACKBONE_PREFIX))
    if stray:
        raise TadkitError(f"backbone key outside {E2E_BACKBONE_PREFIX}*", file=source, field=stray[0])
    state = convert_pytorch_i3d_state({k: v for k, v in sd.items() if k.startswith(E2E_BACKBONE_PREFIX)}, source or "")
    i3d = config_from_state_dict(state, source or "")
    first = E2E_BACKBONE_PREFIX + "Conv3d_1a_7x7"
    if i3d.layout != "pytorch_i3d":
        raise TadkitError("backbone batch norm has no scale (bn.weight): not pytorch-i3d's InceptionI3d",
                          file=source, field=f"{first}.bn.weight")
    if i3d.num_classes:
        raise TadkitError("the end-to-end backbone has a logits layer; AFSD's I3D_BackBone stops at Mixed_5c",
                          file=source, field=E2E_BACKBONE_PREFIX + "logits.conv3d.weight")
    derived = {"in_channels", "backbone_width", "backbone_weights", "backbone_layout"}
    if derived & set(overrides):
        field = sorted(derived & set(overrides))[0]
        raise TadkitError("read off the checkpoint's backbone tensors; do not set it", file=source, field=field)
    crop = int(overrides.get("crop_size", 16 * config.spatial_kernels[0]))
    if tap_spatial_sizes(crop) != config.spatial_kernels:
        raise TadkitError(f"the head's spatial kernels {config.spatial_kernels} fit no crop of 16 x "
                          f"{config.spatial_kernels[0]}; pass --set crop_size=N", file=source,
                          field=HEAD_PREFIX + "pyramids.0.0.conv3d.weight")
    try:
        backbone_config = BackboneConfig(**{**overrides, "in_channels": i3d.in_channels, "crop_size": crop,
                                            "backbone_width": int(state["Conv3d_1a_7x7.conv.weight"].shape[0]) / 64,
                                            "backbone_weights": None, "backbone_layout": "pytorch_i3d"})
    except TadkitError as error:
        raise TadkitError(error.message, file=source, field=error.field) from None
    backbone = build_backbone(backbone_config)
    check_state_dict(backbone, state, source or "")  # every tensor used, none left over, shapes equal
    backbone.load_state_dict(state, strict=True)
    taps = tuple(backbone.out_channels[tap] for tap in TAPS)
    if config.pyramid_taps == "mixed_5c":  # the ActivityNet head reads Mixed_5c only: take Mixed_4f's from the backbone
        from dataclasses import replace

        config = replace(config, backbone_channels=(taps[0], config.backbone_channels[1]))
    if taps != config.backbone_channels:
        raise TadkitError(f"the head takes {config.backbone_channels} tap channels, the backbone gives {taps}",
                          file=source, field=HEAD_PREFIX + "pyramids.0.0.conv3d.weight")
    model = AFSDEndToEnd(config, backbone_config, backbone)
    model.checkpoint_extras = official_test_settings(model, crop)
    return model


def official_test_settings(model: Any, crop: int) -> dict[str, Any]:
    """What ``tadkit detect`` needs besides the weights: the official THUMOS14 test recipe as a run config,
    and the class names when the head has THUMOS14's 20 classes (official ``Class Index_Detection.txt``
    order, the order of :data:`THUMOS14_CLASS_IDS`). The ActivityNet head (Mixed_5c-only pyramid) gets the
    ActivityNet recipe instead: at most 768 frames per video at its own rate, one 768-frame window, soft-NMS
    sigma 0.85 down to 1e-9, 5000 per video, and the one class ``action``."""
    from tadkit.data.formats._common import THUMOS14_CLASS_IDS

    config = model.config
    stream = "rgb" if model.backbone_config.in_channels == 3 else "flow"
    if config.pyramid_taps == "mixed_5c":  # the ActivityNet head: configs/anet.yaml + anet/test.py
        extras = {"config": {
            "model": {"name": "afsd_e2e", "kwargs": model.config_dict()},
            "data": {"stream": stream, "frame_max_frames": config.clip_length, "frame_size": OFFICIAL_FRAME_SIZE,
                     "window": config.clip_length, "stride_test": config.clip_length, "crop_size": crop},
            "test": {"nms": {"preset": "afsd", "sigma": 0.85, "min_score": 1e-9, "max_per_class": 5000,
                             "max_per_video": 5000}},
        }}
        if config.num_classes == 1:  # class-agnostic proposals; --set test.video_classifier=FILE labels them
            extras["classes"] = ["action"]
        return extras
    extras: dict[str, Any] = {
        "config": {
            "model": {"name": "afsd_e2e", "kwargs": model.config_dict()},
            "data": {"stream": stream, "frame_fps": OFFICIAL_FRAME_FPS, "frame_size": OFFICIAL_FRAME_SIZE,
                     "window": config.clip_length, "stride_test": config.clip_length // 2, "crop_size": crop},
            "test": {"nms": {"preset": "afsd"}},
        }
    }
    if config.num_classes == len(THUMOS14_CLASS_IDS):
        extras["classes"] = list(THUMOS14_CLASS_IDS)
    return extras


__all__ = ["ACTIVITYNET_HEAD", "from_official_state_dict", "official_test_settings"]
