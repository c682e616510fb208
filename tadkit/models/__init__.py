"""tadkit.models: shared neural pieces (``blocks``, ``losses``) and the model-building entry points.

Methods are registered in :mod:`tadkit.methods`; ``build_model(name, **kwargs)`` builds the model of
the method called ``name`` from its ``config_dict()``. A tadkit checkpoint stores ``model_name`` and
``model_config`` so ``build_model(ckpt["model_name"], **ckpt["model_config"])`` then
``load_state_dict(ckpt["model"])`` restores it.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Mapping

from torch import nn

from tadkit.errors import TadkitError
from tadkit.methods import MethodSpec, available_methods, get_method, register_method


def __getattr__(name: str) -> Any:
    """``A2Net`` / ``A2NetConfig`` (issue-3 names) without importing a method when the package loads."""
    if name in ("A2Net", "A2NetConfig"):
        from tadkit.methods.a2net import model

        return getattr(model, name)
    raise AttributeError(f"module 'tadkit.models' has no attribute {name!r}")


class _ModelView(Mapping[str, Callable[..., nn.Module]]):
    """Read-only ``{name: builder}`` view of the method registry (the issue-3 ``MODELS`` dict)."""

    def __getitem__(self, name: str) -> Callable[..., nn.Module]:
        try:
            return _builder(get_method(name))
        except TadkitError:
            raise KeyError(name) from None

    def __iter__(self) -> Iterator[str]:
        return iter(available_methods())

    def __len__(self) -> int:
        return len(available_methods())


def _builder(spec: MethodSpec) -> Callable[..., nn.Module]:
    from tadkit.methods.base import resolve

    return resolve(spec.model)


MODELS: Mapping[str, Callable[..., nn.Module]] = _ModelView()


def register_model(name: str, builder: Callable[..., nn.Module], **spec_fields: Any) -> MethodSpec:
    """Register ``builder`` as a windows -> detections method called ``name`` (see :mod:`tadkit.methods`)."""
    return register_method(MethodSpec(name=name.lower(), model=builder, **spec_fields))


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the model of the method registered as ``name`` with its config keyword arguments."""
    return get_method(name, field="model_name").build(**kwargs)


__all__ = ["MODELS", "A2Net", "A2NetConfig", "build_model", "register_model"]
