"""AFSD network after the backbone (the official ``BDNet`` head, spec ``methods/afsd.md`` §2) and the
feature-based variant (spec §9, after OpenTAD).

Coordinates: the head works on a clip of ``clip_length`` frames (official 256 at 10 fps). Coarse
distances ``loc`` are in clip frames; priors are normalised point centres ``(c + 0.5) / t``.

Deviations from the official code (each is also in docs/afsd.md):

1. Boundary max pooling is plain PyTorch (``boundary_pooling.py``); its forward equals the CUDA
   kernel, its gradient goes to the first arg-max of the pooled range. The official CUDA backward
   uses the wrong time length whenever the pooled tensor is longer than the number of regions (the
   frame-level and SSL pooling) and so sends those gradients to wrong frames; we do not reproduce that.
2. Widths are config fields (``width``; official 512), as are the backbone tap channels
   (``backbone_channels``; official Mixed_4f 832 / Mixed_5c 1024), the number of classes, the clip
   length and the GroupNorm group count; with the defaults the module and its keys are the official ones.
3. The center (quality) loss target, IoU(refined box, GT), is computed from the live coarse and
   refinement outputs and therefore carries gradient, as in the official code;
   ``detach_center_target=True`` detaches it.
4. The feature variant (:class:`AFSDFeatures`, not official: OpenTAD's re-implementation) replaces the
   two 3-D convs and the Mixed_4f/5c fusion by a Conv1d k1 on the feature window, masks padded
   positions at every level (GroupNorm statistics still include them, as in OpenTAD), has no triplet
   (SSL) loss and takes targets in window steps.
5. Inference keeps the official loop's quirk of never emitting the last pending candidate of a class
   in soft-NMS (``keep_last=False``); ``keep_last=True`` is the textbook algorithm.
6. A clip without any ground truth is all background (the official matcher indexes an empty tensor
   and fails).
7. The level-0 boundary labels are the clip labels nearest-downsampled with ``scale_factor`` (official
   ``1/4``); when that does not give the level-0 length (other clip lengths) ``size=`` is used.
8. The official ActivityNet head is options of this head, not a second network (``AFSD/anet/BDNet.py``
   and ``multisegment_loss.py``): ``pyramid_taps: mixed_5c`` (level 0 = the spatial conv of Mixed_5c,
   then strided Conv1d levels; no Mixed_4f), ``loc_strides``, ``scale_ranges``, ``adaptive_piou``,
   ``per_sample_normalisation`` and ``triplet_scales`` (its SSL pooling divides by the THUMOS values
   1, 4, 4 although its level 0 is clip / 8 long: kept by default in ``afsd/anet13_frames``, null
   fixes it). With them off (default) the head is the THUMOS14 one.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from tadkit.errors import TadkitError, reject_unknown_fields
from tadkit.methods.afsd.boundary_pooling import boundary_max_pool
from tadkit.methods.afsd.inference import decode_window, window_candidates
from tadkit.methods.afsd.losses import boundary_losses, detection_losses, weighted_total
from tadkit.methods.afsd.targets import boundary_labels
from tadkit.models.base import WindowDetections

INPUT_KINDS = ("i3d", "features")
PYRAMID_TAPS = ("mixed_4f+mixed_5c", "mixed_5c")  # THUMOS14 head / ActivityNet head (input_kind "i3d")
PROP_LOC_LOSSES = ("l1", "smooth_l1")


# --------------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------------


@dataclass
class AFSDConfig:
    """AFSD hyper-parameters; defaults are the official THUMOS14 ones (I3D taps input)."""

    num_classes: int = 20  # action classes, background excluded (outputs = num_classes + 1)
    width: int = 512  # every 512 of the official head
    input_kind: str = "i3d"  # "i3d": Mixed_4f + Mixed_5c taps; "features": (B, in_dim, T) windows
    backbone_channels: tuple[int, int] = (832, 1024)  # Mixed_4f, Mixed_5c (input_kind "i3d")
    pyramid_taps: str = "mixed_4f+mixed_5c"  # "mixed_5c": the ActivityNet head (level 0 from Mixed_5c alone)
    spatial_kernels: tuple[int, int] = (6, 3)  # spatial size of Mixed_4f / Mixed_5c at 96x96 crops
    in_dim: int = 2048  # input_kind "features"
    clip_length: int = 256  # frames per clip (frame-level feature length, "frame_num")
    num_levels: int = 6
    gn_groups: int = 32
    # losses (official THUMOS14 training command: --lw 10 --cw 1 --piou 0.5, ssl 0.1 default)
    loc_weight: float = 10.0
    cls_weight: float = 1.0
    piou: float = 0.5
    ssl_weight: float = 0.1
    focal_alpha: float = 0.25  # background alpha; actions get 1 - focal_alpha
    focal_gamma: float = 2.0
    boundary_aux_weight: float = 0.1  # level-0 proposal-branch boundary BCE
    triplet_weights: tuple[float, float, float] = (1.0, 0.1, 0.1)  # frame, loc branch, conf branch
    triplet_margin: float = 1.0
    prop_loc_loss: str = "l1"  # "smooth_l1": the ActivityNet version
    detach_center_target: bool = False
    # The official ActivityNet head (AFSD/anet/BDNet.py + multisegment_loss.py); all off = THUMOS14's:
    loc_strides: tuple[float, ...] | None = None  # coarse distances x per-level stride (official [4, 8, ..., 128])
    scale_ranges: tuple[tuple[float, float], ...] | None = None  # per-level (lo, hi] of a positive's max distance
    adaptive_piou: bool = False  # refinement positives at IoU >= min(piou, the sample's best coarse IoU)
    per_sample_normalisation: bool = False  # each term / that sample's positives, then the batch mean
    # SSL pooling scales of (frame-level, loc branch, conf branch); None = (1, L / level-0 length, same),
    # the THUMOS14 values; the official ActivityNet code keeps THUMOS's (1, 4, 4) with a level 0 of L / 8
    triplet_scales: tuple[float, float, float] | None = None
    # inference
    conf_thresh: float = 0.01

    def __post_init__(self) -> None:
        self.backbone_channels = tuple(int(v) for v in self.backbone_channels)  # type: ignore[assignment]
        self.spatial_kernels = tuple(int(v) for v in self.spatial_kernels)  # type: ignore[assignment]
        self.triplet_weights = tuple(float(v) for v in self.triplet_weights)  # type: ignore[assignment]
        if self.triplet_scales is not None:
            self.triplet_scales = tuple(float(v) for v in self.triplet_scales)  # type: ignore[assignment]
        if self.loc_strides is not None:
            self.loc_strides = tuple(float(v) for v in self.loc_strides)  # type: ignore[assignment]
        if self.scale_ranges is not None:
            self.scale_ranges = tuple((float(lo), float(hi)) for lo, hi in self.scale_ranges)  # type: ignore[assignment]
        checks = {
            "num_classes": self.num_classes >= 1,
            "width": self.width >= 2 and self.width % 2 == 0 and self.width % self.gn_groups == 0,
            "input_kind": self.input_kind in INPUT_KINDS,
            "pyramid_taps": self.pyramid_taps in PYRAMID_TAPS and (self.pyramid_taps == PYRAMID_TAPS[0]
                                                                  or self.input_kind == "i3d"),
            "triplet_scales": self.triplet_scales is None or (len(self.triplet_scales) == 3 and min(self.triplet_scales) > 0),
            "backbone_channels": len(self.backbone_channels) == 2 and min(self.backbone_channels) > 0,
            "spatial_kernels": len(self.spatial_kernels) == 2 and min(self.spatial_kernels) > 0,
            "in_dim": self.in_dim > 0,
            "clip_length": self.clip_length > 0,
            "num_levels": self.num_levels >= 2,
            "gn_groups": self.gn_groups > 0,
            "piou": 0.0 <= self.piou <= 1.0,
            "focal_alpha": 0.0 < self.focal_alpha < 1.0,
            "triplet_weights": len(self.triplet_weights) == 3,
            "prop_loc_loss": self.prop_loc_loss in PROP_LOC_LOSSES,
            "conf_thresh": 0.0 <= self.conf_thresh < 1.0,
            "loc_strides": self.loc_strides is None or (len(self.loc_strides) == self.num_levels
                                                        and min(self.loc_strides) > 0),
            "scale_ranges": self.scale_ranges is None or (len(self.scale_ranges) == self.num_levels
                                                          and all(0 <= lo < hi for lo, hi in self.scale_ranges)),
        }
        for name, ok in checks.items():
            if not ok:
                raise TadkitError(f"invalid value {getattr(self, name)!r}", field=f"model.kwargs.{name}")

    @property
    def num_outputs(self) -> int:
        return self.num_classes + 1

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        for key, value in values.items():
            if isinstance(value, tuple):
                values[key] = [list(v) if isinstance(v, tuple) else v for v in value]
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "AFSDConfig":
        reject_unknown_fields(cls, values, "AFSD option(s)", field="model.kwargs")
        return cls(**dict(values))


# --------------------------------------------------------------------------------------------------
# Layers (official names: Unit1D.conv1d, Unit3D.conv3d, ScaleExp.scale)
# --------------------------------------------------------------------------------------------------


def same_padding(length: int, kernel_size: int, stride: int) -> tuple[int, int]:
    """TF-style SAME padding (front, back): total ``max(k - s, 0)`` if ``length % s == 0`` else
    ``max(k - length % s, 0)``; the front gets the smaller half."""
    total = max(kernel_size - stride, 0) if length % stride == 0 else max(kernel_size - length % stride, 0)
    return total // 2, total - total // 2


class Unit1D(nn.Module):
    """Conv1d with TF-style SAME padding (no activation: the official head never uses one here)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1) -> None:
        super().__init__()
        self.conv1d = nn.Conv1d(in_channels, out_channels, kernel_size, stride, padding=0, bias=True)
        self.kernel_size = kernel_size
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        front, back = same_padding(x.shape[-1], self.kernel_size, self.stride)
        if front or back:
            x = F.pad(x, [front, back])
        return self.conv1d(x)


class Unit3D(nn.Module):
    """Conv3d, 'spatial_valid' padding, kernel (1, k, k) and stride 1: no padding at all."""

    def __init__(self, in_channels: int, out_channels: int, spatial: int) -> None:
        super().__init__()
        self.conv3d = nn.Conv3d(in_channels, out_channels, (1, spatial, spatial), padding=0, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3d(x)


class ScaleExp(nn.Module):
    """``exp(scale * x)``, one learnable scalar per pyramid level (init 1)."""

    def __init__(self, init_value: float = 1.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([float(init_value)]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(x * self.scale)


def conv_gn_relu(conv: nn.Module, channels: int, groups: int) -> nn.Sequential:
    return nn.Sequential(conv, nn.GroupNorm(groups, channels), nn.ReLU(inplace=True))


class ProposalBranch(nn.Module):
    """Saliency-based refinement branch (§2.5): current point, boundary (level grid) and frame paths."""

    def __init__(self, width: int, groups: int) -> None:
        super().__init__()
        self.cur_point_conv = conv_gn_relu(Unit1D(width, width, 1), width, groups)
        self.lr_conv = conv_gn_relu(Unit1D(width, 2 * width, 1), 2 * width, groups)
        self.roi_conv = conv_gn_relu(Unit1D(width, width, 1), width, groups)
        self.proposal_conv = conv_gn_relu(Unit1D(4 * width, width, 1), width, groups)

    def forward(
        self, feature: torch.Tensor, frame_level: torch.Tensor, regions: torch.Tensor, frame_regions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        fm_short = self.cur_point_conv(feature)
        boundary = self.lr_conv(feature)
        prop = boundary_max_pool(boundary, regions)
        roi = self.roi_conv(boundary_max_pool(frame_level, frame_regions))
        return self.proposal_conv(torch.cat([roi, prop, fm_short], dim=1)), boundary


def glorot_uniform_init(module: nn.Module) -> None:
    """Official init (``BDNet.weight_init``): uniform(+-sqrt(3 / max(1, (fan_in + fan_out) / 2))), bias 0."""
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose3d)):
        fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(module.weight)
        limit = math.sqrt(3.0 / max(1.0, (fan_in + fan_out) / 2.0))
        with torch.no_grad():
            module.weight.uniform_(-limit, limit)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def level_priors(length: int) -> torch.Tensor:
    """(length, 1) float32 normalised point centres ``(c + 0.5) / length`` (computed in double, as Python)."""
    return torch.from_numpy((np.arange(length, dtype=np.float64) + 0.5) / length).float().view(-1, 1)


def proposal_regions(
    loc: torch.Tensor, priors: torch.Tensor, length: int, clip_length: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Boundary regions (B, t, 4) = (s_lo, s_hi, e_lo, e_hi) of one level, on the level grid and on the
    ``clip_length`` frame grid, from coarse distances ``loc`` (B, t, 2) in frames (no gradient)."""
    with torch.no_grad():
        b = loc.shape[0]
        priors = priors.to(loc.device).expand(b, length, 1)
        segments = loc / clip_length * length
        new_priors = torch.round(priors * length - 0.5)
        plen = segments[:, :, :1] + segments[:, :, 1:]
        in_plen = torch.clamp(plen / 4.0, min=1.0)
        out_plen = torch.clamp(plen / 10.0, min=1.0)
        left = new_priors - segments[:, :, :1]
        right = new_priors + segments[:, :, 1:]
        regions = torch.cat(
            [torch.round(left - out_plen), torch.round(left + in_plen), torch.round(right - in_plen), torch.round(right + out_plen)],
            dim=-1,
        )
        decoded = torch.cat([priors * clip_length - loc[:, :, :1], priors * clip_length + loc[:, :, 1:]], dim=-1)
        frame_regions = frame_boundary_regions(decoded)
    return regions, frame_regions


def frame_boundary_regions(segments: torch.Tensor) -> torch.Tensor:
    """(..., 2) segments in frames -> (..., 4) rounded boundary regions with w = end - start + 1,
    inner = max(w / 4, 1), outer = max(w / 10, 1) (§2.5, also the SSL pooling rule)."""
    plen = segments[..., 1:] - segments[..., :1] + 1.0
    in_plen = torch.clamp(plen / 4.0, min=1.0)
    out_plen = torch.clamp(plen / 10.0, min=1.0)
    return torch.cat(
        [
            torch.round(segments[..., :1] - out_plen),
            torch.round(segments[..., :1] + in_plen),
            torch.round(segments[..., 1:] - in_plen),
            torch.round(segments[..., 1:] + out_plen),
        ],
        dim=-1,
    )


# --------------------------------------------------------------------------------------------------
# The head (official CoarsePyramid; module names = official keys under ``coarse_pyramid_detection.``)
# --------------------------------------------------------------------------------------------------


class CoarsePyramid(nn.Module):
    """Pyramid, coarse predictor, frame-level feature, proposal branches and heads (§2.2-2.5)."""

    def __init__(self, config: AFSDConfig) -> None:
        super().__init__()
        self.config = config
        w, g, nc = config.width, config.gn_groups, config.num_outputs
        self.frame_num = config.clip_length
        self.pyramids = nn.ModuleList()
        if config.input_kind == "i3d" and self.mixed_5c_only:  # ActivityNet: level 0 = Mixed_5c (clip / 8)
            self.pyramids.append(conv_gn_relu(Unit3D(config.backbone_channels[1], w, config.spatial_kernels[1]), w, g))
            first_strided = 1
        elif config.input_kind == "i3d":
            c4f, c5c = config.backbone_channels
            self.pyramids.append(conv_gn_relu(Unit3D(c4f, w, config.spatial_kernels[0]), w, g))
            self.pyramids.append(conv_gn_relu(Unit3D(c5c, w, config.spatial_kernels[1]), w, g))
            first_strided = 2
        else:
            self.pyramids.append(conv_gn_relu(Unit1D(config.in_dim, w, 1), w, g))
            first_strided = 1
        for _ in range(first_strided, config.num_levels):
            self.pyramids.append(conv_gn_relu(Unit1D(w, w, 3, 2), w, g))
        self.loc_heads = nn.ModuleList([ScaleExp() for _ in range(config.num_levels)])
        self.loc_tower = nn.Sequential(*[conv_gn_relu(Unit1D(w, w, 3), w, g) for _ in range(2)])
        self.conf_tower = nn.Sequential(*[conv_gn_relu(Unit1D(w, w, 3), w, g) for _ in range(2)])
        self.loc_head = Unit1D(w, 2, 3)
        self.conf_head = Unit1D(w, nc, 3)
        self.loc_proposal_branch = ProposalBranch(w, g)
        self.conf_proposal_branch = ProposalBranch(w, g)
        self.prop_loc_head = Unit1D(w, 2, 1)
        self.prop_conf_head = Unit1D(w, nc, 1)
        self.center_head = Unit1D(w, 1, 3)
        self.deconv = nn.Sequential(
            Unit1D(w, w, 3), nn.GroupNorm(g, w), nn.ReLU(inplace=True),
            Unit1D(w, w, 3), nn.GroupNorm(g, w), nn.ReLU(inplace=True),
            Unit1D(w, w, 1), nn.GroupNorm(g, w), nn.ReLU(inplace=True),
        )  # fmt: skip
        self._priors: dict[int, torch.Tensor] = {}
        self.apply(glorot_uniform_init)

    # ---- pieces ------------------------------------------------------------------------------------

    @property
    def mixed_5c_only(self) -> bool:
        return self.config.pyramid_taps == "mixed_5c"

    def priors(self, length: int) -> torch.Tensor:
        if length not in self._priors:
            self._priors[length] = level_priors(length)
        return self._priors[length]

    def pyramid(
        self, inputs: Sequence[torch.Tensor], mask: torch.Tensor | None = None
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Pyramid levels and the frame-level feature (B, W, clip_length)."""
        feats: list[torch.Tensor] = []
        if self.config.input_kind == "i3d" and self.mixed_5c_only:
            _, mixed_5c = inputs  # Mixed_4f unused (may be None)
            x = self.pyramids[0](mixed_5c).squeeze(-1).squeeze(-1)
            feats = [x]
            for conv in self.pyramids[1:]:
                x = conv(x)
                feats.append(x)
        elif self.config.input_kind == "i3d":
            mixed_4f, mixed_5c = inputs
            x0 = self.pyramids[0](mixed_4f).squeeze(-1).squeeze(-1)
            x = self.pyramids[1](mixed_5c).squeeze(-1).squeeze(-1)
            x0 = x0 + F.interpolate(x, x0.shape[2:], mode="nearest")
            feats = [x0, x]
            for conv in self.pyramids[2:]:
                x = conv(x)
                feats.append(x)
        else:
            (x,) = inputs
            x = self.pyramids[0](x)
            if mask is not None:
                x = x * mask[:, None, :].to(x.dtype)
            feats.append(x)
            for conv in self.pyramids[1:]:
                x = conv(x)
                if mask is not None:
                    mask = F.max_pool1d(mask[:, None, :].to(x.dtype), 2, 2, ceil_mode=True)[:, 0] > 0
                    x = x * mask[:, None, :].to(x.dtype)
                feats.append(x)
        frame = F.interpolate(feats[0].unsqueeze(-1), [self.frame_num, 1]).squeeze(-1)
        return feats, self.deconv(frame)

    def head(
        self, feats: list[torch.Tensor], frame_level: torch.Tensor, *, return_regions: bool = False
    ) -> dict[str, torch.Tensor]:
        b = feats[0].shape[0]
        nc = self.config.num_outputs
        half = frame_level.shape[1] // 2
        out: dict[str, list[torch.Tensor]] = {k: [] for k in ("loc", "conf", "prop_loc", "prop_conf", "center")}
        extra: dict[str, torch.Tensor] = {}
        for i, feat in enumerate(feats):
            t = feat.shape[2]
            loc_feat = self.loc_tower(feat)
            conf_feat = self.conf_tower(feat)
            loc = self.loc_heads[i](self.loc_head(loc_feat)).view(b, 2, -1).permute(0, 2, 1).contiguous()
            if self.config.loc_strides is not None:  # the ActivityNet head: distances in units of the level stride
                loc = loc * self.config.loc_strides[i]
            out["loc"].append(loc)
            out["conf"].append(self.conf_head(conf_feat).view(b, nc, -1).permute(0, 2, 1).contiguous())
            regions, frame_regions = proposal_regions(loc, self.priors(t), t, self.frame_num)
            if return_regions:
                extra[f"regions_level{i}"] = regions
                extra[f"frame_regions_level{i}"] = frame_regions
            loc_prop, loc_boundary = self.loc_proposal_branch(loc_feat, frame_level, regions, frame_regions)
            conf_prop, conf_boundary = self.conf_proposal_branch(conf_feat, frame_level, regions, frame_regions)
            if i == 0:
                nd = loc_boundary.shape[1] // 2
                extra["start_loc_prop"] = loc_boundary[:, :nd].permute(0, 2, 1).contiguous()
                extra["end_loc_prop"] = loc_boundary[:, nd:].permute(0, 2, 1).contiguous()
                extra["start_conf_prop"] = conf_boundary[:, :nd].permute(0, 2, 1).contiguous()
                extra["end_conf_prop"] = conf_boundary[:, nd:].permute(0, 2, 1).contiguous()
            out["prop_loc"].append(self.prop_loc_head(loc_prop).view(b, 2, -1).permute(0, 2, 1).contiguous())
            out["prop_conf"].append(self.prop_conf_head(conf_prop).view(b, nc, -1).permute(0, 2, 1).contiguous())
            out["center"].append(self.center_head(loc_prop).view(b, 1, -1).permute(0, 2, 1).contiguous())
        result = {k: torch.cat(v, dim=1) for k, v in out.items()}
        result["priors"] = torch.cat([self.priors(f.shape[2]) for f in feats], 0).to(frame_level.device).unsqueeze(0)
        result["start"] = frame_level[:, :half].permute(0, 2, 1).contiguous()
        result["end"] = frame_level[:, half:].permute(0, 2, 1).contiguous()
        result.update(extra)
        return result

    def forward(
        self, *inputs: torch.Tensor, mask: torch.Tensor | None = None, return_regions: bool = False
    ) -> dict[str, torch.Tensor]:
        feats, frame_level = self.pyramid(inputs, mask)
        return self.head(feats, frame_level, return_regions=return_regions)

    def boundary_features(self, *inputs: torch.Tensor, mask: torch.Tensor | None = None) -> list[torch.Tensor]:
        """The official ``ssl=True`` early exit: [frame-level feature, level-0 boundary feature Y of the
        loc branch, of the conf branch] (the inputs of the triplet loss)."""
        feats, frame_level = self.pyramid(inputs, mask)
        feat = feats[0]
        loc_feat = self.loc_tower(feat)
        conf_feat = self.conf_tower(feat)
        return [frame_level, self.loc_proposal_branch.lr_conv(loc_feat), self.conf_proposal_branch.lr_conv(conf_feat)]


def triplet_features(
    boundary_feats: Sequence[torch.Tensor], segments: torch.Tensor, scales: Sequence[float]
) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
    """Anchor / positive / negative per feature map (official ``BDNet.forward(ssl=True)``).

    ``segments`` (B, 3, 2) = (A, B, G) in clip frames; the regions are the frame rule of §2.5 divided
    by each map's scale (1 for the frame-level map, clip_length / level-0 length for the branches).
    anchor = end half pooled at A, positive = start half at B, negative = start half at G.
    """
    regions = frame_boundary_regions(segments)
    anchors, positives, negatives = [], [], []
    for feat, scale in zip(boundary_feats, scales):
        pooled = boundary_max_pool(feat, regions / scale)
        nd = pooled.shape[1] // 2
        anchors.append(pooled[:, nd:, 0])
        positives.append(pooled[:, :nd, 1])
        negatives.append(pooled[:, :nd, 2])
    return anchors, positives, negatives


# --------------------------------------------------------------------------------------------------
# Whole models
# --------------------------------------------------------------------------------------------------


class AFSD(nn.Module):
    """The official ``BDNet`` minus the I3D backbone: ``coarse_pyramid_detection`` on Mixed_4f / Mixed_5c.

    ``backbone`` (optional) maps a clip (B, C, L, H, W) to ``{"Mixed_4f": ..., "Mixed_5c": ...}``; its
    keys live under ``backbone.`` as in the official checkpoints.
    """

    def __init__(self, config: AFSDConfig | None = None, backbone: nn.Module | None = None) -> None:
        super().__init__()
        self.config = config or AFSDConfig()
        if self.config.input_kind != "i3d":
            raise TadkitError("AFSD takes I3D taps; use AFSDFeatures for feature windows", field="model.kwargs.input_kind")
        self.coarse_pyramid_detection = CoarsePyramid(self.config)
        self.backbone = backbone
        # official backbone weights without a backbone module: kept verbatim (keys without "backbone."),
        # written back under "backbone." by state_dict() and taken from load_state_dict(), so a converted
        # checkpoint keeps them (tadkit convert afsd-official -> load_checkpoint_model)
        self.official_backbone_state: dict[str, torch.Tensor] = {}
        self.register_state_dict_post_hook(_save_backbone_state)
        self.register_load_state_dict_pre_hook(_take_backbone_state)

    def forward(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """``batch["mixed_4f"]`` / ``batch["mixed_5c"]`` (I3D taps) or ``batch["clip"]`` (B, C, L, H, W) with
        a backbone returning those taps (the end-to-end model is :class:`~.e2e.AFSDEndToEnd`)."""
        if "mixed_4f" in batch and "mixed_5c" in batch:
            return self.forward_taps(batch["mixed_4f"], batch["mixed_5c"])
        if "clip" in batch:
            return self.forward_clip(batch["clip"])
        raise TadkitError("the I3D-tap AFSD needs batch keys mixed_4f + mixed_5c (or clip with a backbone); "
                          "for feature windows use model.kwargs.input_kind: features", field="batch")

    def forward_taps(
        self, mixed_4f: torch.Tensor | None, mixed_5c: torch.Tensor, *, return_regions: bool = False
    ) -> dict[str, torch.Tensor]:
        """``mixed_4f`` may be None for the Mixed_5c-only (ActivityNet) pyramid."""
        return self.coarse_pyramid_detection(mixed_4f, mixed_5c, return_regions=return_regions)

    def boundary_features_taps(self, mixed_4f: torch.Tensor | None, mixed_5c: torch.Tensor) -> list[torch.Tensor]:
        return self.coarse_pyramid_detection.boundary_features(mixed_4f, mixed_5c)

    def triplet_scales(self, level0_length: int) -> tuple[float, float, float]:
        if self.config.triplet_scales is not None:  # the official ActivityNet code: (1, 4, 4)
            return self.config.triplet_scales  # type: ignore[return-value]
        ratio = self.config.clip_length / level0_length  # official: 256 / 64 = 4
        return (1.0, ratio, ratio)

    def forward_clip(self, clip: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.backbone is None:
            raise TadkitError("this AFSD model has no backbone; pass Mixed_4f / Mixed_5c", field="backbone")
        taps = self.backbone(clip)
        return self.forward_taps(taps["Mixed_4f"], taps["Mixed_5c"])

    def config_dict(self) -> dict[str, Any]:
        return self.config.to_dict()


BACKBONE_KEY = "backbone."


def _save_backbone_state(module: nn.Module, state_dict: dict[str, Any], prefix: str, local_metadata: Any) -> None:
    if module.backbone is None:
        for key, value in module.official_backbone_state.items():
            state_dict[prefix + BACKBONE_KEY + key] = value


def _take_backbone_state(module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    if module.backbone is not None:
        return  # the backbone module loads its own keys
    key_prefix = prefix + BACKBONE_KEY
    for key in [k for k in state_dict if k.startswith(key_prefix)]:
        module.official_backbone_state[key[len(key_prefix):]] = state_dict.pop(key)


def build_afsd_taps(**kwargs: Any) -> AFSD:
    return AFSD(AFSDConfig.from_dict(kwargs))


class AFSDFeatures(nn.Module):
    """Feature-based AFSD (spec §9, after OpenTAD) implementing the tadkit method contract.

    ``batch["features"]`` (B, in_dim, T) windows of T features standing for ``clip_length`` frames
    (official: 64 features of 12 frames at 30 fps = 256 frames at 10 fps); targets in window steps.
    No triplet loss. Module keys: ``coarse_pyramid_detection.*`` as in the official checkpoints.
    """

    def __init__(self, config: AFSDConfig | None = None) -> None:
        super().__init__()
        config = config or AFSDConfig(input_kind="features")
        if config.input_kind != "features":
            raise TadkitError("AFSDFeatures needs input_kind 'features'", field="model.kwargs.input_kind")
        self.config = config
        self.coarse_pyramid_detection = CoarsePyramid(config)

    @staticmethod
    def _mask(batch: Mapping[str, Any], features: torch.Tensor) -> torch.Tensor | None:
        meta = batch.get("meta")
        if not meta:
            return None
        t = features.shape[-1]
        valid = torch.tensor([min(int(m.get("valid_length", t)), t) for m in meta], device=features.device)
        return torch.arange(t, device=features.device)[None, :] < valid[:, None]

    def forward(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        features = batch["features"]
        if features.dim() != 3 or features.shape[1] != self.config.in_dim:
            raise TadkitError(
                f"expected features (B, {self.config.in_dim}, T), got {tuple(features.shape)}", field="features"
            )
        return self.coarse_pyramid_detection(features, mask=self._mask(batch, features))

    def clip_targets(self, batch: Mapping[str, Any], window: int) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Window-step targets -> normalised (s/T, e/T, class 1..C) rows and (B, 2, clip_length) labels."""
        return normalised_targets(batch["targets"], window, self.config.clip_length)

    def loss(self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        window = batch["features"].shape[-1]
        device = outputs["loc"].device
        rows, labels = self.clip_targets(batch, window)
        terms = detection_losses(outputs, [r.to(device) for r in rows], self.config)
        terms.update(boundary_losses(outputs, labels.to(device), self.config.boundary_aux_weight))
        terms["total"] = weighted_total(terms, self.config)
        return terms

    @torch.no_grad()
    def decode(self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any]) -> list[WindowDetections]:
        window = batch["features"].shape[-1]
        return decode_clips(outputs, self.config, window / self.config.clip_length)

    def config_dict(self) -> dict[str, Any]:
        return self.config.to_dict()


def normalised_targets(
    targets: Sequence[Mapping[str, Any]], units: float, clip_length: int
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Per clip, targets with segments in ``units`` per clip (window steps, or frames) -> the loss's
    ``(s / units, e / units, class 1..C)`` rows and the (B, 2, clip_length) boundary labels."""
    frames_per_unit = clip_length / units
    rows, labels = [], []
    for target in targets:
        seg = torch.as_tensor(target["segments"], dtype=torch.float64).reshape(-1, 2).cpu()
        lab = torch.as_tensor(target["labels"], dtype=torch.float64).reshape(-1).cpu() + 1.0
        gts = torch.cat([seg * frames_per_unit, lab[:, None]], 1).numpy()
        rows.append(torch.cat([seg / units, lab[:, None]], 1).float())
        labels.append(boundary_labels(gts, clip_length))
    return rows, torch.stack(labels)


def decode_clips(outputs: Mapping[str, torch.Tensor], config: AFSDConfig, scale: float = 1.0) -> list[WindowDetections]:
    """Per clip of the batch: candidates above ``conf_thresh`` (segments in clip frames x ``scale``,
    0-based classes), before the cross-window NMS."""
    priors = outputs["priors"][0]
    result = []
    for b in range(outputs["loc"].shape[0]):
        segments, scores = decode_window(
            outputs["loc"][b], outputs["conf"][b], outputs["prop_loc"][b], outputs["prop_conf"][b],
            outputs["center"][b], priors, config.clip_length,
        )  # fmt: skip
        seg, sc, cls = window_candidates(segments, scores, config.conf_thresh)
        result.append(WindowDetections(segments=seg * scale, scores=sc, labels=cls - 1))
    return result


def build_afsd(**kwargs: Any) -> AFSDFeatures | AFSD:
    """The registered builder (``model.kwargs`` of a config): the feature variant by default;
    ``input_kind: i3d`` rebuilds the official head on I3D taps (converted official checkpoints)."""
    values = {"input_kind": "features", **kwargs}
    config = AFSDConfig.from_dict(values)
    return AFSD(config) if config.input_kind == "i3d" else AFSDFeatures(config)


__all__ = [
    "AFSD",
    "AFSDConfig",
    "AFSDFeatures",
    "build_afsd",
    "CoarsePyramid",
    "ProposalBranch",
    "ScaleExp",
    "Unit1D",
    "Unit3D",
    "build_afsd_taps",
    "decode_clips",
    "normalised_targets",
    "frame_boundary_regions",
    "glorot_uniform_init",
    "level_priors",
    "proposal_regions",
    "same_padding",
    "triplet_features",
]
