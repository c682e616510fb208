"""ECM model and losses (spec ``methods/ecm.md`` §2-§3; official ``lib/models/network.py``, ``lib/criterion/loss.py``).

Shapes: x (B, D, T) channel-first input features, C classes, H hidden width, G interleaved groups.

* base module f: Conv1d D->H k3 p1, LeakyReLU, Conv1d H->H k3 p1, LeakyReLU, Dropout;
* classifier W: Conv1d H->C k1, no bias (shared by every stream);
* weight transition: Conv1d C->C k1 + sigmoid on the raw CAS -> class-specific temporal weights A;
* pre-classification: CAS S = W(f(x)), s_pre = mean of the top-k of S over time;
* post-classification: per class c and group g, a_{c,g} = sum_{t in g} A[c,t] x[:, t]; the (D, G)
  sequence of each class goes through the same f and row c of W; s_post = mean over the G groups;
* background-suppressed stream (training only): for every GT class c of a video, x * (1 - A[c]) is
  aggregated with all classes' weights and post-classified -> q^(c); q̄ = mean over GT classes with
  q̄[c] = q^(c)[c]; score_agg = softmax over the 2C vector [s_post, q̄].

Module names are the official ones (``base_module``, ``classifier_module``, ``attention_module``), so
the authors' checkpoints load with ``strict=True`` (:mod:`tadkit.methods.ecm.official`).

Deviations from the official code (each also in docs/ecm.md):

1. Top-k size: ``k = int(T * topk_ratio)`` from the actual input length T (clamped to 1..T); the
   official code fixes k from the config's ``NUM_SNIPPETS``. Identical whenever T = NUM_SNIPPETS,
   which the official data always satisfies (every video is pre-resampled to T); ``topk_k`` fixes k
   as the official code does.
2. The background-suppressed stream runs once for all (video, GT class) pairs of the batch (one
   batched aggregation and one base-module call) instead of a Python loop over videos and classes;
   the post-classification uses an einsum with the classifier rows instead of a grouped conv. Same
   values up to float rounding (golden fixture: <= 1e-6).
3. The test branch computes only the pre-classification stream (CAS + softmax video scores); the
   official test forward also computes s_post and discards it.
4. A training video without any positive label makes the official code crash (``torch.cat`` of an
   empty list); here it is a :class:`TadkitError` naming the video. Video labels must be 0/1.
5. All videos of a batch must have the same T (the official loader stacks fixed-length videos);
   samples whose ``valid_length`` is shorter than the batch are rejected with a clear error instead
   of letting the zero padding enter the top-k and the aggregation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

import torch
from torch import nn
from torch.nn import functional as F

from tadkit.errors import TadkitError, reject_unknown_fields
from tadkit.methods.base import ClassActivation

# Per-dataset official settings (spec §3, §4): top-k ratio and the aggregation-loss weight.
ECM_PRESETS: dict[str, dict[str, float]] = {
    "thumos14": {"topk_ratio": 0.125, "loss_agg_coef": 5.0},
    "anet12": {"topk_ratio": 0.25, "loss_agg_coef": 1.0},
    "anet13": {"topk_ratio": 0.6, "loss_agg_coef": 1.0},
}


@dataclass
class ECMConfig:
    """ECM hyper-parameters; defaults are the official THUMOS14 ones (``experiments/THUMOS14.yaml``)."""

    in_dim: int = 2048  # I3D RGB 1024 + flow 1024 (RGB first)
    hidden_dim: int = 2048  # width of the base module (a literal 2048 in the official code)
    num_classes: int = 20
    groups: int = 3  # interleaved temporal groups of the post-classification stream
    topk_ratio: float = 0.125  # k = int(T * ratio): THUMOS 0.125, ANet1.2 0.25, ANet1.3 0.6
    topk_k: int | None = None  # fixed k (the official int(NUM_SNIPPETS * ratio)); None = from the input T
    dropout: float = 0.5  # CASMODULE_DROPOUT
    negative_slope: float = 0.01  # nn.LeakyReLU() default
    loss_pre_coef: float = 1.0  # LOSS_CAS_COEF
    loss_post_coef: float = 1.0  # LOSS_CAM_COEF
    loss_cc_coef: float = 0.05  # LOSS_CONSISTENCY_COEF (MSE between s_pre and s_post logits)
    loss_agg_coef: float = 5.0  # C_LOSS_CAM_FG_INV: THUMOS 5, ANet1.2 / 1.3 1

    def __post_init__(self) -> None:
        for name in ("in_dim", "hidden_dim", "num_classes", "groups"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise TadkitError(f"must be a positive integer, got {value!r}", field=f"model.kwargs.{name}")
        if self.topk_k is not None and (isinstance(self.topk_k, bool) or not isinstance(self.topk_k, int)
                                        or self.topk_k < 1):
            raise TadkitError(f"must be a positive integer or null, got {self.topk_k!r}", field="model.kwargs.topk_k")
        if not 0 < float(self.topk_ratio) <= 1:
            raise TadkitError(f"must be in (0, 1], got {self.topk_ratio!r}", field="model.kwargs.topk_ratio")
        if not 0 <= float(self.dropout) < 1:
            raise TadkitError(f"must be in [0, 1), got {self.dropout!r}", field="model.kwargs.dropout")
        for name in ("loss_pre_coef", "loss_post_coef", "loss_cc_coef", "loss_agg_coef"):
            if float(getattr(self, name)) < 0:
                raise TadkitError(f"must be >= 0, got {getattr(self, name)!r}", field=f"model.kwargs.{name}")

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> "ECMConfig":
        """``preset: thumos14|anet12|anet13`` sets topk_ratio / loss_agg_coef; other keys override."""
        preset = kwargs.pop("preset", None)
        values: dict[str, Any] = {}
        if preset is not None:
            if preset not in ECM_PRESETS:
                raise TadkitError(f"unknown ECM preset {preset!r}; choose one of {sorted(ECM_PRESETS)}",
                                  field="model.kwargs.preset")
            values.update(ECM_PRESETS[preset])
        reject_unknown_fields(cls, kwargs, "ECM option(s)", field="model.kwargs", known="declared")
        values.update(kwargs)
        return cls(**values)


class BaseModule(nn.Module):
    """f(·): two k3 convs with LeakyReLU, then dropout (shared by every stream)."""

    def __init__(self, in_dim: int, hidden_dim: int, dropout: float, negative_slope: float) -> None:
        super().__init__()
        self.conv_1 = nn.Conv1d(in_dim, hidden_dim, kernel_size=3, stride=1, padding=1)
        self.conv_2 = nn.Conv1d(hidden_dim, hidden_dim, kernel_size=3, stride=1, padding=1)
        self.negative_slope = negative_slope
        self.drop_out = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.leaky_relu(self.conv_1(x), self.negative_slope)
        out = F.leaky_relu(self.conv_2(out), self.negative_slope)
        return self.drop_out(out)


class ClassifierModule(nn.Module):
    """W: 1x1 conv H -> C without bias."""

    def __init__(self, hidden_dim: int, num_classes: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(hidden_dim, num_classes, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class AttentionModule(nn.Module):
    """Weight transition: 1x1 conv C -> C (with bias) + sigmoid."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.conv_1 = nn.Conv1d(num_classes, num_classes, kernel_size=1)

    def forward(self, cas: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.conv_1(cas))


class ECM(nn.Module):
    """ECMNet with the tadkit method contract (forward / loss / decode / config_dict)."""

    def __init__(self, config: ECMConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else ECMConfig()
        cfg = self.config
        self.base_module = BaseModule(cfg.in_dim, cfg.hidden_dim, cfg.dropout, cfg.negative_slope)
        self.classifier_module = ClassifierModule(cfg.hidden_dim, cfg.num_classes)
        self.attention_module = AttentionModule(cfg.num_classes)

    # ---- contract --------------------------------------------------------------------------------

    def config_dict(self) -> dict[str, Any]:
        return asdict(self.config)

    def forward(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Training (``self.training``): ``score_pre``, ``score_post`` (B, C) logits, ``score_agg``
        (B, 2C) softmax, ``cas`` (B, C, T); needs ``batch["video_labels"]``. Evaluation: ``cas``
        (B, C, T) raw CAS, ``score_pre`` (B, C) logits, ``video_scores`` (B, C) softmax of score_pre."""
        features = self._features(batch)
        if self.training:
            labels = batch.get("video_labels") if isinstance(batch, Mapping) else None
            if labels is None:
                raise TadkitError("ECM training needs video-level labels (batch['video_labels'])",
                                  field="video_labels")
            return self.forward_train(features, labels, self._video_ids(batch))
        return self.forward_eval(features)

    def loss(self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """The four official losses and their weighted sum ``total`` (spec §3)."""
        missing = [k for k in ("score_pre", "score_post", "score_agg") if k not in outputs]
        if missing:
            raise TadkitError(f"ECM.loss needs the training-branch outputs {missing} (run the model in train mode "
                              "or call forward_train)", field="outputs")
        labels = batch["video_labels"] if isinstance(batch, Mapping) and "video_labels" in batch else batch
        labels = torch.as_tensor(labels).to(outputs["score_pre"])
        return ecm_losses(outputs["score_pre"], outputs["score_post"], outputs["score_agg"], labels, self.config)

    def decode(self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any]) -> list[ClassActivation]:
        """One :class:`ClassActivation` per sample: raw CAS (C, T) and softmax video scores (C,)."""
        cas = outputs["cas"].detach()
        scores = outputs.get("video_scores")
        if scores is None:
            scores = torch.softmax(outputs["score_pre"], dim=1)
        scores = scores.detach()
        meta = batch.get("meta") if isinstance(batch, Mapping) else None
        out = []
        for b in range(cas.shape[0]):
            length = cas.shape[2]
            if meta is not None and b < len(meta) and meta[b].get("valid_length") is not None:
                length = min(length, int(meta[b]["valid_length"]))
            out.append(ClassActivation(cas=cas[b, :, :length], video_scores=scores[b]))
        return out

    # ---- streams ---------------------------------------------------------------------------------

    def topk(self, length: int) -> int:
        """k of the top-k mean: ``topk_k`` if set, else ``int(T * topk_ratio)``; clamped to 1..T."""
        k = self.config.topk_k if self.config.topk_k is not None else int(length * self.config.topk_ratio)
        return max(1, min(length, k))

    def pre_classification(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(raw CAS (B, C, T), s_pre (B, C) = mean of the top-k CAS values over time)."""
        cas = self.classifier_module(self.base_module(x))
        score_pre = torch.topk(cas, self.topk(cas.shape[2]), dim=2)[0].mean(dim=2)
        return cas, score_pre

    def aggregate(self, weights: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """(N, C, T) weights x (N, D, T) features -> (N, C, D, G): weighted sums over each group g::G."""
        g = self.config.groups
        parts = [torch.matmul(weights[:, :, i::g], x[:, :, i::g].transpose(1, 2)) for i in range(g)]
        return torch.stack(parts, dim=3)

    def post_classification(self, aggregated: torch.Tensor) -> torch.Tensor:
        """(N, C, D, G) -> (N, C): the same f over the G positions, then row c of W, mean over G."""
        n, c, d, g = aggregated.shape
        hidden = self.base_module(aggregated.reshape(n * c, d, g)).view(n, c, -1, g)
        weight = self.classifier_module.conv.weight[:, :, 0]  # (C, H)
        return torch.einsum("nchg,ch->ncg", hidden, weight).mean(dim=2)

    def forward_eval(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        cas, score_pre = self.pre_classification(x)
        return {"cas": cas, "score_pre": score_pre, "video_scores": torch.softmax(score_pre, dim=1)}

    def forward_train(self, x: torch.Tensor, labels: torch.Tensor,
                      video_ids: list[str] | None = None) -> dict[str, torch.Tensor]:
        """The official ``is_train=True`` branch (whatever ``self.training`` is: dropout follows the mode)."""
        labels = torch.as_tensor(labels).to(x.device)
        _check_labels(labels, x.shape[0], self.config.num_classes, video_ids)
        cas, score_pre = self.pre_classification(x)
        weights = self.attention_module(cas)  # (B, C, T)
        score_post = self.post_classification(self.aggregate(weights, x))
        score_agg = self.suppressed_stream(x, weights, score_post, labels)
        return {"cas": cas, "score_pre": score_pre, "score_post": score_post, "score_agg": score_agg}

    def suppressed_stream(self, x: torch.Tensor, weights: torch.Tensor, score_post: torch.Tensor,
                          labels: torch.Tensor) -> torch.Tensor:
        """Background-suppressed post stream for every (video, GT class) pair at once -> (B, 2C) softmax."""
        positive = labels == 1
        b_idx, c_idx = torch.nonzero(positive, as_tuple=True)  # P pairs, video-major
        suppressed = x[b_idx] * (1.0 - weights[b_idx, c_idx]).unsqueeze(1)  # (P, D, T)
        q = self.post_classification(self.aggregate(weights[b_idx], suppressed))  # (P, C)
        batch, num_classes = labels.shape
        sums = torch.zeros(batch, num_classes, dtype=q.dtype, device=q.device).index_add(0, b_idx, q)
        q_bar = sums / positive.sum(dim=1, keepdim=True).to(q.dtype)
        q_bar = q_bar.index_put((b_idx, c_idx), q[torch.arange(q.shape[0], device=q.device), c_idx])
        return torch.softmax(torch.cat([score_post, q_bar], dim=1), dim=1)

    # ---- helpers ---------------------------------------------------------------------------------

    def _features(self, batch: Any) -> torch.Tensor:
        features = batch["features"] if isinstance(batch, Mapping) else batch
        if features.dim() != 3 or features.shape[1] != self.config.in_dim:
            raise TadkitError(f"expected features (B, {self.config.in_dim}, T), got {tuple(features.shape)}",
                              field="features")
        if isinstance(batch, Mapping):
            for m in batch.get("meta") or []:
                valid = m.get("valid_length")
                if valid is not None and int(valid) != features.shape[2]:
                    raise TadkitError(
                        f"ECM needs every video of a batch resampled to the same length; this one has "
                        f"{valid} of {features.shape[2]} steps (set data.resample_length, or test with batch 1)",
                        video=str(m.get("video_id")), field="valid_length")
        return features

    @staticmethod
    def _video_ids(batch: Mapping[str, Any]) -> list[str] | None:
        meta = batch.get("meta")
        return None if not meta else [str(m.get("video_id")) for m in meta]


def _check_labels(labels: torch.Tensor, batch: int, num_classes: int, video_ids: list[str] | None) -> None:
    if labels.shape != (batch, num_classes):
        raise TadkitError(f"expected video labels ({batch}, {num_classes}), got {tuple(labels.shape)}",
                          field="video_labels")
    if not bool(((labels == 0) | (labels == 1)).all()):
        raise TadkitError("video labels must be multi-hot 0/1 values", field="video_labels")
    empty = torch.nonzero(labels.sum(dim=1) == 0).flatten().tolist()
    if empty:
        who = video_ids[empty[0]] if video_ids else f"batch index {empty[0]}"
        raise TadkitError("a training video has no positive video-level label (ECM needs at least one)",
                          video=who, field="video_labels")


def cls_loss(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against the L1-normalised multi-hot labels, mean over the batch."""
    target = labels / (labels.sum(dim=1, keepdim=True) + 1e-10)
    return -(target * F.log_softmax(scores, dim=1)).sum(dim=1).mean()


def ecm_losses(score_pre: torch.Tensor, score_post: torch.Tensor, score_agg: torch.Tensor, labels: torch.Tensor,
               config: ECMConfig) -> dict[str, torch.Tensor]:
    """``pre``, ``post``, ``cls_consistency`` (MSE of logits), ``agg_consistency`` (BCE) and ``total``."""
    loss_pre = cls_loss(score_pre, labels)
    loss_post = cls_loss(score_post, labels)
    loss_cc = F.mse_loss(score_pre, score_post)
    num_classes = labels.shape[1]
    positive = (labels == 1).to(score_agg.dtype)
    # nn.BCELoss per entry (log clamped at -100 in the forward, gradient (x - y) / max(x (1 - x), 1e-12)
    # in the backward): target 1 on the GT entries of the s_post half, target 0 on the same classes of the
    # suppressed half; mean over the 2|GT| entries, then over videos. (A hand-written clamp(log(x), -100)
    # has the same forward but a 0 * inf = NaN gradient once a softmax entry underflows to 0 or 1.)
    pos_term = F.binary_cross_entropy(score_agg[:, :num_classes], torch.ones_like(score_agg[:, :num_classes]),
                                      reduction="none")
    neg_term = F.binary_cross_entropy(score_agg[:, num_classes:], torch.zeros_like(score_agg[:, num_classes:]),
                                      reduction="none")
    per_video = (positive * (pos_term + neg_term)).sum(dim=1) / (2.0 * positive.sum(dim=1))
    loss_agg = per_video.mean()
    cfg = config
    total = (cfg.loss_pre_coef * loss_pre + cfg.loss_post_coef * loss_post + cfg.loss_cc_coef * loss_cc
             + cfg.loss_agg_coef * loss_agg)
    return {"total": total, "pre": loss_pre, "post": loss_post, "cls_consistency": loss_cc,
            "agg_consistency": loss_agg}


def build_ecm(**kwargs: Any) -> ECM:
    """Builder named by the method spec: ``model.kwargs`` -> :class:`ECM` (``preset`` allowed)."""
    return ECM(ECMConfig.from_kwargs(**kwargs))


__all__ = ["ECM", "ECMConfig", "ECM_PRESETS", "build_ecm", "cls_loss", "ecm_losses"]
