"""`tadkit eval`: score a detection (or proposal) file with an official protocol.

Contract other tools rely on (keep it):
``tadkit eval --gt GT --pred PRED --protocol {activitynet,thumos14} --subset NAME
[--tiou 0.5:0.95:0.05 | --tiou 0.1,0.2,...] [--blocked FILE] [--format table|json] [--strict]``;
``--format json`` prints exactly one JSON object on stdout with at least ``protocol, subset, tiou,
mAP, average_mAP, per_class``.
"""

from __future__ import annotations

import argparse
import json
import sys

from tadkit.errors import TadkitError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="score detections with the official ActivityNet or THUMOS14 protocol",
        description="Score a detection file against ground truth with an official protocol "
        "(activitynet = Evaluation/eval_detection.py, thumos14 = TH14evalDet.m).",
    )
    parser.add_argument("--gt", required=True, help="ground truth (any format load_annotations reads)")
    parser.add_argument("--pred", required=True, help="detections: ActivityNet JSON, THUMOS txt or CSV")
    parser.add_argument("--protocol", required=True, choices=["activitynet", "thumos14"])
    parser.add_argument("--subset", required=True, help="GT subset, e.g. validation or test")
    parser.add_argument(
        "--tiou",
        default=None,
        help="tIoU thresholds: start:end:step (end inclusive) or a comma list; "
        "default 0.5:0.95:0.05 (activitynet) / 0.1:0.7:0.1 (thumos14)",
    )
    parser.add_argument("--blocked", default=None, help="JSON list of video ids to drop (GT and predictions)")
    parser.add_argument("--format", choices=["table", "json"], default="table", help="stdout format")
    parser.add_argument("--strict", action="store_true", help="fail on predictions for unknown labels/videos")
    parser.add_argument("--gt-format", default=None, help="force the GT format (default: detected)")
    parser.add_argument("--pred-format", choices=["activitynet", "thumos", "csv"], default=None,
                        help="force the prediction format (default: from extension/content)")
    parser.add_argument("--unknown-videos", choices=["fp", "drop"], default="fp",
                        help="predictions on videos without GT: false positives (official) or dropped")
    parser.add_argument("--per-class", action="store_true", help="table output: add AP per class")
    parser.add_argument("--analysis", action="store_true",
                        help="add mAP per GT duration (A2Net Table I bins) and the DETAD false-positive breakdown")
    parser.add_argument("--proposals", action="store_true",
                        help="class-agnostic AR@AN and AUC (eval_proposal.py) instead of detection mAP")
    parser.add_argument("--max-proposals", type=float, default=100,
                        help="--proposals: largest average number of proposals per video (default 100)")
    parser.add_argument("--out", default=None, help="also write the full result as JSON to this file (atomic)")
    parser.set_defaults(func=run)


def _per_class_table(result) -> str:
    width = max([5] + [len(c) for c in result.per_class])
    head = f"{'class':<{width}} " + " ".join(f"{t:>6.2f}" for t in result.tiou)
    rows = [f"{c:<{width}} " + " ".join(f"{100 * v:>6.2f}" for v in aps) for c, aps in result.per_class.items()]
    return "\n".join([head] + rows)


def run(args: argparse.Namespace) -> int:
    from tadkit.data.annotations import load_annotations
    from tadkit.evaluation import (
        duration_breakdown,
        evaluate,
        evaluate_proposals,
        false_positive_breakdown,
        load_predictions,
        parse_tiou,
    )
    from tadkit.utils.io import write_json

    tiou = parse_tiou(args.tiou) if args.tiou is not None else None  # bad specs fail before any I/O
    gt = load_annotations(args.gt, format=args.gt_format, subset=args.subset)
    pred = load_predictions(args.pred, format=args.pred_format, class_ids=gt.external_ids or None)

    if args.proposals:
        result = evaluate_proposals(gt, pred, tiou_thresholds=tiou, max_avg_nr_proposals=args.max_proposals,
                                    subset=args.subset, blocked=args.blocked)
        payload = result.to_dict()
        text = result.format_table()
    else:
        result = evaluate(gt, pred, args.protocol, tiou_thresholds=tiou, subset=args.subset,
                          blocked=args.blocked, strict=args.strict, unknown_videos=args.unknown_videos)
        payload = result.to_dict()
        text = result.format_table()
        if args.per_class:
            text += "\n" + _per_class_table(result)
        if args.analysis:
            durations = duration_breakdown(gt, pred, protocol=args.protocol, subset=args.subset,
                                           blocked=args.blocked, unknown_videos=args.unknown_videos)
            fps = false_positive_breakdown(gt, pred, protocol=args.protocol, tiou_thresholds=result.tiou,
                                           subset=args.subset, blocked=args.blocked,
                                           unknown_videos=args.unknown_videos)
            payload["duration_breakdown"] = durations.to_dict()
            payload["false_positive_breakdown"] = fps.to_dict()
            text += "\n\n" + durations.format_table() + "\n\n" + fps.format_table()

    if args.out:
        try:
            write_json(args.out, payload)
        except OSError as error:
            raise TadkitError(f"cannot write result ({error.strerror})", file=args.out, field="out") from None
    if args.format == "json":
        sys.stdout.write(json.dumps(payload) + "\n")
    else:
        print(text)
    return 0
