"""End-to-end AFSD: the I3D backbone and the AFSD head trained together from decoded frames (the official
THUMOS14 recipe, spec ``methods/afsd.md`` §1-§6; method ``afsd_e2e``, data kind ``frames``).

Input: ``batch["clip"]`` (B, C, L, crop, crop) in [-1, 1] (:class:`tadkit.data.frames.FrameClipDataset`);
the backbone is tadkit's InceptionV1-I3D tapped at Mixed_4f and Mixed_5c, BatchNorm frozen (eval mode,
offsets not trained), as the official ``I3D_BackBone``. Targets are in clip frames; detections are in
clip frames and become seconds through ``meta`` (``t0 = offset / fps``, ``step = 1 / fps``).

Deviations from the official code (besides those of :mod:`tadkit.methods.afsd.model`):

1. The backbone is tadkit's I3D. By default it is the DeepMind layout (batch norm with offset and no
   scale) with the Kinetics-400 weights of ``tadkit weights i3d``; the official code loads pytorch-i3d's
   ``rgb_imagenet.pt`` (the same DeepMind Kinetics weights, converted), which ``backbone_layout:
   pytorch_i3d`` + ``backbone_weights: rgb_imagenet.pt`` reproduce. ``tadkit convert afsd-official`` of an
   end-to-end checkpoint (``backbone._model.*``) gives this model with the authors' backbone mapped into a
   ``pytorch_i3d``-layout I3D (:func:`tadkit.methods.afsd.official.from_official_state_dict`).
2. ``backbone_width`` (default 1.0 = the real I3D) scales every backbone channel count; below 1 the
   backbone starts from random weights (CPU-sized training on synthetic video, not a paper setting).
3. The contrastive clips of a batch go through the network together (official: one by one); frozen
   batch norm and GroupNorm make that the same computation.
4. Random crops, flips and the contrastive augmentation draw from torch's RNG, not Python's ``random``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Mapping

import torch
from torch import nn

from tadkit.errors import TadkitError
from tadkit.methods.afsd.losses import boundary_losses, detection_losses, triplet_loss, weighted_total
from tadkit.methods.afsd.model import AFSD, AFSDConfig, decode_clips, normalised_targets, triplet_features
from tadkit.models.base import WindowDetections

TAPS = ("Mixed_4f", "Mixed_5c")
WEIGHTS_KINETICS = "kinetics400"


@dataclass
class BackboneConfig:
    """The I3D under the head (``model.kwargs`` keys with these names)."""

    in_channels: int = 3  # 3 RGB, 2 flow
    crop_size: int = 96  # spatial size of the clips (official random / centre 96 crop of 112)
    backbone_width: float = 1.0  # channel multiplier of the I3D (1.0 = real I3D)
    backbone_weights: str | None = WEIGHTS_KINETICS  # "kinetics400" (tadkit weights i3d), a file, or null
    freeze_bn: bool = True  # official: every BatchNorm3d in eval mode, affine not trained
    # "deepmind" (tadkit weights i3d) or "pytorch_i3d" (the official AFSD backbone, rgb_imagenet.pt): affine BN
    backbone_layout: str = "deepmind"

    def __post_init__(self) -> None:
        from tadkit.video.i3d import LAYOUTS

        checks = {
            "backbone_layout": self.backbone_layout in LAYOUTS,
            "in_channels": self.in_channels in (2, 3),
            "crop_size": self.crop_size >= 16,
            "backbone_width": 0.0 < self.backbone_width <= 1.0,
        }
        for name, ok in checks.items():
            if not ok:
                raise TadkitError(f"invalid value {getattr(self, name)!r}", field=f"model.kwargs.{name}")
        if self.backbone_weights is not None and self.backbone_width != 1.0:
            raise TadkitError("pretrained I3D weights need backbone_width 1.0; set backbone_weights: null to train "
                              "a narrower backbone from scratch", field="model.kwargs.backbone_weights")


def split_kwargs(kwargs: Mapping[str, Any]) -> tuple[BackboneConfig, dict[str, Any]]:
    names = {f.name for f in fields(BackboneConfig)}
    backbone = BackboneConfig(**{k: v for k, v in kwargs.items() if k in names})
    return backbone, {k: v for k, v in kwargs.items() if k not in names}


def tap_spatial_sizes(crop: int) -> tuple[int, int]:
    """Spatial size of Mixed_4f / Mixed_5c for a ``crop`` input: four / five SAME stride-2 stages
    (official 96 -> 6, 3); these are the kernels of the head's spatial 'valid' convs."""
    size, sizes = crop, []
    for stage in range(5):
        size = math.ceil(size / 2)
        if stage >= 3:
            sizes.append(size)
    return sizes[0], sizes[1]


def freeze_batch_norm(module: nn.Module) -> None:
    """Every batch norm of ``module`` in eval mode with its parameters frozen (running stats kept)."""
    from tadkit.video.i3d import BatchNormOffset

    for sub in module.modules():
        if isinstance(sub, (nn.modules.batchnorm._BatchNorm, BatchNormOffset)):
            sub.eval()
            for param in sub.parameters(recurse=False):
                param.requires_grad_(False)


def build_backbone(config: BackboneConfig) -> nn.Module:
    """tadkit's I3D without its Kinetics head, ``backbone_width`` x every channel count (random weights)."""
    from tadkit.video.i3d import I3D, I3DConfig

    return I3D(I3DConfig(in_channels=config.in_channels, num_classes=0, width_multiplier=config.backbone_width,
                         layout=config.backbone_layout))


class AFSDEndToEnd(AFSD):
    """AFSD with its I3D backbone, implementing the tadkit method contract on frame clips."""

    method_name = "afsd_e2e"  # what `tadkit convert afsd-official` records for an end-to-end checkpoint

    def __init__(self, config: AFSDConfig, backbone_config: BackboneConfig, backbone: nn.Module | None = None) -> None:
        super().__init__(config, backbone=backbone if backbone is not None else build_backbone(backbone_config))
        self.backbone_config = backbone_config
        if backbone_config.freeze_bn:
            freeze_batch_norm(self.backbone)

    def train(self, mode: bool = True) -> "AFSDEndToEnd":
        super().train(mode)
        if mode and self.backbone_config.freeze_bn:
            freeze_batch_norm(self.backbone)
        return self

    def init_pretrained(self) -> None:
        """Load the backbone's pretrained weights (called when training starts, not for checkpoints)."""
        source = self.backbone_config.backbone_weights
        if source is None:
            return
        from tadkit.video.weights import load_i3d

        stream = "rgb" if self.backbone_config.in_channels == 3 else "flow"
        pretrained = load_i3d(None if source == WEIGHTS_KINETICS else source, stream=stream, fuse=False)
        if pretrained.config.layout != self.backbone_config.backbone_layout:
            raise TadkitError(f"the weights are in the {pretrained.config.layout} layout; set "
                              f"model.kwargs.backbone_layout: {pretrained.config.layout}", file=str(source),
                              field="model.kwargs.backbone_layout")
        state = {k: v for k, v in pretrained.state_dict().items() if not k.startswith("Logits.")}
        self.backbone.load_state_dict(state)
        if self.backbone_config.freeze_bn:
            freeze_batch_norm(self.backbone)

    # ---- forward -------------------------------------------------------------------------------------

    def taps(self, clip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if clip.dim() != 5 or clip.shape[1] != self.backbone_config.in_channels or clip.shape[2] != self.config.clip_length:
            raise TadkitError(f"expected clips (B, {self.backbone_config.in_channels}, {self.config.clip_length}, H, W), "
                              f"got {tuple(clip.shape)}", field="clip")
        taps = self.backbone.taps(clip, TAPS)
        return taps["Mixed_4f"], taps["Mixed_5c"]

    def forward_clip(self, clip: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.forward_taps(*self.taps(clip))

    def forward(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        return self.forward_clip(batch["clip"])

    # ---- training ------------------------------------------------------------------------------------

    def clip_targets(self, batch: Mapping[str, Any]) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Clip-frame targets -> (s/L, e/L, class 1..C) rows and (B, 2, L) boundary labels."""
        return normalised_targets(batch["targets"], self.config.clip_length, self.config.clip_length)

    def contrastive_loss(self, batch: Mapping[str, Any]) -> torch.Tensor | None:
        """Triplet loss on the augmented clips of the batch (None when none was augmented)."""
        if "ssl_clip" not in batch or self.config.ssl_weight <= 0:
            return None
        feats = self.boundary_features_taps(*self.taps(batch["ssl_clip"]))
        scales = self.triplet_scales(feats[1].shape[-1])
        anchors, positives, negatives = triplet_features(feats, batch["ssl_segments"].to(feats[0]), scales)
        return triplet_loss(anchors, positives, negatives, self.config.triplet_weights, self.config.triplet_margin)

    def loss(self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        device = outputs["loc"].device
        rows, labels = self.clip_targets(batch)
        terms = detection_losses(outputs, [r.to(device) for r in rows], self.config)
        terms.update(boundary_losses(outputs, labels.to(device), self.config.boundary_aux_weight))
        triplet = self.contrastive_loss(batch)
        if triplet is not None:
            terms["triplet"] = triplet
        terms["total"] = weighted_total(terms, self.config)
        return terms

    # ---- inference -----------------------------------------------------------------------------------

    @torch.no_grad()
    def decode(self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any]) -> list[WindowDetections]:
        """Per clip: candidates above ``conf_thresh`` in clip frames (meta ``step`` = seconds per frame)."""
        return decode_clips(outputs, self.config)

    def config_dict(self) -> dict[str, Any]:
        values = self.config.to_dict()
        values.pop("input_kind", None)
        for key in ("backbone_channels", "spatial_kernels", "in_dim"):  # derived (or unused) here
            values.pop(key, None)
        values.update({f.name: getattr(self.backbone_config, f.name) for f in fields(BackboneConfig)})
        return values


def build_afsd_e2e(**kwargs: Any) -> AFSDEndToEnd:
    """The ``afsd_e2e`` builder: ``model.kwargs`` = AFSD head options + :class:`BackboneConfig` keys.
    Backbone tap channels and the head's spatial kernels follow from the backbone width and crop size."""
    backbone_config, head = split_kwargs(kwargs)
    for key in ("input_kind", "backbone_channels", "spatial_kernels", "in_dim"):
        if key in head:
            raise TadkitError(f"{key} is derived for the end-to-end model; remove it", field=f"model.kwargs.{key}")
    backbone = build_backbone(backbone_config)
    config = AFSDConfig.from_dict({**head, "input_kind": "i3d",
                                   "backbone_channels": tuple(backbone.out_channels[tap] for tap in TAPS),
                                   "spatial_kernels": tap_spatial_sizes(backbone_config.crop_size)})
    return AFSDEndToEnd(config, backbone_config, backbone)


__all__ = ["AFSDEndToEnd", "BackboneConfig", "build_afsd_e2e", "build_backbone", "freeze_batch_norm", "split_kwargs", "tap_spatial_sizes"]
