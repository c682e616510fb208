"""tadkit.postprocess: NMS (hard / soft, per class, per video), window -> video merging, CAS -> segments.

See docs/postprocess.md for the recipes each method uses and how they map to the official codes.
The class-agnostic hard NMS function ``nms`` is not re-exported here: the package attribute
``tadkit.postprocess.nms`` is the module (``import tadkit.postprocess.nms`` gives the module); call
``tadkit.postprocess.nms.nms`` or ``batched_nms(..., labels=None)``.
"""

from tadkit.postprocess.cas import (
    CAS_PRESETS,
    CASProposalConfig,
    CASProposals,
    cas_proposals,
    find_runs,
    localize_from_cas,
    minmax_normalize,
    resize_linear_centers,
    resize_linear_extrapolate,
    select_classes,
)
from tadkit.postprocess.merge import (
    THUMOS14_DUPLICATES,
    clip_to_durations,
    drop_overlapping,
    duplicate_labels,
    top_k_per_video,
    windows_to_detections,
)
from tadkit.postprocess.nms import (
    NMS_PRESETS,
    NMSConfig,
    batched_nms,
    batched_nms_numpy,
    nms_detection_set,
    nms_numpy,
    segment_iou,
    soft_nms,
    soft_nms_indices,
    soft_nms_numpy,
)
from tadkit.postprocess.voting import nms_with_voting, vote_segments

__all__ = [
    "CAS_PRESETS", "CASProposalConfig", "CASProposals", "cas_proposals", "find_runs", "localize_from_cas",
    "minmax_normalize", "resize_linear_centers", "resize_linear_extrapolate", "select_classes",
    "THUMOS14_DUPLICATES", "clip_to_durations", "drop_overlapping", "duplicate_labels", "top_k_per_video",
    "windows_to_detections",
    "NMS_PRESETS", "NMSConfig", "batched_nms", "batched_nms_numpy", "nms_detection_set", "nms_numpy",
    "segment_iou", "soft_nms", "soft_nms_indices", "soft_nms_numpy",
    "nms_with_voting", "vote_segments",
]
