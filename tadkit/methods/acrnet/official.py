"""Load the authors' ACRNet checkpoints (``Model.state_dict()``, keys unchanged) into :class:`ACRNet`.

The official ``main.py`` saves ``net.state_dict()`` directly; a ``{"state_dict": ...}`` wrapper and the
``module.`` prefix of ``nn.DataParallel`` are accepted too. Widths (per-modality D, classes, heads,
actionness hidden width) are read from the tensors. What a state_dict cannot tell defaults to the
official values and can be overridden: ``avg_pool`` follows the official rule (``num_classes != 20``),
``mca_merge`` defaults to ``"official"`` (the merge the weights were trained with).
"""

from __future__ import annotations

from typing import Any, Mapping


from tadkit.models.base import official_tensors
from tadkit.errors import TadkitError
from tadkit.methods.acrnet.model import ACRNet, ACRNetConfig

REQUIRED_KEYS = (
    "mca.rgb_proj",
    "mca.flow_proj",
    "mca.atte",
    "cas_rgb_encoder.2.weight",
    "aas_rgb_encoder.0.weight",
)


def infer_config(state_dict: Mapping[str, Any], **overrides: Any) -> ACRNetConfig:
    """:class:`ACRNetConfig` with the widths of ``state_dict`` (official keys) and ``overrides``."""
    sd = official_tensors(state_dict)
    missing = [k for k in REQUIRED_KEYS if k not in sd]
    if missing:
        raise TadkitError(f"not an ACRNet state_dict: missing {missing}", field="state_dict")
    proj = sd["mca.rgb_proj"]  # (H, D, D/H)
    widths = {
        "in_dim": 2 * int(proj.shape[1]),
        "num_heads": int(proj.shape[0]),
        "num_classes": int(sd["cas_rgb_encoder.2.weight"].shape[0]),
        "aas_hidden": int(sd["aas_rgb_encoder.0.weight"].shape[0]),
    }
    for key, value in widths.items():
        if key in overrides and overrides[key] is not None and int(overrides[key]) != value:
            raise TadkitError(f"override {key}={overrides[key]} disagrees with the checkpoint ({value})", field=key)
    return ACRNetConfig.from_kwargs(**{**overrides, **widths})


def from_official_state_dict(state_dict: Mapping[str, Any], **overrides: Any) -> ACRNet:
    """An :class:`ACRNet` holding the official weights (``strict=True``: every key must match)."""
    config = infer_config(state_dict, **overrides)
    model = ACRNet(config)
    try:
        model.load_state_dict(official_tensors(state_dict), strict=True)
    except RuntimeError as error:
        raise TadkitError(f"state_dict does not fit ACRNet({config}): {error}", field="state_dict") from None
    return model


__all__ = ["from_official_state_dict", "infer_config"]
