"""tadkit.models: model registry.

``build_model(name, **kwargs)`` builds a registered model from its ``config_dict()``; a tadkit
checkpoint stores ``model_name`` and ``model_config`` so ``build_model(ckpt["model_name"],
**ckpt["model_config"])`` then ``load_state_dict(ckpt["model"])`` restores it.
"""

from __future__ import annotations

from typing import Any, Callable

from torch import nn

from tadkit.errors import TadkitError
from tadkit.models.a2net import A2Net, A2NetConfig, build_a2net

MODELS: dict[str, Callable[..., nn.Module]] = {
    "a2net": build_a2net,
}


def register_model(name: str, builder: Callable[..., nn.Module]) -> None:
    """Add a model builder under ``name`` (lower-case); re-registering a name is an error."""
    key = name.lower()
    if key in MODELS and MODELS[key] is not builder:
        raise ValueError(f"model {name!r} is already registered")
    MODELS[key] = builder


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the model registered as ``name`` with its config keyword arguments."""
    builder = MODELS.get(str(name).lower())
    if builder is None:
        raise TadkitError(f"unknown model {name!r}; available: {sorted(MODELS)}", field="model_name")
    return builder(**kwargs)


__all__ = ["MODELS", "A2Net", "A2NetConfig", "build_model", "register_model"]
