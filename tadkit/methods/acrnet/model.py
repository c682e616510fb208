"""ACRNet: weakly supervised TAL with adaptive clustering and refining (Ren et al., ICME 2023).

Spec ``methods/acrnet.md`` (official code leftthomas/ACRNet @ 5718240, ``model.py``), top to bottom:
config, MCA, BWA, the model (forward / loss / decode), losses.

Shapes: input features x (B, 2D, T) channel-first, RGB half first (D = 1024 per modality); C classes.
Outputs keep the official layouts: ``seg_score`` / ``seg_mask`` / ``cas`` (B, T, C), ``aas_*`` (B, T, 1),
``act_score`` / ``bkg_score`` (B, C); ``decode`` turns them into (C, T) :class:`ClassActivation`.

Module and parameter names are the official ones (``mca.rgb_proj``, ``rgb_bwa.attn.0.weight``,
``cas_rgb_encoder.2.bias``...), so the authors' checkpoints load with ``strict=True``
(:mod:`tadkit.methods.acrnet.official`), and modules are built in the official order, so
``torch.manual_seed(s); build_acrnet(...)`` draws the same initial weights as ``Model(C)``.

Deviations from the official code and options (each also in docs/acrnet.md):

1. ``mca_merge``: the official MCA merges its H heads with ``e.mT.reshape(N, T, -1)`` on the
   (N, H, T, d) head outputs: it swaps time and channels, then re-reads the memory row-major as
   (T, H*d), so output row t mixes channels and time steps of one head (not a head concatenation;
   for T != d the "time" axis of the result is not the input's). ``"official"`` (default) reproduces
   it exactly -- it is what produced the published numbers and what the authors' checkpoints were
   trained with. ``"concat"`` is the standard multi-head merge ``e.transpose(1, 2).reshape(N, T, H*d)``
   (row t = the H head outputs of time step t); use it to train new models. Official checkpoints
   keep working under ``"concat"`` shape-wise but their weights were fitted to the scrambled merge.
2. ``avg_pool``: the official code appends ``AvgPool1d(13, 1, 6)`` (padding counted) to the four
   heads iff ``num_classes != 20`` (its way of saying "ActivityNet"). Here it is an explicit field
   whose default (None) follows that rule, so a 20-class non-THUMOS dataset can choose.
3. Clustering / refining are vectorised over videos and classes (:mod:`.clustering`) and give the
   official masks bit for bit on float32 (checked against loop ports of the official functions).
4. Batches must have every video at the same length (the official loader stacks fixed-length
   samples; at test it uses batch 1): samples whose ``valid_length`` is shorter than the batch
   are rejected with a clear error instead of letting zero padding into the clustering.
5. The GCE pseudo-labels are built with one masked sum instead of a Python loop over videos.
6. ``loss`` also reports its terms (``cas``, ``aas_rgb``, ``aas_flow``); ``total`` is the official loss.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping

import torch
from torch import nn
from torch.nn import functional as F

from tadkit.models.losses import generalized_cross_entropy
from tadkit.errors import TadkitError, reject_unknown_fields
from tadkit.methods.base import ClassActivation
from tadkit.methods.acrnet.clustering import mask_refining, rank_weighted_scores, sort_scores, temporal_clustering

MCA_MERGES = ("official", "concat")


# --------------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------------


@dataclass
class ACRNetConfig:
    """ACRNet hyper-parameters; defaults are the official THUMOS14 ones."""

    in_dim: int = 2048  # RGB (D) + flow (D), RGB first; D = in_dim // 2 = 1024 officially
    num_classes: int = 20
    num_heads: int = 4  # MCA heads
    aas_hidden: int = 512  # hidden width of the actionness heads
    avg_pool: bool | None = None  # AvgPool1d(13, 1, 6) after every head; None -> num_classes != 20 (official rule)
    avg_pool_kernel: int = 13  # odd; padding kernel // 2, stride 1, padding counted in the average
    mca_merge: str = "official"  # "official" (the code's reshape, deviation 1) or "concat" (standard)
    dropout: float = 0.5  # BWA dropouts
    negative_slope: float = 0.2  # BWA LeakyReLU
    loss_lambda: float = 0.1  # weight of the two GCE terms (lamda)
    gce_q: float = 0.7
    eps: float = 1e-8

    def __post_init__(self) -> None:
        for name in ("in_dim", "num_classes", "num_heads", "aas_hidden", "avg_pool_kernel"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise TadkitError(f"must be a positive integer, got {value!r}", field=f"model.kwargs.{name}")
        if self.in_dim % 2:
            raise TadkitError(f"in_dim is RGB + flow and must be even, got {self.in_dim}", field="model.kwargs.in_dim")
        if self.feat_dim % self.num_heads:
            raise TadkitError(f"per-modality width {self.feat_dim} is not divisible by num_heads={self.num_heads}",
                              field="model.kwargs.num_heads")
        if self.avg_pool_kernel % 2 == 0:
            raise TadkitError(f"must be odd, got {self.avg_pool_kernel}", field="model.kwargs.avg_pool_kernel")
        if self.avg_pool is None:
            self.avg_pool = self.num_classes != 20
        if not isinstance(self.avg_pool, bool):
            raise TadkitError(f"must be true, false or null, got {self.avg_pool!r}", field="model.kwargs.avg_pool")
        if self.mca_merge not in MCA_MERGES:
            raise TadkitError(f"must be one of {MCA_MERGES}, got {self.mca_merge!r}", field="model.kwargs.mca_merge")
        for name in ("dropout", "negative_slope", "loss_lambda", "gce_q", "eps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise TadkitError(f"must be a finite number, got {value!r}", field=f"model.kwargs.{name}")
        if not 0 <= self.dropout < 1:
            raise TadkitError(f"must be in [0, 1), got {self.dropout}", field="model.kwargs.dropout")
        if self.gce_q <= 0:
            raise TadkitError(f"must be > 0, got {self.gce_q}", field="model.kwargs.gce_q")

    @property
    def feat_dim(self) -> int:
        return self.in_dim // 2

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> "ACRNetConfig":
        reject_unknown_fields(cls, kwargs, "ACRNet option(s)", field="model.kwargs")
        return cls(**kwargs)


# --------------------------------------------------------------------------------------------------
# Modules
# --------------------------------------------------------------------------------------------------


def _official_init(module: nn.Module) -> None:
    """The official ``weights_init``: Kaiming-uniform conv / linear weights, zero biases."""
    if isinstance(module, (nn.Conv1d, nn.Linear)):
        nn.init.kaiming_uniform_(module.weight)
        if module.bias is not None:
            module.bias.data.fill_(0)


class MCA(nn.Module):
    """Multi-head cross-modal attention (spec §2.1). Inputs and outputs (N, D, T)."""

    def __init__(self, feat_dim: int, num_heads: int = 4, merge: str = "official") -> None:
        super().__init__()
        head = feat_dim // num_heads
        self.rgb_proj = nn.Parameter(torch.empty(num_heads, feat_dim, head))
        self.flow_proj = nn.Parameter(torch.empty(num_heads, feat_dim, head))
        self.atte = nn.Parameter(torch.empty(num_heads, head, head))
        nn.init.uniform_(self.rgb_proj, -math.sqrt(feat_dim), math.sqrt(feat_dim))
        nn.init.uniform_(self.flow_proj, -math.sqrt(feat_dim), math.sqrt(feat_dim))
        nn.init.uniform_(self.atte, -math.sqrt(head), math.sqrt(head))
        self.num_heads = num_heads
        self.merge = merge

    def _merge(self, e: torch.Tensor) -> torch.Tensor:
        n, h, t, d = e.shape
        if self.merge == "official":
            return e.mT.reshape(n, t, h * d)  # deviation 1: the official (scrambling) merge
        return e.transpose(1, 2).reshape(n, t, h * d)

    def forward(self, rgb: torch.Tensor, flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rgb, flow = rgb.mT, flow.mT  # (N, T, D)
        p_rgb = F.normalize(torch.matmul(rgb.unsqueeze(1), self.rgb_proj), dim=-1)  # (N, H, T, d)
        p_flow = F.normalize(torch.matmul(flow.unsqueeze(1), self.flow_proj), dim=-1)
        scores = torch.matmul(torch.matmul(p_rgb, self.atte), p_flow.mT)  # (N, H, T, T)
        e_rgb = F.gelu(torch.matmul(torch.softmax(scores, dim=-1), p_rgb))
        e_flow = F.gelu(torch.matmul(torch.softmax(scores.mT, dim=-1), p_flow))
        out_rgb = torch.tanh(self._merge(e_rgb) + rgb)
        out_flow = torch.tanh(self._merge(e_flow) + flow)
        return out_rgb.mT, out_flow.mT


class BWA(nn.Module):
    """Filter module (spec §2.2): sigmoid(temporal gate(ref) * channel gate(mean_t base)) * base."""

    def __init__(self, feat_dim: int, negative_slope: float = 0.2, dropout: float = 0.5) -> None:
        super().__init__()
        self.attn = nn.Sequential(nn.Conv1d(feat_dim, feat_dim, 3, padding=1), nn.LeakyReLU(negative_slope),
                                  nn.Dropout(dropout))
        self.conv = nn.Sequential(nn.Conv1d(feat_dim, feat_dim, 3, padding=1), nn.LeakyReLU(negative_slope),
                                  nn.Dropout(dropout))
        self.avg = nn.AdaptiveAvgPool1d(1)

    def forward(self, base: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        channel = self.conv(self.avg(base))
        temporal = self.attn(ref)
        return torch.sigmoid(temporal * channel) * base


# --------------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------------


class ACRNet(nn.Module):
    """The ACRNet model with the tadkit method contract (forward / loss / decode / config_dict)."""

    def __init__(self, config: ACRNetConfig | None = None) -> None:
        super().__init__()
        cfg = config or ACRNetConfig()
        self.config = cfg
        d, c = cfg.feat_dim, cfg.num_classes
        # Same construction order as the official Model: same RNG draws for the same seed.
        self.mca = MCA(d, cfg.num_heads, cfg.mca_merge)
        self.rgb_bwa = BWA(d, cfg.negative_slope, cfg.dropout)
        self.flow_bwa = BWA(d, cfg.negative_slope, cfg.dropout)
        self.cas_rgb_encoder = nn.Sequential(nn.Conv1d(d, d, 3, padding=1), nn.ReLU(), nn.Conv1d(d, c, 1))
        self.cas_flow_encoder = nn.Sequential(nn.Conv1d(d, d, 3, padding=1), nn.ReLU(), nn.Conv1d(d, c, 1))
        self.aas_rgb_encoder = nn.Sequential(nn.Conv1d(d, cfg.aas_hidden, 1), nn.ReLU(), nn.Conv1d(cfg.aas_hidden, 1, 1))
        self.aas_flow_encoder = nn.Sequential(nn.Conv1d(d, cfg.aas_hidden, 1), nn.ReLU(),
                                              nn.Conv1d(cfg.aas_hidden, 1, 1))
        if cfg.avg_pool:
            k = cfg.avg_pool_kernel
            for encoder in (self.cas_rgb_encoder, self.cas_flow_encoder, self.aas_rgb_encoder, self.aas_flow_encoder):
                encoder.append(nn.AvgPool1d(k, 1, padding=k // 2, count_include_pad=True))
        self.apply(_official_init)

    # ---- contract --------------------------------------------------------------------------------

    def config_dict(self) -> dict[str, Any]:
        return asdict(self.config)

    def forward(self, batch: Mapping[str, Any] | torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, 2D, T) features -> ``act_score``, ``bkg_score`` (B, C); ``seg_score``, ``seg_mask`` (refined),
        ``cluster_mask``, ``cas`` (B, T, C); ``aas_rgb``, ``aas_flow`` (B, T, 1); ``mca_rgb``, ``mca_flow`` (B, D, T)."""
        x = self._features(batch)
        d = self.config.feat_dim
        rgb, flow = self.mca(x[:, :d, :], x[:, d:, :])
        mca_rgb, mca_flow = rgb, flow
        rgb, flow = self.rgb_bwa(rgb, flow), self.flow_bwa(flow, rgb)
        cas = self.cas_rgb_encoder(rgb).mT + self.cas_flow_encoder(flow).mT  # (B, T, C) raw
        aas_rgb = torch.sigmoid(self.aas_rgb_encoder(rgb).mT)
        aas_flow = torch.sigmoid(self.aas_flow_encoder(flow).mT)
        seg_score = (torch.softmax(cas, dim=-1) + (aas_rgb + aas_flow) / 2) / 2
        sorted_rows = sort_scores(seg_score.detach())
        cluster_mask = temporal_clustering(seg_score.detach(), sorted_rows)
        seg_mask = mask_refining(seg_score.detach(), cluster_mask, cas.detach(), sorted_rows)
        act_score, bkg_score = rank_weighted_scores(seg_score, seg_mask, cas, sorted_rows)
        return {"act_score": act_score, "bkg_score": bkg_score, "seg_score": seg_score, "seg_mask": seg_mask,
                "aas_rgb": aas_rgb, "aas_flow": aas_flow, "cas": cas, "cluster_mask": cluster_mask,
                "mca_rgb": mca_rgb, "mca_flow": mca_flow}

    def loss(self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """``cas`` (cross-entropy with background term), ``aas_rgb`` / ``aas_flow`` (GCE) and ``total``."""
        labels = batch.get("video_labels") if isinstance(batch, Mapping) else None
        if labels is None:
            raise TadkitError("ACRNet training needs video-level labels (batch['video_labels'])", field="video_labels")
        labels = torch.as_tensor(labels).to(outputs["act_score"])
        if labels.shape != outputs["act_score"].shape:
            raise TadkitError(f"expected video labels {tuple(outputs['act_score'].shape)}, got {tuple(labels.shape)}",
                              field="video_labels")
        return acrnet_losses(outputs, labels, self.config)

    def decode(self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any]) -> list[ClassActivation]:
        """Per sample: ``cas`` = segment score s (C, T) (what localize thresholds), ``video_scores`` =
        act_score (C,); extras ``raw_cas`` (C, T) and ``actionness`` (T,) = (a_rgb + a_flow) / 2."""
        seg = outputs["seg_score"].detach()
        act = outputs["act_score"].detach()
        raw = outputs["cas"].detach()
        actionness = ((outputs["aas_rgb"] + outputs["aas_flow"]) / 2).detach()[..., 0]
        meta = batch.get("meta") if isinstance(batch, Mapping) else None
        result = []
        for b in range(seg.shape[0]):
            length = seg.shape[1]
            if meta is not None and b < len(meta) and meta[b].get("valid_length") is not None:
                length = min(length, int(meta[b]["valid_length"]))
            result.append(ClassActivation(cas=seg[b, :length].T, video_scores=act[b],
                                          extras={"raw_cas": raw[b, :length].T, "actionness": actionness[b, :length]}))
        return result

    # ---- helpers ---------------------------------------------------------------------------------

    def _features(self, batch: Any) -> torch.Tensor:
        features = batch["features"] if isinstance(batch, Mapping) else batch
        if not isinstance(features, torch.Tensor) or features.dim() != 3 or features.shape[1] != self.config.in_dim:
            shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
            raise TadkitError(f"expected features (B, {self.config.in_dim}, T), got {shape}", field="features")
        if features.shape[2] < 1:
            raise TadkitError("needs at least one time step", field="features")
        if isinstance(batch, Mapping):
            for m in batch.get("meta") or []:
                valid = m.get("valid_length")
                if valid is not None and int(valid) != features.shape[2]:
                    raise TadkitError(
                        f"ACRNet needs every video of a batch at the same length; this one has {valid} of "
                        f"{features.shape[2]} steps (train with fixed-length sampling, test with batch 1)",
                        video=str(m.get("video_id")), field="valid_length")
        return features


# --------------------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------------------


def cas_loss(act_score: torch.Tensor, bkg_score: torch.Tensor, labels: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Official ``cross_entropy``: multi-label CE on act (normalised by #labels) + mean -log(1 - bkg)."""
    num = torch.clamp_min(labels.sum(dim=-1), 1.0)
    act = (-(labels * torch.log(torch.clamp_min(act_score, eps))).sum(dim=-1) / num).mean()
    bkg = (-torch.log(torch.clamp_min(1.0 - bkg_score, eps))).mean()
    return act + bkg


def actionness_pseudo_labels(seg_mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """g (B, T) = min(1, sum of the refined mask over the video's labelled classes)."""
    return torch.clamp_max((seg_mask * labels.unsqueeze(1).to(seg_mask.dtype)).sum(dim=-1), 1.0)


def acrnet_losses(outputs: Mapping[str, torch.Tensor], labels: torch.Tensor,
                  config: ACRNetConfig) -> dict[str, torch.Tensor]:
    loss_cas = cas_loss(outputs["act_score"], outputs["bkg_score"], labels, config.eps)
    pseudo = actionness_pseudo_labels(outputs["seg_mask"], labels)
    loss_rgb = generalized_cross_entropy(outputs["aas_rgb"], pseudo, config.gce_q, config.eps)
    loss_flow = generalized_cross_entropy(outputs["aas_flow"], pseudo, config.gce_q, config.eps)
    total = loss_cas + config.loss_lambda * (loss_rgb + loss_flow)
    return {"cas": loss_cas, "aas_rgb": loss_rgb, "aas_flow": loss_flow, "total": total}


def build_acrnet(**kwargs: Any) -> ACRNet:
    """``model.kwargs`` of a config -> :class:`ACRNet` (keys of :class:`ACRNetConfig`)."""
    return ACRNet(ACRNetConfig.from_kwargs(**kwargs))


__all__ = ["ACRNet", "ACRNetConfig", "BWA", "MCA", "MCA_MERGES", "acrnet_losses", "actionness_pseudo_labels",
           "build_acrnet", "cas_loss"]
