"""Official ActionFormer checkpoints (happyharrycn/actionformer_release) -> :class:`ActionFormer`, keys unchanged.

The authors' ``train.py`` saves ``{"epoch", "state_dict", "scheduler", "optimizer", "state_dict_ema"}`` from an
``nn.DataParallel`` model (keys start with ``module.``) and their ``eval.py`` evaluates ``state_dict_ema``;
:func:`from_official_state_dict` takes that whole file, one of its two state dicts, or a bare state dict.

Read off the tensors: input_dim, embd_dim, embd_kernel_size, backbone_arch, embd_with_ln, fpn_dim, fpn_with_ln,
fpn_start_level, head_dim, head_num_layers, head_kernel_size, head_with_ln, num_classes; with ``use_rel_pe``
(``attn.rel_pe`` keys) also n_head and every level's window; ``drop_path_*.scale`` keys mean droppath > 0
(0.1, the official default, unless overridden). Everything else (max_seq_len, scale_factor, regression_range,
n_head and n_mha_win_size without rel_pe, use_abs_pe (a non-persistent buffer), train_cfg, test_cfg) comes
from ``overrides`` or the THUMOS14 defaults of :class:`ActionFormerConfig`: pass the values of the config the
checkpoint was trained with (ActivityNet: ``use_abs_pe=True``, ``max_seq_len=192``,
``n_mha_win_size=[7, 7, 7, 7, 7, -1]``, ``num_classes=1``...).
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import torch

from tadkit.errors import TadkitError
from tadkit.methods.actionformer.model import OFFICIAL_PREFIXES, ActionFormer, ActionFormerConfig
from tadkit.models.base import official_tensors

WEIGHTS = ("ema", "model")  # which state dict of a whole official checkpoint file
_ENTRY = {"ema": "state_dict_ema", "model": "state_dict"}


def select_state_dict(checkpoint: Mapping[str, Any], weights: str = "ema", source: str | None = None) -> Mapping[str, Any]:
    """The state dict to load: of a whole official checkpoint (it has ``state_dict`` / ``state_dict_ema``)
    the EMA weights (``weights="ema"``, what the official eval.py uses) or the trained ones (``"model"``);
    a bare state dict as it is."""
    if weights not in WEIGHTS:
        raise TadkitError(f"must be one of {WEIGHTS}, got {weights!r}", file=source, field="weights")
    if not any(key in checkpoint for key in _ENTRY.values()):
        return checkpoint
    entry = _ENTRY[weights]
    chosen = checkpoint.get(entry)
    if not isinstance(chosen, Mapping):
        other = "model" if weights == "ema" else "ema"
        raise TadkitError(
            f"the checkpoint has no {entry!r} state dict (pass weights={other!r} to load the other one)",
            file=source, field=entry,
        )
    return chosen


def _count(sd: Mapping[str, torch.Tensor], pattern: str) -> int:
    """How many consecutive indices ``i`` = 0, 1, ... have a key matching ``pattern.format(i)``."""
    n = 0
    while pattern.format(n) in sd:
        n += 1
    return n


def infer_config_values(sd: Mapping[str, torch.Tensor], source: str | None = None) -> dict[str, Any]:
    """The config values the official tensors determine (see the module docstring)."""

    def shape(key: str) -> torch.Size:
        if key not in sd:
            raise TadkitError("missing official ActionFormer key", file=source, field=key)
        return sd[key].shape

    if any(k.startswith("backbone.proj.") for k in sd):
        raise TadkitError("multi-feature inputs (backbone.proj) are not supported", file=source, field="backbone.proj")
    embd0 = shape("backbone.embd.0.conv.weight")
    arch = (
        _count(sd, "backbone.embd.{}.conv.weight"),
        _count(sd, "backbone.stem.{}.ln1.weight"),
        _count(sd, "backbone.branch.{}.ln1.weight"),
    )
    cls_out = shape("cls_head.cls_head.conv.weight")
    head_layers = _count(sd, "cls_head.head.{}.conv.weight") + 1
    values: dict[str, Any] = {
        "input_dim": int(embd0[1]),
        "embd_dim": int(embd0[0]),
        "embd_kernel_size": int(embd0[2]),
        "backbone_arch": arch,
        "embd_with_ln": "backbone.embd_norm.0.weight" in sd,
        "num_classes": int(cls_out[0]),
        "head_kernel_size": int(cls_out[2]),
        "head_num_layers": head_layers,
        "head_dim": int(shape("cls_head.head.0.conv.weight")[0]) if head_layers > 1 else int(cls_out[1]),
        "head_with_ln": "cls_head.norm.0.weight" in sd,
        "fpn_with_ln": "neck.fpn_norms.0.weight" in sd,
    }
    if values["fpn_with_ln"]:
        values["fpn_dim"] = int(shape("neck.fpn_norms.0.weight")[1])
        values["fpn_start_level"] = arch[2] + 1 - _count(sd, "neck.fpn_norms.{}.weight")
    else:
        values["fpn_dim"] = values["embd_dim"]
        values["fpn_start_level"] = arch[2] + 1 - _count(sd, "reg_head.scale.{}.scale")
    blocks = [f"backbone.stem.{i}" for i in range(arch[1])] + [f"backbone.branch.{i}" for i in range(arch[2])]
    rel_pe = {b: sd[f"{b}.attn.rel_pe"] for b in blocks if f"{b}.attn.rel_pe" in sd}
    if rel_pe:
        values["use_rel_pe"] = True
        values["n_head"] = int(next(iter(rel_pe.values())).shape[2])
        # level 0 = the stem's window, level 1 + i = branch block i's; no rel_pe -> global attention
        stem_window = next((int(v.shape[3]) for b, v in rel_pe.items() if ".stem." in b), -1)
        windows = [stem_window] + [
            int(rel_pe[f"backbone.branch.{i}"].shape[3]) if f"backbone.branch.{i}" in rel_pe else -1
            for i in range(arch[2])
        ]
        values["n_mha_win_size"] = windows[0] if len(set(windows)) == 1 else windows
    if any(re.search(r"\.drop_path_(attn|mlp)\.scale$", k) for k in sd):
        values["train_cfg"] = {"droppath": ActionFormerConfig().train_cfg.droppath}
    else:
        values["train_cfg"] = {"droppath": 0.0}
    return values


def _merge(inferred: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    values = {**inferred, **overrides}
    for key in ("train_cfg", "test_cfg"):  # nested: inferred droppath unless the override sets it
        if key in inferred and isinstance(overrides.get(key), Mapping):
            values[key] = {**inferred[key], **overrides[key]}
    return values


def from_official_state_dict(
    state_dict: Mapping[str, Any], source: str | None = None, weights: str = "ema", **overrides: Any
) -> ActionFormer:
    """Build the ActionFormer the official tensors describe and load them unchanged.

    ``state_dict``: a whole official checkpoint (``weights`` picks ``state_dict_ema`` or ``state_dict``), or
    a state dict, with or without the ``module.`` prefix. ``overrides``: official ``model`` config keys the
    tensors cannot tell. Every official key must be used and every one present, with the model's shape; any
    other case is a :class:`TadkitError` naming the key. ``source`` only names the file in error messages.
    """
    sd = official_tensors(select_state_dict(state_dict, weights, source), source)
    values = _merge(infer_config_values(sd, source), overrides)
    try:
        model = ActionFormer(ActionFormerConfig.from_dict(values))
    except TadkitError as error:
        raise TadkitError(error.message, file=source, field=error.field) from None
    expected = model.official_state_dict()
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    if missing or unexpected:
        raise TadkitError(
            f"official ActionFormer keys do not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}",
            file=source, field=(missing or unexpected)[0],
        )
    for key, value in expected.items():
        if sd[key].shape != value.shape:
            raise TadkitError(
                f"shape {tuple(sd[key].shape)} does not fit the model ({tuple(value.shape)})", file=source, field=key
            )
        if not sd[key].is_floating_point():
            raise TadkitError(f"expected a float tensor, got {sd[key].dtype}", file=source, field=key)
    result = model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=False)
    leftover = [k for k in result.missing_keys if k.startswith(OFFICIAL_PREFIXES)]
    assert not leftover and not result.unexpected_keys, (leftover, result.unexpected_keys)
    return model


__all__ = ["WEIGHTS", "from_official_state_dict", "infer_config_values", "select_state_dict"]
