"""Official A2Net checkpoints (LeYangNwpu/A2Net) -> :class:`A2Net`, keys unchanged.

``tadkit convert a2net-official IN.pth OUT.pt`` calls :func:`from_official_state_dict`; the widths
are read off the tensors, so every official variant (THUMOS14, ActivityNet, AF-only, AB-only) loads.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from tadkit.errors import TadkitError
from tadkit.methods.a2net.model import A2Net, A2NetConfig
from tadkit.models.base import official_tensors


def from_official_state_dict(state_dict: Mapping[str, Any], source: str | None = None, **overrides: Any) -> A2Net:
    """Build an A2Net whose widths are read off the official tensors and load them unchanged.

    ``overrides`` set what shapes cannot tell (``window``, ``anchor_ratios`` values, loss/decode
    settings). ``source`` only names the file in error messages.
    """
    sd = official_tensors(state_dict, source)

    def shape(key: str) -> torch.Size:
        if key not in sd:
            raise TadkitError("missing official A2Net key", file=source, field=key)
        return sd[key].shape

    conv1 = shape("features.base_feature_net.conv1.weight")
    in_dim, base_dim = int(conv1[1]), int(conv1[0])
    pyramid_dims = []
    while f"features.conv{len(pyramid_dims) + 1}.weight" in sd:
        pyramid_dims.append(int(sd[f"features.conv{len(pyramid_dims) + 1}.weight"].shape[0]))
    if not pyramid_dims:
        shape("features.conv1.weight")  # raises naming the missing key
    has_af = any(k.startswith("af.") for k in sd)
    has_ab = any(k.startswith("ab.") for k in sd)
    if not (has_af or has_ab):
        raise TadkitError("no 'af.*' or 'ab.*' keys: not an A2Net state_dict", file=source, field="af")
    values: dict[str, Any] = {
        "in_dim": in_dim,
        "base_dim": base_dim,
        "pyramid_dims": tuple(pyramid_dims),
        "branches": "both" if has_af and has_ab else ("af" if has_af else "ab"),
    }
    num_ratios = len(overrides.get("anchor_ratios", A2NetConfig.anchor_ratios))
    if has_af:
        num_logits = int(shape("af.pred.cls_branch.pred.weight")[0])
        values["reduce_dim"] = int(shape("af.reduce_channels.conv1.weight")[0])
        values["head_dim"] = int(shape("af.pred.cls_branch.conv1.weight")[0])
    else:
        num_logits = int(shape("ab.pred1.weight")[0]) // num_ratios - 3
    values["num_classes"] = num_logits - 1
    if has_ab:
        ab_out = int(shape("ab.pred1.weight")[0])
        if ab_out % (num_logits + 3) != 0:
            raise TadkitError(
                f"{ab_out} output channels is not a multiple of {num_logits} classes + 3",
                file=source,
                field="ab.pred1.weight",
            )
        per_position = ab_out // (num_logits + 3)
        if per_position != num_ratios:
            raise TadkitError(
                f"checkpoint has {per_position} anchors per position but {num_ratios} anchor ratios are "
                "configured; pass anchor_ratios with the right values",
                file=source,
                field="anchor_ratios",
            )
    values.update(overrides)
    model = A2Net(A2NetConfig.from_dict(values))
    expected = set(model.state_dict())
    missing = sorted(expected - set(sd))
    unexpected = sorted(set(sd) - expected)
    if missing or unexpected:
        key = (missing or unexpected)[0]
        raise TadkitError(
            f"official A2Net keys do not match: missing {missing[:5]}, unexpected {unexpected[:5]}",
            file=source,
            field=key,
        )
    for key, value in model.state_dict().items():
        if sd[key].shape != value.shape:
            raise TadkitError(
                f"shape {tuple(sd[key].shape)} does not fit the inferred model ({tuple(value.shape)})",
                file=source,
                field=key,
            )
    model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
    return model


__all__ = ["from_official_state_dict"]
