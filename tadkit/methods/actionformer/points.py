"""ActionFormer's temporal points: one per feature step of every pyramid level.

A point is the row ``(t, reg_min, reg_max, stride)``: ``t`` is its position on the level-0 feature
grid (``i * stride`` for the level's ``i``-th step, no half-step offset, as the official
``PointGenerator`` with ``use_offset=False``), ``reg_min``/``reg_max`` the level's regression range
(on the level-0 grid) and ``stride`` the level's stride. Label assignment reads all four columns,
decoding reads ``t`` and ``stride``.

The official generator buffers ``max_seq_len * max_buffer_len_factor`` points and slices the first
``T_l`` per level; slicing an ``arange`` equals building it at the right length, so we build it
directly (no buffer, no length cap; the model's own length checks live with the model).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from tadkit.errors import TadkitError

__all__ = ["make_points", "pyramid_strides"]


def pyramid_strides(scale_factor: int, num_branch_layers: int, fpn_start_level: int = 0) -> list[int]:
    """Strides of the pyramid levels: ``scale_factor ** l`` for ``l`` in ``fpn_start_level..num_branch_layers``
    (``num_branch_layers`` is ``backbone_arch[-1]``)."""
    return [scale_factor**level for level in range(fpn_start_level, num_branch_layers + 1)]


def make_points(
    level_lengths: Sequence[int],
    strides: Sequence[int],
    regression_range: Sequence[Sequence[float]],
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> list[Tensor]:
    """Points of every level: ``(T_l, 4)`` rows ``(t, reg_min, reg_max, stride)``, ``t = i * stride``.

    Args:
        level_lengths: ``T_l`` of each level (the head outputs' lengths).
        strides: each level's stride on the level-0 grid.
        regression_range: ``(reg_min, reg_max)`` per level, on the level-0 grid.
    """
    if not len(level_lengths) == len(strides) == len(regression_range):
        raise TadkitError(
            f"{len(level_lengths)} level lengths, {len(strides)} strides and {len(regression_range)} regression "
            "ranges: one of each per pyramid level is needed",
            field="regression_range",
        )
    points = []
    for length, stride, reg_range in zip(level_lengths, strides, regression_range):
        if len(reg_range) != 2:
            raise TadkitError(f"each range is (min, max), got {list(reg_range)!r}", field="regression_range")
        steps = torch.arange(int(length), dtype=dtype, device=device) * stride
        level = torch.empty(int(length), 4, dtype=dtype, device=device)
        level[:, 0] = steps
        level[:, 1] = float(reg_range[0])
        level[:, 2] = float(reg_range[1])
        level[:, 3] = float(stride)
        points.append(level)
    return points
