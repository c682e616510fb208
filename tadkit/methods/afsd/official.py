"""Official AFSD checkpoints (TencentYoutuResearch/ActionDetection-AFSD ``checkpoint-*.ckpt``) -> tadkit
models, keys unchanged.

The head (``coarse_pyramid_detection.*``) is loaded strictly into :class:`AFSD` (I3D taps) or
:class:`AFSDFeatures` (a head whose first pyramid conv is a Conv1d); widths, tap channels, spatial
kernels, classes and levels are read off the tensors. Backbone keys (``backbone.*``) are accepted:
loaded into ``backbone=`` when a module is given, otherwise kept on the model as
``official_backbone_state`` (keys without the ``backbone.`` prefix) for the end-to-end path.
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
    if "pyramids.0.0.conv3d.weight" in head:
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
    values.update(overrides)
    try:
        config = AFSDConfig.from_dict(values)
    except TadkitError as error:
        raise TadkitError(error.message, file=source, field=error.field) from None
    model: AFSD | AFSDFeatures
    if config.input_kind == "i3d":
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


__all__ = ["from_official_state_dict"]
