"""Zero-shot localization of the 400 Kinetics actions: I3D's own classifier as a class activation sequence.

No training and no checkpoint: DeepMind's Kinetics-400 RGB I3D already has a 400-way classifier. Applied
to every feature stack it gives per-stack Kinetics logits, which are treated like the class activation
sequence (CAS) of a weakly supervised method and turned into segments with the recipe of
:mod:`tadkit.postprocess.cas` (ECM / ACRNet / W-TALC):

1. **CAS**: ``p[c, k] = softmax_c(logits[k])``, the Kinetics probability of class ``c`` for stack ``k``.
   The logits come from the features (:func:`stack_logits`): the head is a 1x1x1 convolution, linear, so
   applying it to the pooled 1024-d feature equals I3D's time-averaged logits for that stack.
2. **Video-level classes**: ``score[c]`` = mean of the ``k = max(1, ceil(T / topk_divisor))`` largest
   ``p[c, :]`` (W-TALC's top-k pooling, on probabilities so the score is in [0, 1]); classes with
   ``score >= class_threshold`` are localized, at most ``max_classes`` of them, else the best one.
3. **Runs**: for each threshold in ``cas.thresholds`` every maximal run of stacks with ``p >= thr`` is a
   proposal; its score is the outer-inner contrast (mean inside - mean of a ``outer_lambda * length``
   margin on both sides) + ``gamma`` x the video-level score.
4. **Seconds**: a run of stacks ``s..e`` is ``[start(s), start(e) + stack seconds]`` from the extraction's
   own timestamps, clipped to the video; then per-class NMS (``nms``).

Defaults were chosen on the two real ActivityNet samples (see docs/video.md); they are options, not
anybody's published setting.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from tadkit.data.records import DetectionSet
from tadkit.errors import TadkitError
from tadkit.postprocess.cas import CASProposalConfig, cas_proposals, select_classes
from tadkit.postprocess.nms import NMSConfig, nms_detection_set

LABELS_FILE = Path(__file__).with_name("kinetics400_labels.txt")
NUM_KINETICS = 400

DEFAULT_CAS = CASProposalConfig(
    thresholds=tuple(np.round(np.arange(0.1, 1.0, 0.05), 2)), rule="at_least", min_length=1, outer_lambda=0.25,
    outer_right_inclusive=True, contrast_on="raw", gamma=0.2,
)
DEFAULT_NMS = NMSConfig(method="hard", iou_threshold=0.5, max_per_video=100)


@lru_cache(maxsize=1)
def kinetics400_labels() -> tuple[str, ...]:
    """The 400 Kinetics-400 class names in the order of DeepMind's I3D logits (index 59 = clean and jerk)."""
    names = tuple(line.strip() for line in LABELS_FILE.read_text(encoding="utf-8").splitlines() if line.strip())
    if len(names) != NUM_KINETICS or len(set(names)) != NUM_KINETICS:
        raise TadkitError(f"expected {NUM_KINETICS} distinct names, found {len(names)}", file=str(LABELS_FILE))
    return names


@dataclass(frozen=True)
class ZeroShotConfig:
    """The zero-shot recipe; every field can be set with ``tadkit detect VIDEO --set KEY=VALUE``."""

    topk_divisor: float = 8.0  # video score: mean of the top ceil(T / 8) stack probabilities (W-TALC)
    class_threshold: float = 0.25  # localize classes whose video score reaches this
    max_classes: int = 5  # ... at most this many (the best ones); always at least the top class
    min_score: float = 0.0  # drop segments scoring below this after NMS
    smooth: int = 3  # moving average over this many stacks (odd; 1 = none) before the runs
    upsample: int = 4  # each stack repeated this often before the runs, so short runs get a margin
    cas: CASProposalConfig = field(default_factory=lambda: DEFAULT_CAS)
    nms: NMSConfig = field(default_factory=lambda: DEFAULT_NMS)

    def __post_init__(self) -> None:
        for name in ("topk_divisor", "class_threshold", "min_score"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise TadkitError(f"must be a finite number, got {value!r}", field=name)
        if self.topk_divisor < 1:
            raise TadkitError(f"must be >= 1, got {self.topk_divisor}", field="topk_divisor")
        if isinstance(self.smooth, bool) or not isinstance(self.smooth, int) or self.smooth < 1 or self.smooth % 2 == 0:
            raise TadkitError(f"must be a positive odd integer, got {self.smooth!r}", field="smooth")
        for name in ("max_classes", "upsample"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise TadkitError(f"must be a positive integer, got {value!r}", field=name)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["cas"]["thresholds"] = [float(t) for t in self.cas.thresholds]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ZeroShotConfig":
        data = dict(data)
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise TadkitError(f"unknown zero-shot key(s) {unknown}; known: {sorted(cls.__dataclass_fields__)}",
                              field="set")
        if isinstance(data.get("cas"), Mapping):
            data["cas"] = CASProposalConfig.from_dict(data["cas"])
        if isinstance(data.get("nms"), Mapping):
            data["nms"] = NMSConfig.from_dict(data["nms"])
        return replace(cls(), **data)

    @classmethod
    def from_overrides(cls, overrides: Sequence[str]) -> "ZeroShotConfig":
        """Defaults with ``KEY=VALUE`` overrides (``class_threshold=0.1``, ``cas.gamma=0``, ``nms.iou_threshold=0.4``)."""
        from tadkit.engine.config import apply_overrides

        raw = cls().to_dict()
        known = set(raw) | {f"{section}.{key}" for section in ("cas", "nms") for key in raw[section]}
        for text in overrides:
            key = text.partition("=")[0].strip()
            if key not in known:
                raise TadkitError(f"unknown zero-shot setting {key!r}; known: {', '.join(sorted(known))}", field=key)
        return cls.from_dict(apply_overrides(raw, overrides)[0])


def kinetics_head(model: torch.nn.Module) -> tuple[np.ndarray, np.ndarray]:
    """(W (400, 1024), b (400,)) float64 of an I3D's Kinetics classifier (``Logits.Conv3d_0c_1x1``)."""
    head = getattr(model, "Logits", None)
    if head is None:
        raise TadkitError("this I3D has no Kinetics classifier (num_classes 0)", field="Logits")
    conv = head.Conv3d_0c_1x1.conv
    weight = conv.weight.detach().double().cpu().reshape(conv.out_channels, -1).numpy()
    bias = conv.bias.detach().double().cpu().numpy()
    if weight.shape != (NUM_KINETICS, 1024):
        raise TadkitError(f"expected a 400 x 1024 Kinetics head, got {weight.shape}", field="Logits")
    return weight, bias


def stack_logits(features: np.ndarray, head: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """(T, 1024) RGB I3D features -> (T, 400) Kinetics logits (the head is linear: head(mean) = mean(head))."""
    x = np.asarray(features, dtype=np.float64)
    weight, bias = head
    if x.ndim != 2 or x.shape[1] != weight.shape[1]:
        raise TadkitError(f"expected (T, {weight.shape[1]}) RGB I3D features, got shape {x.shape}", field="features")
    return x @ weight.T + bias


def class_activation(logits: np.ndarray) -> np.ndarray:
    """(T, C) logits -> (C, T) per-stack softmax probabilities (time on the last axis, as in postprocess.cas)."""
    x = np.asarray(logits, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0 or not np.isfinite(x).all():
        raise TadkitError(f"expected a finite (T >= 1, C) logit array, got shape {x.shape}", field="logits")
    z = np.exp(x - x.max(axis=1, keepdims=True))
    return (z / z.sum(axis=1, keepdims=True)).T


def smooth_cas(cas: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average of odd ``width`` along time, edges replicated (width 1 = unchanged)."""
    if width == 1:
        return cas
    half = width // 2
    padded = np.pad(cas, ((0, 0), (half, half)), mode="edge")
    prefix = np.concatenate([np.zeros((cas.shape[0], 1)), np.cumsum(padded, axis=1)], axis=1)
    return (prefix[:, width:] - prefix[:, :-width]) / width


def video_scores(cas: np.ndarray, topk_divisor: float) -> np.ndarray:
    """(C,) mean of the top ``max(1, ceil(T / topk_divisor))`` values of each CAS row."""
    length = cas.shape[1]
    k = max(1, math.ceil(length / topk_divisor))
    return np.sort(cas, axis=1)[:, length - k:].mean(axis=1)


@dataclass
class ZeroShotResult:
    detections: DetectionSet  # sorted by score, descending
    cas: np.ndarray  # (400, T) per-stack probabilities
    video_scores: np.ndarray  # (400,)
    selected: np.ndarray  # class indices localized, best video score first


def localize_zero_shot(
    logits: np.ndarray,
    starts: np.ndarray,
    clip_seconds: float,
    duration: float,
    video_id: str,
    config: ZeroShotConfig = ZeroShotConfig(),
    labels: Sequence[str] | None = None,
) -> ZeroShotResult:
    """Segments (seconds) of the Kinetics classes present in one video, from its (T, 400) stack logits.

    ``starts``: (T,) start second of each stack; ``clip_seconds``: the seconds a stack covers.
    """
    labels = list(kinetics400_labels() if labels is None else labels)
    cas = class_activation(logits)
    if cas.shape[0] != len(labels):
        raise TadkitError(f"{cas.shape[0]} logits per stack but {len(labels)} labels", field="labels")
    starts = np.asarray(starts, dtype=np.float64).reshape(-1)
    if starts.shape[0] != cas.shape[1]:
        raise TadkitError(f"{starts.shape[0]} stack times for {cas.shape[1]} stacks", video=video_id, field="timestamps")
    if not (math.isfinite(clip_seconds) and clip_seconds > 0 and math.isfinite(duration) and duration > 0):
        raise TadkitError(f"need positive stack seconds and duration, got {clip_seconds}, {duration}", video=video_id,
                          field="duration")
    scores = video_scores(cas, config.topk_divisor)
    chosen = select_classes(scores, config.class_threshold, fallback_top1=True)
    chosen = chosen[np.argsort(-scores[chosen], kind="stable")][: config.max_classes]
    # Runs are unions of whole stacks on the repeated grid; the margin int(lambda * length) is then a
    # fraction of a stack instead of 0 for runs shorter than 1 / lambda stacks.
    runs_on = smooth_cas(cas, config.smooth)
    props = cas_proposals(np.repeat(runs_on, config.upsample, axis=1), config.cas, scores, chosen)
    first, last = props.start // config.upsample, props.end // config.upsample
    begin = np.clip(starts[first], 0.0, duration)
    end = np.clip(starts[last] + clip_seconds, 0.0, duration)
    names = np.asarray(labels, dtype=object)
    dets = DetectionSet(np.full(len(props), video_id, dtype=object), begin, end, names[props.label], props.score)
    dets = nms_detection_set(dets, config.nms)
    dets = dets.select(dets.score >= config.min_score)
    dets = dets.select(np.argsort(-dets.score, kind="stable"))
    return ZeroShotResult(dets, cas, scores, chosen)


__all__ = [
    "DEFAULT_CAS",
    "DEFAULT_NMS",
    "LABELS_FILE",
    "ZeroShotConfig",
    "ZeroShotResult",
    "class_activation",
    "kinetics400_labels",
    "kinetics_head",
    "localize_zero_shot",
    "stack_logits",
    "video_scores",
]
