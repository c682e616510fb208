"""What every localization model offers the engine (training loop, inference, CLI).

A batch is the output of :func:`tadkit.data.windows.collate_windows`:
``{"features": Tensor (B, D, T) float32, "targets": list[{"segments": Tensor (N, 2) in window steps,
"labels": Tensor (N,) int64 0-based}], "meta": list[{"video_id", "t0", "step", "valid_length"}]}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Protocol, TypeVar

import torch


@dataclass
class WindowDetections:
    """Detections of one window, in window steps (convert with the window's t0/step)."""

    segments: torch.Tensor  # (K, 2) float, window steps
    scores: torch.Tensor  # (K,)
    labels: torch.Tensor  # (K,) int64, 0-based class index


class LocalizationModel(Protocol):
    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]: ...

    def loss(self, outputs: dict[str, torch.Tensor], targets: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Loss terms; key ``"total"`` is what the engine back-propagates."""
        ...

    def decode(self, outputs: dict[str, torch.Tensor]) -> list[WindowDetections]:
        """Per-window candidate detections before cross-window NMS."""
        ...

    def config_dict(self) -> dict[str, Any]: ...


V = TypeVar("V")


def strip_ddp_prefix(state_dict: Mapping[str, V]) -> dict[str, V]:
    """``module.x`` -> ``x`` when EVERY key has the prefix DataParallel / DDP add (a model may have a
    submodule really called ``module``)."""
    keys = list(state_dict)
    if keys and all(k.startswith("module.") for k in keys):
        return {k[len("module."):]: v for k, v in state_dict.items()}
    return dict(state_dict)


def official_tensors(state_dict: Mapping[str, Any], source: str | None = None) -> dict[str, torch.Tensor]:
    """An official checkpoint's weights as ``{key: tensor}``: nested ``state_dict`` / ``model``
    unwrapped, the DataParallel/DDP ``module.`` prefix stripped, values made tensors (a value that is
    not one is a :class:`TadkitError` naming the key)."""
    from tadkit.errors import TadkitError

    for key in ("state_dict", "model"):
        if isinstance(state_dict.get(key), Mapping):
            state_dict = state_dict[key]
    out: dict[str, torch.Tensor] = {}
    for key, value in strip_ddp_prefix(state_dict).items():
        try:
            out[key] = value if isinstance(value, torch.Tensor) else torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError) as error:
            raise TadkitError(f"not a tensor ({type(value).__name__})", file=source, field=key) from error
    return out
