"""Load the authors' ECM checkpoints (``ECMNet.state_dict()``, keys unchanged) into :class:`ECM`.

The official ``save_best_model`` writes ``{"epoch", "state_dict", "optimizer"}``; pass either that
dict or its ``state_dict``. Widths (input dim, hidden width, classes) are read from the tensors; the
settings a state_dict cannot tell (top-k ratio, loss weights, groups) default to the official
THUMOS14 values and are set with ``overrides`` (e.g. ``preset="anet13"`` or ``topk_ratio=0.6``).
"""

from __future__ import annotations

from typing import Any, Mapping


from tadkit.models.base import official_tensors
from tadkit.errors import TadkitError
from tadkit.methods.ecm.model import ECM, ECMConfig

OFFICIAL_KEYS = (
    "base_module.conv_1.weight",
    "base_module.conv_1.bias",
    "base_module.conv_2.weight",
    "base_module.conv_2.bias",
    "classifier_module.conv.weight",
    "attention_module.conv_1.weight",
    "attention_module.conv_1.bias",
)


def infer_config(state_dict: Mapping[str, Any], **overrides: Any) -> ECMConfig:
    """:class:`ECMConfig` with the widths of ``state_dict`` (official keys) and ``overrides``."""
    sd = official_tensors(state_dict)
    missing = [k for k in OFFICIAL_KEYS if k not in sd]
    if missing:
        raise TadkitError(f"not an ECM state_dict: missing {missing}", field="state_dict")
    conv_1 = sd["base_module.conv_1.weight"]
    classifier = sd["classifier_module.conv.weight"]
    widths = {"in_dim": int(conv_1.shape[1]), "hidden_dim": int(conv_1.shape[0]),
              "num_classes": int(classifier.shape[0])}
    for key, value in widths.items():
        if key in overrides and int(overrides[key]) != value:
            raise TadkitError(f"override {key}={overrides[key]} disagrees with the checkpoint ({value})",
                              field=key)
    return ECMConfig.from_kwargs(**{**overrides, **widths})


def from_official_state_dict(state_dict: Mapping[str, Any], **overrides: Any) -> ECM:
    """An :class:`ECM` holding the official weights (``strict=True``: every key must match)."""
    config = infer_config(state_dict, **overrides)
    model = ECM(config)
    try:
        model.load_state_dict(official_tensors(state_dict), strict=True)
    except RuntimeError as error:
        raise TadkitError(f"state_dict does not fit ECM: {error}", field="state_dict") from None
    return model


__all__ = ["OFFICIAL_KEYS", "from_official_state_dict", "infer_config"]
