"""Temporal IoU, written once, for NumPy arrays and PyTorch tensors alike.

Every tIoU in tadkit is :func:`tiou` (element-wise with broadcasting) or :func:`tiou_pairwise`
(all pairs): A2Net's anchor matching, NMS (with ECM's ``+1`` length offset), ActivityNet-protocol
matching. The THUMOS14 evalkit rounds differently (``intersection / (max end - min start)``) and
keeps its own formula in :func:`tadkit.evaluation.matching.tiou_thumos`, as the protocol requires.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _is_tensor(value: Any) -> bool:
    return type(value).__module__.startswith("torch")


def tiou(s1: Any, e1: Any, s2: Any, e2: Any, length_offset: float = 0.0) -> Any:
    """tIoU of segments ``[s1, e1]`` and ``[s2, e2]``, element-wise with broadcasting.

    inter = max(0, min(e1, e2) - max(s1, s2) + offset); union = len1 + len2 + 2 offset - inter
    (the ActivityNet ``segment_iou`` definition; ``length_offset`` = 1 is ECM's frame-style ``+1``);
    0 where the union is not positive. Tensors in, tensors out (differentiable); arrays -> float64.
    """
    if _is_tensor(s1):
        import torch

        inter = (torch.minimum(e1, e2) - torch.maximum(s1, s2) + length_offset).clamp(min=0)
        union = (e1 - s1 + length_offset) + (e2 - s2 + length_offset) - inter
        return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))
    inter = np.maximum(np.minimum(e1, e2) - np.maximum(s1, s2) + length_offset, 0.0)
    union = (e1 - s1 + length_offset) + (e2 - s2 + length_offset) - inter
    positive = union > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(positive, inter / np.where(positive, union, 1.0), 0.0)


def tiou_pairwise(a: Any, b: Any) -> Any:
    """tIoU between every row of ``a`` (..., N, 2) and every row of ``b`` (..., M, 2) -> (..., N, M)."""
    if not _is_tensor(a):
        a = np.asarray(a, dtype=np.float64).reshape(-1, 2)
        b = np.asarray(b, dtype=np.float64).reshape(-1, 2)
    return tiou(a[..., :, None, 0], a[..., :, None, 1], b[..., None, :, 0], b[..., None, :, 1])


tiou_pairwise_torch = tiou_pairwise  # issue-2 name: the same function takes tensors

__all__ = ["tiou", "tiou_pairwise", "tiou_pairwise_torch"]
