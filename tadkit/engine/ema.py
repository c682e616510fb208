"""Model EMA: an exponential moving average of the weights, the model a run evaluates (``train.model_ema_decay``).

After every optimizer step each floating-point entry of the state dict (parameters AND buffers, as
ActionFormer's ``ModelEma`` does) becomes ``decay x ema + (1 - decay) x current``; integer buffers
(counters such as BatchNorm's ``num_batches_tracked``) are copied. The average starts as a copy of
the model when training starts. Checkpoints store it as ``model_ema`` (a state dict beside
``model``); :func:`tadkit.engine.checkpoint.load_checkpoint_model` prefers it, so ``tadkit test`` and
``tadkit detect`` use the weights the run evaluated.
"""

from __future__ import annotations

import copy
from typing import Mapping

import torch
from torch import nn


class ModelEMA:
    """The averaged copy of ``model`` (in eval mode, never trained); :meth:`update` after each step."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self.module = copy.deepcopy(model)
        self.module.eval()
        self.module.requires_grad_(False)
        self._pairs = self._aligned(model)

    def _aligned(self, model: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
        """(averaged, source) float tensors and (copied, source) other tensors, in state-dict order."""
        ours, theirs = self.module.state_dict(keep_vars=True), model.state_dict(keep_vars=True)
        if list(ours) != list(theirs):
            raise ValueError("the EMA copy and the model have different state-dict keys")
        float_ema, float_src, other_ema, other_src = [], [], [], []
        for key, value in ours.items():
            target = float_ema if value.is_floating_point() else other_ema
            source = float_src if value.is_floating_point() else other_src
            target.append(value.data)
            source.append(theirs[key].data)
        return float_ema, float_src, other_ema, other_src

    @torch.no_grad()
    def update(self) -> None:
        """``ema = decay x ema + (1 - decay) x model`` for float entries; the others copied."""
        float_ema, float_src, other_ema, other_src = self._pairs
        if float_ema:
            torch._foreach_mul_(float_ema, self.decay)
            torch._foreach_add_(float_ema, float_src, alpha=1.0 - self.decay)
        for target, source in zip(other_ema, other_src):
            target.copy_(source)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        self.module.load_state_dict(state, strict=True)


__all__ = ["ModelEMA"]
