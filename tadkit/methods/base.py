"""The method contract: what the engine, the pipeline and the commands know about a method.

A *method* (A2Net, AFSD, ECM, ACRNet, ...) is one :class:`MethodSpec` registered in
:mod:`tadkit.methods`. Everything method-specific hangs off it, named as ``"module:attribute"``
strings so that nothing heavy is imported until the method is used.

The model a spec builds is an ``nn.Module`` with four methods; each takes the whole batch, so a
method can read whatever its data kind puts there (video labels, frame counts, augmented clips):

* ``forward(batch) -> dict[str, Tensor]``
* ``loss(outputs, batch) -> dict[str, Tensor]`` with a ``"total"`` term (what is back-propagated);
* ``decode(outputs, batch) -> list`` one entry per sample: :class:`WindowDetections` (output kind
  ``detections``, segments in the sample's feature steps) or :class:`ClassActivation` (output kind
  ``cas``);
* ``config_dict() -> dict`` plain values such that ``spec.build(**config_dict())`` rebuilds the model.

The batch (see :mod:`tadkit.data.windows` / :mod:`tadkit.data.dataset` collate functions):

* ``features``: float tensor (B, D, T), channel-first, on the model's device;
* ``meta``: one dict per sample with ``video_id``, ``t0`` (s), ``step`` (s per feature step) and
  ``valid_length``; whole-video samples add ``fps``, ``frame_num``, ``duration``, ``num_features``;
* data kind ``windows``: ``targets`` = per sample ``{"segments": (N, 2) window steps, "labels": (N,)}``;
* data kind ``videos``: ``video_labels`` (B, C) multi-hot float; no segment reaches a weak method.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Literal, Mapping

from tadkit.errors import TadkitError

if TYPE_CHECKING:  # torch is imported lazily: `tadkit --help` must not pay for it
    import torch
    from torch import nn

DataKind = Literal["windows", "videos", "frames"]
OutputKind = Literal["detections", "cas"]
DATA_KINDS: tuple[str, ...] = ("windows", "videos", "frames")
OUTPUT_KINDS: tuple[str, ...] = ("detections", "cas")


def resolve(target: Any) -> Any:
    """``"package.module:attr"`` -> the attribute (imports the module on first use); non-strings pass."""
    if not isinstance(target, str):
        return target
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"expected 'module:attribute', got {target!r}")
    return getattr(importlib.import_module(module_name), attribute)


@dataclass
class ClassActivation:
    """Output of a ``cas`` method for one sample, before CAS -> segments (time is the LAST axis)."""

    cas: "torch.Tensor"  # (C, T) per-class activation over the sample's T steps
    video_scores: "torch.Tensor"  # (C,) video-level class scores
    extras: dict[str, "torch.Tensor"] = field(default_factory=dict)  # e.g. actionness (T,)


@dataclass(frozen=True)
class MethodSpec:
    """One registered method. Callables are ``"module:attribute"`` strings (resolved lazily) or
    the callables themselves (programmatic registration, tests).

    * ``model``: ``builder(**kwargs) -> nn.Module`` (kwargs = the config's ``model.kwargs``);
    * ``data_kind``: how training / test samples are cut: sliding ``windows`` (or whole-video
      resampling with labels per segment), whole ``videos`` with video-level labels only, or
      decoded ``frames`` (end to end);
    * ``output_kind``: ``detections`` (windows -> seconds -> the config's NMS) or ``cas`` (the
      method's ``localize`` turns each :class:`ClassActivation` into segments in seconds);
    * ``official_importer``: ``fn(state_dict, **overrides) -> nn.Module`` for the authors'
      checkpoints (``tadkit convert <name>-official``);
    * ``localize``: ``fn(activation, meta, options: Mapping) -> (segments (K, 2) s, scores (K,),
      labels (K,))`` (``cas`` methods), ``options`` = the config's ``test.cas`` mapping;
    * ``train_transform``: ``fn(sample) -> sample`` applied to training samples (augmentation);
    * ``defaults``: config values this method needs when a config omits them (dotted keys).
    """

    name: str
    model: str | Callable[..., Any]
    data_kind: str = "windows"
    output_kind: str = "detections"
    official_importer: str | Callable[..., Any] | None = None
    localize: str | Callable[..., Any] | None = None
    train_transform: str | Callable[..., Any] | None = None
    summary: str = ""
    defaults: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.data_kind not in DATA_KINDS:
            raise ValueError(f"method {self.name}: data_kind must be one of {DATA_KINDS}, got {self.data_kind!r}")
        if self.output_kind not in OUTPUT_KINDS:
            raise ValueError(f"method {self.name}: output_kind must be one of {OUTPUT_KINDS}, got {self.output_kind!r}")
        if self.output_kind == "cas" and self.localize is None:
            raise ValueError(f"method {self.name}: a 'cas' method needs localize")

    def build(self, **kwargs: Any) -> "nn.Module":
        try:
            return resolve(self.model)(**kwargs)
        except TypeError as error:
            raise TadkitError(f"model {self.name!r}: {error}", field="model.kwargs") from None

    def import_official(self, state_dict: Mapping[str, Any], **overrides: Any) -> "nn.Module":
        if self.official_importer is None:
            raise TadkitError(f"method {self.name!r} has no importer for official checkpoints", field="method")
        return resolve(self.official_importer)(dict(state_dict), **overrides)

    def localizer(self) -> Callable[..., Any]:
        if self.localize is None:
            raise TadkitError(f"method {self.name!r} outputs detections, not class activations", field="method")
        return resolve(self.localize)

    def transform(self) -> Callable[[Any], Any] | None:
        return None if self.train_transform is None else resolve(self.train_transform)


__all__ = ["DATA_KINDS", "OUTPUT_KINDS", "ClassActivation", "DataKind", "MethodSpec", "OutputKind", "resolve"]
