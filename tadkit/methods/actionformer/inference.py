"""ActionFormer's decoding of one video: head outputs -> detections in seconds (official
``inference_single_video`` + ``postprocessing``).

Per pyramid level (the official per-level filtering, kept per level on purpose):

1. class probabilities ``sigmoid(logit)``, zero on padding steps, flattened over (point, class);
2. keep those ``> pre_nms_thresh``, then the ``pre_nms_topk`` most probable (ties: lower index);
3. segment ``[t - left * stride, t + right * stride]`` on the level-0 feature grid from the point's
   offsets; keep segments longer than ``duration_thresh`` feature steps.

Then over all levels: :func:`tadkit.postprocess.voting.nms_with_voting` (multiclass Gaussian
soft-NMS, voting when class-agnostic, ``max_seg_num`` cap); that far is :func:`decode_feature_grid`
(segments in feature steps). :func:`decode_video` adds feature steps -> seconds exactly as
the official code: ``(x * feat_stride + 0.5 * feat_num_frames) / fps`` (a feature step's time is the
centre of its ``feat_num_frames``-frame window), clipped to ``[0, duration]``. All arithmetic stays
in the head outputs' dtype (float32 officially).

Deviations from the official code (none changes a detection beyond float32 rounding on the fixture):

1. Ties are broken by the lower index: the pre-NMS top-k sort is stable, soft-NMS picks the lowest
   input index among equal scores (the official sorts are unstable; its C++ op's order among exactly
   equal scores follows its swap-with-last bookkeeping).
2. NMS IoUs are float64 without the C++ op's ``1e-6`` added to each length (relative IoU change at
   most ``2e-6 / length``, lengths above ``duration_thresh``); decayed scores come back in float32.
3. Hard NMS (``nms_method: hard``) keeps a pair exactly at ``iou_threshold`` (tadkit's rule); the op
   drops it.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import Tensor

from tadkit.errors import TadkitError, reject_unknown_fields
from tadkit.methods.actionformer.model import ActionFormerTestConfig
from tadkit.postprocess.voting import nms_with_voting

__all__ = [
    "decode_feature_grid", "decode_video", "feature_steps_to_seconds", "level_candidates", "resolve_test_config",
]


def resolve_test_config(value: ActionFormerTestConfig | Mapping[str, Any]) -> ActionFormerTestConfig:
    """The model's :class:`~.model.ActionFormerTestConfig`, or the official ``test_cfg`` dict as one."""
    if isinstance(value, ActionFormerTestConfig):
        return value
    if not isinstance(value, Mapping):
        raise TadkitError(f"expected a mapping, got {type(value).__name__}", field="test_cfg")
    reject_unknown_fields(ActionFormerTestConfig, value, "test_cfg key(s)", field="test_cfg")
    return ActionFormerTestConfig(**dict(value))


def level_candidates(
    points: Tensor, cls_logits: Tensor, offsets: Tensor, mask: Tensor, config: ActionFormerTestConfig
) -> tuple[Tensor, Tensor, Tensor]:
    """One level's candidates (steps 1-3 of the module docstring): ``(segments (K, 2) on the feature
    grid, scores (K,), labels (K,))``, most probable first."""
    num_classes = cls_logits.shape[1]
    probs = (cls_logits.sigmoid() * mask[:, None]).flatten()
    above = torch.nonzero(probs > config.pre_nms_thresh).squeeze(1)
    ranked = torch.sort(probs[above], descending=True, stable=True)
    top = ranked.indices[: config.pre_nms_topk]
    flat_index, scores = above[top], ranked.values[: config.pre_nms_topk]
    point_index = torch.div(flat_index, num_classes, rounding_mode="floor")
    labels = flat_index - point_index * num_classes
    pts, dist = points[point_index], offsets[point_index]
    start = pts[:, 0] - dist[:, 0] * pts[:, 3]
    end = pts[:, 0] + dist[:, 1] * pts[:, 3]
    long_enough = (end - start) > config.duration_thresh
    return torch.stack((start, end), dim=-1)[long_enough], scores[long_enough], labels[long_enough]


def decode_feature_grid(
    points: Sequence[Tensor],
    cls_logits: Sequence[Tensor],
    offsets: Sequence[Tensor],
    masks: Sequence[Tensor],
    test_cfg: ActionFormerTestConfig | Mapping[str, Any],
) -> tuple[Tensor, Tensor, Tensor]:
    """Detections of one video on the level-0 feature grid: ``(segments (K, 2) in feature steps, scores (K,),
    labels (K,))``, score desc (except ``nms_method="none"``: the candidates in level order, as officially).

    Args:
        points: per level ``(T_l, 4)`` (:func:`.points.make_points`).
        cls_logits, offsets, masks: per level ``(T_l, C)`` logits, ``(T_l, 2)`` offsets (in strides),
            ``(T_l,)`` bool (False on padding) of this video.
        test_cfg: the model's :class:`~.model.ActionFormerTestConfig` or the official ``test_cfg`` dict.
    """
    config = resolve_test_config(test_cfg)
    if not len(points) == len(cls_logits) == len(offsets) == len(masks):
        raise TadkitError(
            f"{len(points)} point levels but {len(cls_logits)} / {len(offsets)} / {len(masks)} output levels",
            field="heads",
        )
    parts = [level_candidates(*level, config) for level in zip(points, cls_logits, offsets, masks)]
    segments, scores, labels = (torch.cat(column) for column in zip(*parts))
    if config.nms_method == "none":
        return segments, scores, labels
    return nms_with_voting(
        segments.cpu(), scores.cpu(), labels.cpu(),
        method=config.nms_method, iou_threshold=config.iou_threshold, min_score=config.min_score,
        max_seg_num=config.max_seg_num, multiclass=config.multiclass_nms, sigma=config.nms_sigma,
        voting_thresh=config.voting_thresh,
    )


def feature_steps_to_seconds(segments: Tensor, fps: float, feat_stride: float, feat_num_frames: float,
                             duration: float) -> Tensor:
    """The official conversion: ``(x * feat_stride + 0.5 * feat_num_frames) / fps``, clipped to ``[0, duration]``
    (in the segments' dtype, float32 officially)."""
    if not fps > 0:
        raise TadkitError(f"must be > 0, got {fps!r}", field="fps")
    return ((segments * feat_stride + 0.5 * feat_num_frames) / fps).clamp(min=0.0, max=duration)


def decode_video(
    points: Sequence[Tensor],
    cls_logits: Sequence[Tensor],
    offsets: Sequence[Tensor],
    masks: Sequence[Tensor],
    test_cfg: ActionFormerTestConfig | Mapping[str, Any],
    fps: float,
    feat_stride: float,
    feat_num_frames: float,
    duration: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """Detections of one video in seconds: :func:`decode_feature_grid` then :func:`feature_steps_to_seconds`.

    ``fps``, ``feat_stride``, ``feat_num_frames``, ``duration``: the video's frame rate, frames between two
    feature steps, frames per feature window, and length in seconds.
    """
    segments, scores, labels = decode_feature_grid(points, cls_logits, offsets, masks, test_cfg)
    return feature_steps_to_seconds(segments, fps, feat_stride, feat_num_frames, duration), scores, labels
