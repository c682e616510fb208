"""`tadkit view TEST_DIR [--videos DIR] [--compare OTHER_TEST_DIR] [--out report.html]`: one HTML page.

A test directory is what `tadkit test` / `tadkit demo` write: ``results.json`` (detections),
``report.json`` (protocol, thresholds, method) and ``ground_truth.json`` (the GT the run was scored on).
Only files inside the given directories are read (or the ``--gt`` file the user names).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tadkit.errors import TadkitError

GROUND_TRUTH_FILE = "ground_truth.json"  # written by run_test beside report.json
REPORT_FILE = "report.json"
RESULTS_FILE = "results.json"
PAGE_FILE = "report.html"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "view", help="one self-contained HTML page to look at a run's detections",
        description="Writes one HTML file (CSS, JS and data inline; opens offline) showing a test run: mAP, "
        "per-class AP, per-duration mAP, DETAD false positives, and per video a timeline of GT vs detections "
        "with TP/FP at a tIoU picked on the page. See docs/view.md.",
    )
    parser.add_argument("test_dir", help="output directory of `tadkit test` / `tadkit demo`")
    parser.add_argument("--out", default=None, help=f"HTML file to write (default TEST_DIR/{PAGE_FILE})")
    parser.add_argument("--videos", default=None, metavar="VIDEO_DIR",
                        help="directory of the video files (<video id>.mp4 ...): the page plays them (relative path)")
    parser.add_argument("--compare", default=None, metavar="OTHER_TEST_DIR",
                        help="a second run on the same GT: per-class and per-video differences, paired bootstrap")
    parser.add_argument("--gt", default=None,
                        help=f"ground truth (default TEST_DIR/{GROUND_TRUTH_FILE}); needs --subset")
    parser.add_argument("--subset", default=None, help="GT subset (with --gt)")
    parser.add_argument("--max-per-video", type=int, default=None, metavar="N",
                        help="detections stored per video besides the true positives (default 50; 0 = no cap)")
    parser.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                        help="--compare: resamples of the paired bootstrap (default 1000)")
    parser.add_argument("--title", default=None, help="page title (default: the directory name)")
    parser.set_defaults(func=run)


@dataclass
class TestDir:
    """The pieces of a test directory the page needs."""

    __test__ = False
    path: Path
    report: dict[str, Any]
    results: Path

    @property
    def protocol(self) -> str:
        return str(self.report.get("primary_protocol") or "")

    @property
    def run_info(self) -> dict[str, Any]:
        """``report.json``'s ``run`` entry (method, annotation file, subset), {} when absent."""
        info = self.report.get("run")
        return info if isinstance(info, dict) else {}


def read_test_dir(path: str | Path) -> TestDir:
    """``report.json`` + ``results.json`` of a test directory, checked, or one clear error."""
    root = Path(path)
    if not root.is_dir():
        raise TadkitError("not a directory (give the --out directory of `tadkit test` or `tadkit demo`)",
                          file=str(root))
    report_path, results = root / REPORT_FILE, root / RESULTS_FILE
    for needed in (report_path, results):
        if not needed.is_file():
            raise TadkitError("missing: not a `tadkit test` / `tadkit demo` output directory", file=str(needed))
    try:
        report = json.loads(report_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise TadkitError(f"not valid JSON ({error})", file=str(report_path)) from None
    protocols = report.get("protocols") if isinstance(report, dict) else None
    primary = report.get("primary_protocol") if isinstance(report, dict) else None
    if not isinstance(protocols, dict) or primary not in protocols:
        raise TadkitError("no 'protocols' entry for its 'primary_protocol'", file=str(report_path),
                          field="primary_protocol")
    for name, entry in protocols.items():
        tiou = entry.get("tiou") if isinstance(entry, dict) else None
        if name not in ("activitynet", "thumos14") or not isinstance(tiou, list) or \
                not all(isinstance(t, (int, float)) and 0 < t <= 1 for t in tiou):
            raise TadkitError("expected a protocol (activitynet / thumos14) with a 'tiou' list in (0, 1]",
                              file=str(report_path), field=f"protocols.{name}")
    return TestDir(path=root, report=report, results=results)


def load_ground_truth(test: TestDir, gt: str | None, subset: str | None):
    """The GT the run was scored on: ``--gt`` (+ ``--subset``), else the directory's ground_truth.json."""
    from tadkit.data.annotations import load_annotations

    if gt is not None:
        if subset is None:
            raise TadkitError("--gt needs --subset (the subset the run was scored on)", field="subset")
        return load_annotations(gt, subset=subset), subset
    stored = test.path / GROUND_TRUTH_FILE
    if not stored.is_file():
        raise TadkitError("missing (written by `tadkit test` since issue 21); give --gt FILE --subset NAME",
                          file=str(stored))
    run_info = test.run_info
    scored_subset = run_info.get("subset")
    valid = isinstance(scored_subset, str) or (isinstance(scored_subset, list)
                                                and all(isinstance(s, str) for s in scored_subset))
    return load_annotations(stored), scored_subset if valid else None


def gt_signature(gt, subset) -> list[tuple]:
    """Every (video, start, end, label) of the scored subset, sorted: equal for the same ground truth."""
    chosen = gt.subset(subset) if subset else gt
    return sorted((vid, s.start, s.end, s.label) for vid, v in chosen.videos.items() for s in v.segments)


def run_of(test: TestDir, gt) -> Any:
    from tadkit.evaluation import load_predictions
    from tadkit.viz.report_html import Run

    dets = load_predictions(test.results, class_ids=gt.external_ids or None)
    run_info = test.run_info
    method = run_info.get("method")
    return Run(name=test.path.name, dets=dets, method=str(method) if method else "", predictions=str(test.results))


def _stored_gt_note(test: TestDir) -> str:
    """What the page says about the GT: the stored copy and the file it came from (shown, never read)."""
    run_info = test.run_info
    origin = run_info.get("annotations")
    stored = str(test.path / GROUND_TRUTH_FILE)
    return f"{stored} (as scored; from {origin})" if isinstance(origin, str) and origin else stored


def run(args) -> int:
    from tadkit.viz.report_html import DEFAULT_CAP, ViewSpec, write_view

    test = read_test_dir(args.test_dir)
    gt, subset = load_ground_truth(test, args.gt, args.subset)
    runs = [run_of(test, gt)]
    if args.compare:
        other = read_test_dir(args.compare)
        if other.protocol != test.protocol:
            raise TadkitError(f"scored with {other.protocol}, {test.path} with {test.protocol}", file=str(other.path),
                              field="primary_protocol")
        if args.gt is None:  # each directory carries the GT it was scored on: they must agree
            other_gt, other_subset = load_ground_truth(other, None, None)
            if gt_signature(other_gt, other_subset) != gt_signature(gt, subset):
                raise TadkitError(f"scored on other ground truth than {test.path} (the runs are not comparable)",
                                  file=str(other.path / GROUND_TRUTH_FILE), field="compare")
        runs.append(run_of(other, gt))
    protocols = test.report["protocols"]
    spec = ViewSpec(gt=gt, protocol=test.protocol, subset=subset, tiou=list(protocols[test.protocol]["tiou"]),
                    other_protocols={k: list(v["tiou"]) for k, v in protocols.items() if k != test.protocol},
                    annotations=str(args.gt) if args.gt else _stored_gt_note(test),
                    title=args.title or f"tadkit view: {test.path.resolve().name}")
    cap = DEFAULT_CAP if args.max_per_video is None else (args.max_per_video or None)
    out = Path(args.out) if args.out else test.path / PAGE_FILE
    inputs = [d.path / name for d in [test] + ([other] if args.compare else [])
              for name in (REPORT_FILE, RESULTS_FILE, GROUND_TRUTH_FILE)] + ([Path(args.gt)] if args.gt else [])
    if any(out.resolve() == p.resolve() for p in inputs):
        raise TadkitError("--out would overwrite an input of the page", file=str(out), field="out")
    write_view(out, spec, runs, cap=cap, videos_dir=args.videos, compare_resamples=args.bootstrap)
    print(f"view: {out}", file=sys.stdout)
    return 0
