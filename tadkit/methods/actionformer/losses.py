"""ActionFormer's training losses (official ``PtTransformer.losses``).

* Classification: sigmoid focal loss (alpha 0.25, gamma 2) summed over every valid point and class
  (padding points excluded), with optional label smoothing ``y (1 - eps) + eps / (C + 1)``.
* Regression: ``1 - DIoU`` of the predicted and target distances, summed over positive points
  (valid points with at least one class target).
* Both sums are divided by the *loss normaliser*, an exponential moving average of the number of
  positives per batch: ``n <- 0.9 n + 0.1 max(#pos, 1)``, starting at ``init_loss_norm``. It is
  updated before it divides, once per call (the official code does the same on every training
  forward). :class:`LossNormaliser` holds it as a float64 buffer, so it is saved in checkpoints
  and a resumed run continues with the same value.
* ``final_loss = cls_loss + loss_weight * reg_loss``; a non-positive ``loss_weight`` balances the
  two terms per batch: ``cls_loss.detach() / max(reg_loss, 0.01)``.

Deviation: the official losses cast their inputs to float32; here float64 inputs stay float64 (the
fixture test runs both; float32 inputs give the official numbers bit for bit).
"""

from __future__ import annotations

from typing import Any, Mapping, Protocol, Sequence

import torch
from torch import Tensor, nn

from tadkit.errors import TadkitError
from tadkit.models.losses import centre_diou_loss, sigmoid_focal_loss

__all__ = ["LossNormaliser", "actionformer_losses"]


class HeadOutputs(Protocol):
    """What the losses read from the model's ``ActionFormerHeads``: per level, batch first."""

    cls_logits: Sequence[Tensor]  # (B, T_l, C)
    offsets: Sequence[Tensor]  # (B, T_l, 2), non-negative
    masks: Sequence[Tensor]  # (B, T_l) bool, True on real (not padded) steps


class LossNormaliser(nn.Module):
    """EMA of the number of positive points per batch (``momentum`` 0.9 officially), as a buffer."""

    value: Tensor

    def __init__(self, init_loss_norm: float = 100.0, momentum: float = 0.9) -> None:
        super().__init__()
        if not init_loss_norm > 0:
            raise TadkitError(f"must be > 0, got {init_loss_norm!r}", field="init_loss_norm")
        if not 0.0 <= momentum < 1.0:
            raise TadkitError(f"must be in [0, 1), got {momentum!r}", field="momentum")
        self.momentum = float(momentum)
        # float64 like the official Python float, so the EMA is the same number after any resume
        self.register_buffer("value", torch.tensor(float(init_loss_norm), dtype=torch.float64))

    def _apply(self, fn: Any, recurse: bool = True) -> "LossNormaliser":
        """Device moves apply; dtype casts (``model.float()`` / ``.half()``) do not: the EMA stays float64."""
        value = float(self.value)
        super()._apply(fn, recurse)
        if self.value.dtype != torch.float64:
            self.value = torch.tensor(value, dtype=torch.float64, device=self.value.device)
        return self

    def update(self, num_positives: int) -> float:
        """Move the average towards ``max(num_positives, 1)`` and return the new value."""
        new = self.momentum * float(self.value) + (1.0 - self.momentum) * max(int(num_positives), 1)
        self.value.fill_(new)
        return new

    def extra_repr(self) -> str:
        return f"value={float(self.value):.4f}, momentum={self.momentum}"


def _option(config: Mapping[str, Any] | Any, name: str, default: Any) -> Any:
    """``train_cfg`` may be the official dict or a dataclass with the same field names."""
    if isinstance(config, Mapping):
        return config.get(name, default)
    return getattr(config, name, default)


def actionformer_losses(
    heads: HeadOutputs,
    points: Sequence[Tensor],
    cls_targets: Tensor,
    reg_targets: Tensor,
    loss_norm_state: LossNormaliser,
    train_cfg: Mapping[str, Any] | Any,
) -> dict[str, Tensor]:
    """``{"cls_loss", "reg_loss", "final_loss"}`` of one training batch; updates ``loss_norm_state``.

    Args:
        heads: the model's head outputs (see :class:`HeadOutputs`).
        points: per level ``(T_l, 4)`` (only their count is checked against the targets).
        cls_targets, reg_targets: ``(B, ΣT, C)`` and ``(B, ΣT, 2)`` from :func:`.targets.assign_targets`.
        loss_norm_state: the model's :class:`LossNormaliser`.
        train_cfg: ``loss_weight`` (default 1.0) and ``label_smoothing`` (default 0.0).
    """
    valid = torch.cat(list(heads.masks), dim=1)  # (B, ΣT)
    logits = torch.cat(list(heads.cls_logits), dim=1)  # (B, ΣT, C)
    offsets = torch.cat(list(heads.offsets), dim=1)  # (B, ΣT, 2)
    num_points = sum(int(level.shape[0]) for level in points)
    if not (valid.shape == logits.shape[:2] == offsets.shape[:2] == cls_targets.shape[:2] == reg_targets.shape[:2]
            and valid.shape[1] == num_points and logits.shape[2] == cls_targets.shape[2]):
        raise TadkitError(
            f"head outputs {tuple(logits.shape)} / {tuple(offsets.shape)}, masks {tuple(valid.shape)}, "
            f"{num_points} points and targets {tuple(cls_targets.shape)} / {tuple(reg_targets.shape)} disagree",
            field="heads",
        )
    num_classes = logits.shape[2]
    positive = (cls_targets.sum(dim=-1) > 0) & valid
    num_positives = int(positive.sum())
    normaliser = loss_norm_state.update(num_positives)

    smoothing = float(_option(train_cfg, "label_smoothing", 0.0))
    target = cls_targets[valid] * (1 - smoothing) + smoothing / (num_classes + 1)
    cls_loss = sigmoid_focal_loss(logits[valid], target, reduction="sum") / normaliser

    pred_offsets = offsets[positive]
    if num_positives == 0:
        reg_loss = 0 * pred_offsets.sum()
    else:
        reg_loss = centre_diou_loss(pred_offsets, reg_targets[positive], reduction="sum") / normaliser

    loss_weight = float(_option(train_cfg, "loss_weight", 1.0))
    if loss_weight <= 0:  # balance the terms per batch
        loss_weight = cls_loss.detach() / max(float(reg_loss.detach()), 0.01)
    return {"cls_loss": cls_loss, "reg_loss": reg_loss, "final_loss": cls_loss + reg_loss * loss_weight}
