"""Building blocks shared by the 1-D temporal detectors: conv pyramids, per-level convs, a
prediction tower shared across levels, the per-level ``Scale`` and the official init.

Module and parameter names follow the A2Net authors' code (``conv1``, ``conv2``, ..., ``pred``,
``scale``) so their checkpoints load without renaming keys.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F


def conv1d(in_dim: int, out_dim: int, kernel_size: int, stride: int = 1) -> nn.Conv1d:
    """Conv with padding ``k // 2``: length kept at stride 1, halved (even lengths) at stride 2."""
    return nn.Conv1d(in_dim, out_dim, kernel_size, stride=stride, padding=kernel_size // 2, bias=True)


def init_conv_kaiming_uniform(module: nn.Module) -> None:
    """Official A2Net init, for ``module.apply``: Kaiming-uniform (a=0) weights, zero bias, on Conv1d only."""
    if isinstance(module, nn.Conv1d):
        nn.init.kaiming_uniform_(module.weight)  # a=0 -> gain sqrt(2), bound sqrt(6 / fan_in)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class Scale(nn.Module):
    """One learnable scalar that multiplies its input (per-level regression range, FCOS-style)."""

    def __init__(self, init_value: float = 1.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([float(init_value)]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class ConvPyramid(nn.Module):
    """A chain ``conv1 -> ReLU -> conv2 -> ReLU -> ...``; every intermediate output is one level."""

    def __init__(self, in_dim: int, dims: Sequence[int], strides: Sequence[int], kernel_size: int = 3) -> None:
        super().__init__()
        if len(dims) != len(strides):
            raise ValueError(f"dims ({len(dims)}) and strides ({len(strides)}) differ in length")
        self.num_levels = len(dims)
        prev = in_dim
        for i, (dim, stride) in enumerate(zip(dims, strides), start=1):
            self.add_module(f"conv{i}", conv1d(prev, dim, kernel_size, stride))
            prev = dim

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        levels = []
        for i in range(1, self.num_levels + 1):
            x = F.relu(getattr(self, f"conv{i}")(x))
            levels.append(x)
        return levels


class LevelConvs(nn.Module):
    """One separate conv per pyramid level (``{prefix}1..{prefix}L``), optionally followed by ReLU."""

    def __init__(
        self,
        in_dims: Sequence[int],
        out_dim: int,
        kernel_size: int,
        relu: bool,
        prefix: str = "conv",
    ) -> None:
        super().__init__()
        self.prefix = prefix
        self.relu = relu
        self.num_levels = len(in_dims)
        for i, in_dim in enumerate(in_dims, start=1):
            self.add_module(f"{prefix}{i}", conv1d(in_dim, out_dim, kernel_size))

    def forward(self, levels: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        if len(levels) != self.num_levels:
            raise ValueError(f"expected {self.num_levels} levels, got {len(levels)}")
        outs = []
        for i, x in enumerate(levels, start=1):
            y = getattr(self, f"{self.prefix}{i}")(x)
            outs.append(F.relu(y) if self.relu else y)
        return outs


class PredTower(nn.Module):
    """``num_convs`` x (conv k + ReLU) then a linear conv ``pred`` to ``out_dim`` channels."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_convs: int = 2, kernel_size: int = 3) -> None:
        super().__init__()
        self.num_convs = num_convs
        prev = in_dim
        for i in range(1, num_convs + 1):
            self.add_module(f"conv{i}", conv1d(prev, hidden_dim, kernel_size))
            prev = hidden_dim
        self.pred = conv1d(prev, out_dim, kernel_size)

    def convs(self) -> list[nn.Conv1d]:
        return [getattr(self, f"conv{i}") for i in range(1, self.num_convs + 1)] + [self.pred]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs()[:-1]:
            x = F.relu(conv(x))
        return self.pred(x)


def pack_levels(levels: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Concatenate (B, C, L_i) levels along time with one zero column after each level.

    Returns ``packed`` (B, C, sum L_i + num_levels), ``keep`` (bool, the non-separator columns) and
    ``gap_mask`` (1, 1, T) float, 1 on real columns. A kernel-3 conv on ``packed`` whose separator
    columns are re-zeroed after every layer equals running the conv on each level with zero padding,
    so a head shared by all levels runs as one conv call per layer instead of one per level.
    """
    batch, channels = levels[0].shape[:2]
    pieces = []
    mask_pieces = []
    for x in levels:
        pieces.append(x)
        pieces.append(x.new_zeros(batch, channels, 1))
        mask_pieces.append(torch.ones(x.shape[-1], dtype=torch.bool, device=x.device))
        mask_pieces.append(torch.zeros(1, dtype=torch.bool, device=x.device))
    keep = torch.cat(mask_pieces)
    return torch.cat(pieces, dim=-1), keep, keep.to(levels[0].dtype).view(1, 1, -1)


def run_tower_packed(tower: PredTower, packed: torch.Tensor, gap_mask: torch.Tensor) -> torch.Tensor:
    """Apply ``tower`` to a :func:`pack_levels` tensor, re-zeroing separators between layers."""
    convs = tower.convs()
    if any(conv.kernel_size[0] > 3 or conv.stride[0] != 1 for conv in convs):
        raise ValueError("packed levels are separated by one column: needs stride 1 and kernel size <= 3")
    x = packed
    for conv in convs[:-1]:
        x = F.relu(conv(x)) * gap_mask
    return convs[-1](x)
