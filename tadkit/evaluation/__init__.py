"""Exact, vectorized evaluation of temporal action localization.

Protocols: ``activitynet`` (official Evaluation/eval_detection.py) and ``thumos14`` (official
TH14evalDet.m); proposal AR@AN/AUC (eval_proposal.py); per-duration mAP and DETAD-style
false-positive analysis; prediction file I/O. See docs/evaluation.md.
"""

from tadkit.evaluation.analysis import (
    FP_TYPES,
    DurationBreakdown,
    FalsePositiveBreakdown,
    duration_breakdown,
    false_positive_breakdown,
)
from tadkit.evaluation.detection import PROTOCOLS, EvalResult, default_tiou, evaluate, parse_tiou
from tadkit.evaluation.ids import VideoIdResolver, load_blocked
from tadkit.evaluation.predictions import (
    PREDICTION_FORMATS,
    load_predictions,
    write_activitynet_json,
    write_thumos_txt,
)
from tadkit.evaluation.proposals import ProposalResult, evaluate_proposals

__all__ = [
    "FP_TYPES",
    "PREDICTION_FORMATS",
    "PROTOCOLS",
    "DurationBreakdown",
    "EvalResult",
    "FalsePositiveBreakdown",
    "ProposalResult",
    "VideoIdResolver",
    "default_tiou",
    "duration_breakdown",
    "evaluate",
    "evaluate_proposals",
    "false_positive_breakdown",
    "load_blocked",
    "load_predictions",
    "parse_tiou",
    "write_activitynet_json",
    "write_thumos_txt",
]
