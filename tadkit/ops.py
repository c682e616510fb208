"""Temporal IoU written once, for NumPy and PyTorch, used by evaluation, NMS and matching."""

from __future__ import annotations

import numpy as np


def tiou_pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """tIoU between every row of ``a`` (N, 2) and every row of ``b`` (M, 2) -> (N, M).

    union = len(a) + len(b) - intersection (the ActivityNet definition); 0 where union <= 0.
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 2)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 2)
    inter = np.clip(
        np.minimum(a[:, None, 1], b[None, :, 1]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0.0, None
    )
    union = (a[:, None, 1] - a[:, None, 0]) + (b[None, :, 1] - b[None, :, 0]) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return out


def tiou_pairwise_torch(a, b):
    """Torch version of :func:`tiou_pairwise` (differentiable; same broadcasting)."""
    import torch

    inter = (torch.minimum(a[:, None, 1], b[None, :, 1]) - torch.maximum(a[:, None, 0], b[None, :, 0])).clamp(min=0)
    union = (a[:, None, 1] - a[:, None, 0]) + (b[None, :, 1] - b[None, :, 0]) - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))
