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

import numpy as np

from tadkit.errors import TadkitError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="score detections with the official ActivityNet or THUMOS14 protocol",
        description="Score a detection file against ground truth with an official protocol "
        "(activitynet = Evaluation/eval_detection.py, thumos14 = TH14evalDet.m).",
    )
    parser.add_argument("--gt", required=True, help="ground truth (any format load_annotations reads)")
    parser.add_argument("--pred", default=None,
                        help="detections: ActivityNet JSON, THUMOS txt or CSV (required unless --compare)")
    parser.add_argument("--protocol", default=None, choices=["activitynet", "thumos14"],
                        help="required unless --preset/--all-presets/--duration-bins a2net-table1/--proposals")
    parser.add_argument("--subset", required=True, help="GT subset, e.g. validation or test")
    parser.add_argument(
        "--tiou",
        default=None,
        help="tIoU thresholds: start:end:step (end inclusive) or a comma list; "
        "default 0.5:0.95:0.05 (activitynet) / 0.1:0.7:0.1 (thumos14)",
    )
    parser.add_argument("--blocked", default=None,
                        help="JSON list of video ids to drop (GT and predictions). The official ActivityNet "
                        "eval_detection.py / eval_proposal.py drop blocked videos by default (list fetched from a "
                        "dead server); pass ../shared/data/activitynet/v1.3/blocked_videos.json for parity")
    parser.add_argument("--format", choices=["table", "json"], default="table", help="stdout format")
    parser.add_argument("--strict", action="store_true",
                        help="fail on predictions for unknown labels/videos and on reversed segments (end < start)")
    parser.add_argument("--gt-format", default=None, help="force the GT format (default: detected)")
    parser.add_argument("--pred-format", choices=["activitynet", "thumos", "csv"], default=None,
                        help="force the prediction format (default: from extension/content)")
    parser.add_argument("--unknown-videos", choices=["fp", "drop"], default="fp",
                        help="predictions on videos without GT: false positives (official) or dropped")
    parser.add_argument("--per-class", action="store_true", help="table output: add AP per class")
    parser.add_argument("--analysis", action="store_true",
                        help="add mAP per GT-duration bin and the DETAD false-positive breakdown; the bins follow "
                        "--duration-bins (default 'seconds': fixed second ranges ES..EL)")
    parser.add_argument("--proposals", action="store_true",
                        help="class-agnostic AR@AN and AUC (eval_proposal.py) instead of detection mAP; reads the "
                        "official proposal format (no label). Official parity on ActivityNet needs --blocked")
    parser.add_argument("--max-proposals", type=float, default=100,
                        help="--proposals: largest average number of proposals per video (default 100)")
    parser.add_argument("--out", default=None, help="also write the full result as JSON to this file (atomic)")
    parser.add_argument("--html", default=None, metavar="REPORT_HTML",
                        help="also write the `tadkit view` page of GT + predictions (one offline HTML file; "
                        "with --compare: both runs side by side); see docs/view.md")
    parser.add_argument("--videos", default=None, metavar="VIDEO_DIR",
                        help="--html: directory of the video files, played on the page")
    _add_protocol_arguments(parser)
    uncertainty = parser.add_argument_group("uncertainty (bootstrap over videos)")
    uncertainty.add_argument("--bootstrap", type=int, default=None, metavar="N",
                             help="add a confidence interval to every mAP from N resamples of the videos")
    uncertainty.add_argument("--compare", nargs=2, default=None, metavar=("PRED_A", "PRED_B"),
                             help="paired bootstrap test of B against A (same resampled videos); "
                             "N from --bootstrap, default 1000")
    uncertainty.add_argument("--seed", type=int, default=0, help="seed of the resampling (default 0)")
    uncertainty.add_argument("--confidence", type=float, default=0.95, help="interval level (default 0.95)")
    parser.set_defaults(func=run)


def _per_class_table(result) -> str:
    width = max([5] + [len(c) for c in result.per_class])
    head = f"{'class':<{width}} " + " ".join(f"{t:>6.2f}" for t in result.tiou)
    rows = [f"{c:<{width}} " + " ".join(f"{100 * v:>6.2f}" for v in aps) for c, aps in result.per_class.items()]
    return "\n".join([head] + rows)


def run(args: argparse.Namespace) -> int:
    from tadkit.data.annotations import load_annotations
    from tadkit.evaluation import (
        evaluate,
        evaluate_proposals,
        false_positive_breakdown,
        load_predictions,
        parse_tiou,
    )
    from tadkit.evaluation.analysis import duration_bins
    from tadkit.utils.io import write_json

    tiou = parse_tiou(args.tiou) if args.tiou is not None else None  # bad specs fail before any I/O
    if args.html and (args.proposals or args.preset or args.all_presets or args.compare_bins
                      or (args.duration_bins and not args.analysis)):
        raise TadkitError("--html shows detections scored with --protocol (not --proposals / --preset / "
                          "--all-presets / --duration-bins / --compare-bins)", field="html")
    if args.compare is not None:
        return _run_compare(args, tiou)
    if args.pred is None:
        raise TadkitError("--pred is required (or --compare PRED_A PRED_B)", field="pred")
    if _protocol_missing(args):  # before a million predictions are parsed
        raise TadkitError("--protocol is required (or use --preset / --all-presets)", field="protocol")
    gt = load_annotations(args.gt, format=args.gt_format, subset=args.subset)
    pred = load_predictions(args.pred, format=args.pred_format, class_ids=gt.external_ids or None,
                            strict=args.strict, require_label=not args.proposals)
    gt, pred, special = _paper_protocols(args, gt, pred, tiou)
    result = None

    if special is not None:
        payload, text = special
    elif args.proposals:
        result = evaluate_proposals(gt, pred, tiou_thresholds=tiou, max_avg_nr_proposals=args.max_proposals,
                                    subset=args.subset, blocked=args.blocked)
        payload = result.to_dict()
        text = result.format_table()
    elif args.bootstrap is not None:
        from tadkit.evaluation.bootstrap import bootstrap

        result, boot = bootstrap(gt, pred, args.protocol, n_resamples=args.bootstrap, seed=args.seed,
                                 confidence=args.confidence, tiou_thresholds=tiou, subset=args.subset,
                                 blocked=args.blocked, strict=args.strict, unknown_videos=args.unknown_videos)
        payload = result.to_dict()
        payload["bootstrap"] = boot.to_dict()
        text = result.format_table() + "\n" + boot.format_table(result.tiou)
    else:
        result = evaluate(gt, pred, args.protocol, tiou_thresholds=tiou, subset=args.subset,
                          blocked=args.blocked, strict=args.strict, unknown_videos=args.unknown_videos)
        payload = result.to_dict()
        text = result.format_table()
        if args.per_class:
            text += "\n" + _per_class_table(result)
        if args.analysis:
            durations = duration_bins(gt, pred, preset=args.duration_bins or "seconds", protocol=args.protocol,
                                      subset=args.subset, blocked=args.blocked, unknown_videos=args.unknown_videos)
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
    if args.html:
        _write_html(args, gt, [(args.pred, pred, payload.get("bootstrap"))], tiou)
    for warning in getattr(result, "warnings", None) or []:
        print(f"tadkit eval: warning: {warning}", file=sys.stderr)
    if args.format == "json":
        sys.stdout.write(json.dumps(payload) + "\n")
    else:
        print(text)
    return 0


# ----------------------------------------------------------------------------------------------
# paper protocols and analyses (issue 13): presets, Ambiguous deletion, named video lists,
# duration-bin presets and the Fig. 1 style comparison
# ----------------------------------------------------------------------------------------------
def _add_protocol_arguments(parser: argparse.ArgumentParser) -> None:
    from tadkit.evaluation.analysis import DURATION_BIN_PRESETS
    from tadkit.evaluation.presets import PROTOCOL_PRESETS, VIDEO_LISTS

    group = parser.add_argument_group(
        "paper protocols", "score exactly as a paper's official code does: THUMOS14 test (--gt = evalkit directory) or, "
        "with the -anet presets, ActivityNet validation; a preset must fit the ground truth's dataset")
    group.add_argument("--preset", choices=list(PROTOCOL_PRESETS), default=None,
                       help="evaluator, tIoU set, video list and Ambiguous rule of one paper's official code")
    group.add_argument("--all-presets", action="store_true",
                       help="one table: the same detections under every paper's protocol for the ground truth's "
                       "dataset (THUMOS14 or ActivityNet)")
    group.add_argument("--drop-ambiguous", action="store_true",
                       help="delete predictions overlapping a THUMOS14 Ambiguous segment first (ACRNet/D2-Net)")
    group.add_argument("--video-list", choices=list(VIDEO_LISTS), default=None,
                       help="named THUMOS14 test list: drop the other videos (GT and predictions)")
    group.add_argument("--duration-bins", choices=list(DURATION_BIN_PRESETS), default=None,
                       help="rule of the per-GT-duration bins: 'seconds' (default, also for --analysis) = fixed "
                       "ranges ES <1.5 s, S 1.5-2.5, M 2.5-4.2, L 4.2-6.9, EL >=6.9 (the second ranges A2Net Table "
                       "I names); 'a2net-table1' = the A2Net authors' Table I analysis code exactly (equal-count "
                       "quintiles by rank, always the thumos14 protocol)")
    group.add_argument("--compare-bins", nargs="+", default=None, metavar="PRED",
                       help="more detection files to compare per duration bin with --pred (needs --plot)")
    group.add_argument("--labels", nargs="+", default=None,
                       help="legend labels for --pred and --compare-bins (default: file stems, run_dir/stem when "
                       "stems repeat)")
    group.add_argument("--plot", default=None, help="--compare-bins / --duration-bins: write the Fig. 1 style PNG")


def _protocol_missing(args: argparse.Namespace) -> bool:
    """No --protocol where one is needed (presets name their own; duration bins default to thumos14)."""
    return (args.protocol is None and not args.proposals and not (args.preset or args.all_presets)
            and not (args.duration_bins and not args.analysis or args.compare_bins))


def _paper_protocols(args: argparse.Namespace, gt, pred, tiou):
    """(gt, pred, None) to continue with the usual evaluation, or (gt, pred, (payload, text))."""
    from tadkit.evaluation import load_predictions
    from tadkit.evaluation.analysis import duration_bins
    from tadkit.evaluation.presets import (
        drop_ambiguous_overlaps,
        evaluate_all_presets,
        evaluate_preset,
        exclude_videos,
        format_presets_table,
        presets_to_dict,
        video_list,
    )

    if args.preset or args.all_presets:
        if args.preset and args.all_presets:
            raise TadkitError("give --preset or --all-presets, not both", field="preset")
        if args.preset:
            res = evaluate_preset(gt, pred, args.preset, subset=args.subset, strict=args.strict,
                                  blocked=args.blocked)
            payload, text = res.to_dict(), res.format_table()
            if args.per_class:
                text += "\n" + _per_class_table(res.result)
        else:
            results = evaluate_all_presets(gt, pred, subset=args.subset, blocked=args.blocked)
            payload, text = presets_to_dict(results), format_presets_table(results)
        return gt, pred, (payload, text)

    notes = []
    if args.drop_ambiguous:
        pred, deleted = drop_ambiguous_overlaps(gt, pred, subset=args.subset)
        notes.append(f"note: --drop-ambiguous deleted {deleted} predictions overlapping Ambiguous segments")
    if args.video_list:
        vl = video_list(args.video_list)
        gt = exclude_videos(gt, vl.exclude)
        drop = set(vl.exclude)
        pred = pred.select(np.array([v not in drop for v in pred.video.tolist()], dtype=bool))
        notes.append(f"note: video list {vl.name} ({vl.size} videos; {vl.source})")

    if args.duration_bins and not args.analysis or args.compare_bins:
        preset = args.duration_bins or "seconds"
        protocol = args.protocol or "thumos14"
        thresholds = tiou if tiou is not None else [0.5]
        files = [args.pred] + list(args.compare_bins or [])
        labels = args.labels or run_labels(files)
        if len(labels) != len(files):
            raise TadkitError(f"--labels needs {len(files)} names (one per detection file)", field="labels")
        if len(set(labels)) != len(labels):  # two files must not become one bar group
            raise TadkitError(f"two detection files share the label {_first_duplicate(labels)!r}; give --labels "
                              "with one distinct name per file", field="labels")
        breakdowns = {}
        for label, path in zip(labels, files):
            dets = pred if path == args.pred else load_predictions(path, format=args.pred_format,
                                                                   class_ids=gt.external_ids or None)
            breakdowns[label] = duration_bins(gt, dets, preset=preset, protocol=protocol, tiou_thresholds=thresholds,
                                              subset=args.subset, blocked=args.blocked,
                                              unknown_videos=args.unknown_videos)
        text = "\n\n".join(f"{label}:\n{b.format_table()}" if len(files) > 1 else b.format_table()
                            for label, b in breakdowns.items())
        payload = {"duration_bins": preset, "breakdowns": {k: b.to_dict() for k, b in breakdowns.items()}}
        if args.plot:
            from tadkit.viz.compare import plot_duration_comparison

            plot_duration_comparison(breakdowns, args.plot)
            text += f"\nplot: {args.plot}"
        elif args.compare_bins:
            raise TadkitError("--compare-bins draws a figure: give --plot OUT.png", field="plot")
        return gt, pred, (payload, "\n".join(notes + [text]))

    if notes:  # stderr: --format json keeps exactly one JSON object on stdout
        print("\n".join(notes), file=sys.stderr)
    return gt, pred, None


def run_labels(files: list[str]) -> list[str]:
    """A short legend name per detection file: its stem, or ``run_dir/stem`` when stems repeat
    (every run writes ``results.json``); duplicates left are the caller's to refuse."""
    from pathlib import Path

    paths = [Path(f) for f in files]
    stems = [p.stem for p in paths]
    if len(set(stems)) == len(stems):
        return stems
    return [f"{p.parent.name}/{p.stem}" if p.parent.name else p.stem for p in paths]


def _first_duplicate(labels: list[str]) -> str:
    seen: set[str] = set()
    return next(label for label in labels if label in seen or seen.add(label))


def _run_compare(args: argparse.Namespace, tiou) -> int:
    """``--compare A B``: B's result (the usual JSON fields) plus ``compare`` (paired bootstrap) and ``baseline``."""
    from tadkit.data.annotations import load_annotations
    from tadkit.evaluation import load_predictions
    from tadkit.evaluation.bootstrap import compare
    from tadkit.utils.io import write_json

    if args.proposals or args.analysis:
        raise TadkitError("--compare scores detections only (no --proposals / --analysis)", field="compare")
    if args.protocol is None:  # before two prediction files are parsed
        raise TadkitError("--protocol is required with --compare", field="protocol")
    gt = load_annotations(args.gt, format=args.gt_format, subset=args.subset)
    preds = [load_predictions(path, format=args.pred_format, class_ids=gt.external_ids or None, strict=args.strict)
             for path in args.compare]
    ra, rb, cmp = compare(gt, preds[0], preds[1], args.protocol, n_resamples=args.bootstrap or 1000, seed=args.seed,
                          confidence=args.confidence, tiou_thresholds=tiou, subset=args.subset, blocked=args.blocked,
                          strict=args.strict, unknown_videos=args.unknown_videos, names=tuple(args.compare))
    payload = rb.to_dict()
    payload["baseline"] = ra.to_dict()
    payload["compare"] = cmp.to_dict()
    if args.out:
        try:
            write_json(args.out, payload)
        except OSError as error:
            raise TadkitError(f"cannot write result ({error.strerror})", file=args.out, field="out") from None
    if args.html:
        _write_html(args, gt, [(path, dets, None) for path, dets in zip(args.compare, preds)], tiou)
    for result in (ra, rb):
        for warning in result.warnings:
            print(f"tadkit eval: warning: {warning}", file=sys.stderr)
    if args.format == "json":
        sys.stdout.write(json.dumps(payload) + "\n")
    else:
        print(f"A = {args.compare[0]}\n{ra.format_table()}\n\nB = {args.compare[1]}\n{rb.format_table()}\n\n"
              f"{cmp.format_table()}")
    return 0


def _write_html(args: argparse.Namespace, gt, runs: list, tiou) -> None:
    """``--html``: the `tadkit view` page of GT + these predictions (one run, or two to compare)."""
    from pathlib import Path

    from tadkit.viz.report_html import Run, ViewSpec, write_view

    spec = ViewSpec(gt=gt, protocol=args.protocol, subset=args.subset, blocked=args.blocked, tiou=tiou,
                    unknown_videos=args.unknown_videos, annotations=str(args.gt),
                    title=f"tadkit eval: {Path(runs[-1][0]).name}")
    write_view(args.html, spec, [Run(name=Path(path).name, dets=dets, predictions=str(path), bootstrap=boot)
                                 for path, dets, boot in runs],
               videos_dir=args.videos, compare_resamples=args.bootstrap or 1000)
    print(f"tadkit eval: wrote {args.html}", file=sys.stderr)
