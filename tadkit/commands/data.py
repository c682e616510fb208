"""`tadkit data`: convert annotations to tadkit JSON, print dataset statistics (and `synth`, if present)."""

from __future__ import annotations

import argparse
import json
import sys

from tadkit.data.annotations import (
    FORMATS,
    ZERO_LENGTH_POLICIES,
    annotation_stats,
    format_stats,
    load_annotations,
    write_tadkit_json,
)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "data",
        help="annotation conversion and statistics",
        description="Read ground-truth annotations in any supported format; convert them or describe them.",
    )
    data_subparsers = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    parser.set_defaults(func=lambda args: _no_subcommand(parser))

    convert = data_subparsers.add_parser(
        "convert",
        help="convert annotations to tadkit JSON",
        description="Read annotations (format auto-detected) and write them as tadkit JSON (atomic write).",
    )
    convert.add_argument("input", metavar="IN", help="annotation file or directory")
    convert.add_argument("--out", required=True, metavar="OUT.json", help="tadkit JSON to write")
    _add_read_options(convert)
    convert.add_argument("--indent", type=int, default=None, help="pretty-print the JSON with this indent")
    convert.set_defaults(func=_convert)

    stats = data_subparsers.add_parser(
        "stats",
        help="videos/instances per subset and class, duration histograms",
        description="Print annotation statistics as tables (or JSON with --json).",
    )
    stats.add_argument("input", metavar="FILE", help="annotation file or directory")
    _add_read_options(stats)
    stats.add_argument("--json", action="store_true", help="print the statistics as JSON")
    stats.set_defaults(func=_stats)

    from tadkit.data.import_features import register_import_command

    register_import_command(data_subparsers)

    from tadkit.video.frames import register_frames_command

    register_frames_command(data_subparsers)

    try:  # `tadkit data synth` lives in another module that may not exist yet
        from tadkit.data.synthetic import register_synth_command
    except ImportError:
        pass
    else:
        register_synth_command(data_subparsers)


def _add_read_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=FORMATS, default=None, help="input format (default: auto-detect)")
    parser.add_argument("--subset", action="append", default=None, metavar="S",
                        help="keep only this subset (case-insensitive; repeatable)")
    parser.add_argument("--video-info", default=None, metavar="CSV",
                        help="video-info CSV with durations/fps/frames (evalkit, AFSD CSV, BSN)")
    parser.add_argument("--zero-length", choices=ZERO_LENGTH_POLICIES, default="keep",
                        help="segments with start == end: keep (default, as the official ActivityNet GT), "
                             "drop, or error")


def _load(args: argparse.Namespace):
    return load_annotations(args.input, format=args.format, subset=args.subset, video_info=args.video_info,
                            zero_length=args.zero_length)


def _no_subcommand(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _convert(args: argparse.Namespace) -> int:
    aset = _load(args)
    write_tadkit_json(aset, args.out, indent=args.indent)
    print(f"wrote {args.out}: {len(aset.videos)} videos, {aset.num_instances()} instances, "
          f"{aset.num_ambiguous()} ambiguous, {len(aset.classes)} classes (from {aset.format})")
    return 0


def _stats(args: argparse.Namespace) -> int:
    stats = annotation_stats(_load(args))
    if args.json:
        print(json.dumps(stats.to_dict(), indent=2))
    else:
        print(format_stats(stats))
    return 0
