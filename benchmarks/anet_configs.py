"""The seven shipped ActivityNet configs on the CPU-sized ActivityNet-like set, same data, same evaluator.

Generates the set of docs/synthetic.md (``tadkit data synth --preset activitynet --seed 0 --dim 256
--videos 60 --classes 20``: 60 training + 60 validation videos), trains every ActivityNet config on
``training`` with only what the data forces overridden (annotation / feature paths, ``in_dim``, the class
count of the class-wise configs) and a stated schedule, runs `tadkit test`'s pipeline on the last
checkpoint (``validation``, activitynet protocol, tIoU 0.5:0.95 as shipped) and prints per config:
average mAP, mAP@0.5, #detections, the share of zero-length detections, the schedule and the training time.

Widths, batch sizes, learning rates, resampling and post-processing are the shipped ones. Only the
length of training is changed (``--schedule``; LR milestones scaled with it, as ``tadkit demo`` does);
it is picked from a timing dry run, never from test scores (there is no other split to pick on).

The class-agnostic proposal configs (``a2net/anet13``, ``afsd/anet13_features``) take their labels from
a video classifier. They are tested twice: ``classifier`` = the ``video_scores.json`` that `tadkit
test` of ``--classifier`` (default ``acrnet/anet13``) wrote on the same validation videos (what
docs/synthetic.md tells users to do), and ``oracle`` = each video's ground-truth class at score 1
(measures the proposals alone). The classifier's top-1 accuracy on the validation videos is printed.

    nice -n 5 python benchmarks/anet_configs.py --out runs/anet_configs [--dry-run]
        [--configs a2net/anet13 ...] [--schedule ecm/anet13=12 acrnet/anet13=300 ...]
        [--classifier acrnet/anet13]

``--dry-run`` trains every config for one epoch (ACRNet: ``--dry-run-iterations`` iterations) into
OUT/dry_run/ and prints the same table: the per-epoch times to choose schedules from. Re-running
reuses finished runs (each run directory, named after its schedule, resumes; a finished one only
re-tests), so their timing columns are those of the first run. Writes OUT/anet_configs.json (dry run:
OUT/dry_run/anet_configs.json). Report what it prints, whatever it says.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "tadkit" / "configs"
CLASSES = 20
# Run order: the classifier config (acrnet/anet13) before the class-agnostic ones that read its file;
# acrnet/anet12 last: with the class count overridden it resolves to the same config as acrnet/anet13
# (they differ only in num_classes), so it is the row to lose when a run is cut short.
ALL_CONFIGS = ("ecm/anet12", "ecm/anet13", "acrnet/anet13", "a2net/anet13", "afsd/anet13_features",
               "a2net/anet13_classwise", "acrnet/anet12")
CLASS_AGNOSTIC = ("a2net/anet13", "afsd/anet13_features")
ITERATION_BASED = ("acrnet/anet12", "acrnet/anet13")  # their schedule is train.iterations
# Default schedules (epochs; ACRNet iterations), chosen from timing alone so that the whole run fits in
# about an hour on the shared 2-core machine under load (dry run: ECM ~35 s per epoch, ACRNet ~0.35 s per
# iteration, A2Net ~14 s and AFSD ~72 s per epoch; twice that once more jobs ran): A2Net as shipped (24
# epochs), ECM 12 of its 36 epochs (one step each: 60 videos < batch 128), ACRNet 500 of its 2000
# iterations, AFSD 8 of its 16 epochs (the length of docs/afsd.md's earlier measurement on this set).
SCHEDULES: dict[str, int] = {
    "ecm/anet12": 12, "ecm/anet13": 12, "acrnet/anet12": 500, "acrnet/anet13": 500,
    "a2net/anet13_classwise": 24, "a2net/anet13": 24, "afsd/anet13_features": 8,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/anet_configs")
    parser.add_argument("--videos", type=int, default=60, help="synthetic videos per subset (default 60)")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--classes", type=int, default=CLASSES)
    parser.add_argument("--seed", type=int, default=0, help="data seed (training seeds are the configs')")
    parser.add_argument("--configs", nargs="+", default=list(ALL_CONFIGS), choices=list(ALL_CONFIGS))
    parser.add_argument("--schedule", nargs="+", default=[], metavar="CONFIG=N",
                        help="epochs (ACRNet: iterations) per config, replacing the defaults")
    parser.add_argument("--classifier", default="acrnet/anet13", choices=[c for c in ALL_CONFIGS if c not in CLASS_AGNOSTIC],
                        help="the weakly supervised config whose video_scores.json labels the class-agnostic ones")
    parser.add_argument("--dry-run", action="store_true", help="one epoch per config (timing only), into OUT/dry_run")
    parser.add_argument("--dry-run-iterations", type=int, default=20, help="ACRNet iterations of the dry run")
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def schedules(args: argparse.Namespace) -> dict[str, int]:
    """Schedule per config: the defaults, ``--schedule`` items, or the dry run's one epoch."""
    chosen = dict(SCHEDULES)
    for item in args.schedule:
        name, _, value = item.partition("=")
        if name not in chosen or not value.isdigit() or int(value) < 1:
            raise SystemExit(f"--schedule {item!r}: expected CONFIG=N with CONFIG one of {', '.join(ALL_CONFIGS)}")
        chosen[name] = int(value)
    if args.dry_run:
        chosen = {name: args.dry_run_iterations if name in ITERATION_BASED else 1 for name in chosen}
    return chosen


def ensure_data(out: Path, args: argparse.Namespace) -> Path:
    """The docs' command, run through the CLI; then the oracle classifier file (GT class at score 1)."""
    from tadkit.cli import main as cli

    data = out / f"data_v{args.videos}_d{args.dim}_c{args.classes}_s{args.seed}"
    if not (data / "annotations.json").exists():
        print(f"generating: tadkit data synth --preset activitynet --seed {args.seed} --dim {args.dim} "
              f"--videos {args.videos} --classes {args.classes} -> {data}", flush=True)
        command = ["data", "synth", "--out", str(data), "--preset", "activitynet", "--seed", str(args.seed),
                   "--dim", str(args.dim), "--videos", str(args.videos), "--classes", str(args.classes)]
        if cli(command) != 0:
            raise SystemExit("tadkit data synth failed")
    oracle = data / "oracle_video_scores.json"
    if not oracle.exists():
        from tadkit.data.annotations import load_annotations
        from tadkit.postprocess.video_classifier import VideoScores
        from tadkit.utils.io import write_json
        import numpy as np

        gt = load_annotations(data / "annotations.json", subset="validation")
        scores = {}
        for vid, video in gt.videos.items():
            row = np.zeros(len(gt.classes))
            row[[gt.classes.index(s.label) for s in video.segments]] = 1.0
            scores[vid] = row
        write_json(oracle, VideoScores(list(gt.classes), scores).to_dict())
    return data


def schedule_overrides(name: str, length: int) -> tuple[list[str], str]:
    """``train.*`` overrides for ``length`` epochs (iterations for ACRNet), milestones scaled; a label."""
    from tadkit.engine.config import load_config

    if name in ITERATION_BASED:  # cosine over train.iterations: scales by itself
        return [f"train.iterations={length}"], f"{length} it"
    config = load_config(CONFIGS / f"{name}.yaml")
    milestones = [max(1, round(length * e / config.train.epochs)) for e in config.train.lr_decay_epochs]
    decay = f", decay at {milestones}" if milestones and milestones[0] < length else ""
    return [f"train.epochs={length}", f"train.lr_decay_epochs={milestones}"], f"{length} ep{decay}"


def data_overrides(name: str, data: Path, args: argparse.Namespace) -> list[str]:
    """What the data forces (docs/synthetic.md, "The ActivityNet configs on other features")."""
    overrides = [f"data.annotations={data / 'annotations.json'}", f"data.features={data / 'features'}",
                 f"model.kwargs.in_dim={args.dim}"]
    if name in CLASS_AGNOSTIC:  # training ignores the classifier; the oracle file always exists
        return overrides + [f"test.video_classifier={data / 'oracle_video_scores.json'}"]
    overrides.append(f"model.kwargs.num_classes={args.classes}")
    if name.startswith("acrnet/") and args.classes == 20:
        # ACRNet's official rule puts the AvgPool1d(13) ActivityNet heads on iff num_classes != 20 (20 =
        # "THUMOS14"): a 20-class ActivityNet-like set has to keep them on explicitly.
        overrides.append("model.kwargs.avg_pool=true")
    return overrides


# Bookkeeping only: no evaluation during training, no extra checkpoints or event files.
QUIET = ["train.eval_every=0", "train.best_metric=null", "train.keep_checkpoints=0", "train.tensorboard=false"]


def score(outputs) -> dict[str, Any]:
    """Average mAP, mAP@0.5, counts of one `run_test` (activitynet protocol, the config's tIoUs)."""
    import numpy as np

    anet = outputs.report.results["activitynet"]
    tiou = [float(t) for t in anet.tiou]
    dets = outputs.dets
    return {
        "average": 100.0 * anet.average_mAP,
        "mAP@0.5": 100.0 * anet.mAP[tiou.index(0.5)] if 0.5 in tiou else None,
        "tiou": tiou,
        "mAP": [100.0 * m for m in anet.mAP],
        "detections": len(dets),
        "zero_length": float(np.mean(dets.end <= dets.start)) if len(dets) else None,
    }


def classifier_accuracy(scores_file: Path, data: Path) -> float:
    """Share of validation videos whose top-1 class in ``scores_file`` is one of their GT classes."""
    from tadkit.data.annotations import load_annotations
    from tadkit.postprocess.video_classifier import load_video_scores
    import numpy as np

    gt = load_annotations(data / "annotations.json", subset="validation")
    scores = load_video_scores(scores_file)
    hits = []
    for vid, video in gt.videos.items():
        row = scores.lookup(vid)
        hits.append(row is not None and scores.classes[int(np.argmax(row))] in {s.label for s in video.segments})
    return float(np.mean(hits))


def run_config(name: str, length: int, data: Path, out: Path, args: argparse.Namespace,
               classifier_file: Path | None) -> dict[str, Any]:
    from tadkit.engine.checkpoint import load_checkpoint_model
    from tadkit.engine.config import load_config
    from tadkit.engine.trainer import train
    from tadkit.pipeline import run_test

    budget, label = schedule_overrides(name, length)
    overrides = [*data_overrides(name, data, args), *QUIET, *budget]
    run_dir = out / name.replace("/", "__") / label.split(",")[0].replace(" ", "")
    config = load_config(CONFIGS / f"{name}.yaml", overrides)
    started = time.perf_counter()
    result = train(config, run_dir, resume=True, progress=not args.no_progress)
    wall = time.perf_counter() - started
    model, _ = load_checkpoint_model(result.last_checkpoint)
    row: dict[str, Any] = {"config": name, "schedule": label, "overrides": overrides,
                           "train_seconds": float(sum(h["seconds"] for h in result.history)),
                           "wall_seconds": wall, "steps": int(result.global_step), "tests": {}}
    progress = not args.no_progress
    if name not in CLASS_AGNOSTIC:
        outputs = run_test(model, config, run_dir / "test", progress=progress, html=False)
        row["tests"]["own labels"] = score(outputs)
        if "video_scores" in outputs.files:
            row["video_scores"] = str(outputs.files["video_scores"])
            row["classifier_top1"] = classifier_accuracy(outputs.files["video_scores"], data)
        return row
    labellers = {"oracle": data / "oracle_video_scores.json"}
    if classifier_file is not None:
        labellers = {f"classifier ({args.classifier})": classifier_file, **labellers}
    for which, scores_file in labellers.items():
        test_config = load_config(CONFIGS / f"{name}.yaml", [*overrides, f"test.video_classifier={scores_file}"])
        outputs = run_test(model, test_config, run_dir / ("test_oracle" if which == "oracle" else "test_classifier"),
                           progress=progress, html=False)
        row["tests"][which] = score(outputs)
    return row


def format_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| config | labels | schedule | average mAP | mAP@0.5 | detections | zero-length | train s |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for row in rows:
        for which, r in row["tests"].items():
            zero = "-" if r["zero_length"] is None else f"{100 * r['zero_length']:.1f} %"
            at05 = "-" if r["mAP@0.5"] is None else f"{r['mAP@0.5']:.1f}"
            lines.append(f"| `{row['config']}` | {which} | {row['schedule']} | {r['average']:.1f} | {at05} | "
                         f"{r['detections']:,} | {zero} | {row['train_seconds']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out).absolute()
    data = ensure_data(out, args)
    runs = out / "dry_run" if args.dry_run else out
    chosen = schedules(args)
    rows: list[dict[str, Any]] = []
    classifier_file: Path | None = None
    started = time.perf_counter()
    order = [c for c in ALL_CONFIGS if c in args.configs]
    if any(c in CLASS_AGNOSTIC for c in order) and args.classifier not in order:
        order.insert(0, args.classifier)  # its video_scores.json is needed
    for name in order:
        _, label = schedule_overrides(name, chosen[name])
        print(f"== {name} ({label})", flush=True)
        row = run_config(name, chosen[name], data, runs, args, classifier_file)
        if name == args.classifier:
            classifier_file = Path(row["video_scores"])
        rows.append(row)
        for which, r in row["tests"].items():
            print(f"   {which}: avg {r['average']:.1f}  mAP@0.5 {r['mAP@0.5']:.1f}  {r['detections']} detections "
                  f"({row['train_seconds']:.0f} s training, {row['wall_seconds']:.0f} s wall)", flush=True)
        print(format_table(rows), flush=True)

    total = time.perf_counter() - started
    print(f"\nactivitynet protocol (tIoU 0.5:0.95, average and @0.5, mAP %) on the {args.videos} validation videos of "
          f"`tadkit data synth --preset activitynet --seed {args.seed} --dim {args.dim} --videos {args.videos} "
          f"--classes {args.classes}`, trained on its {args.videos} training videos; total {total:.0f} s")
    print(format_table(rows))
    accuracy = {r["config"]: r["classifier_top1"] for r in rows if "classifier_top1" in r}
    print("video classifier top-1 accuracy on the validation videos (video_scores.json of `tadkit test`): "
          + ", ".join(f"{k} {100 * v:.0f} %" for k, v in accuracy.items()))

    from tadkit.utils.io import write_json

    write_json(runs / "anet_configs.json", {"args": vars(args), "schedules": chosen, "total_seconds": total,
                                             "rows": rows})
    print(f"written: {runs / 'anet_configs.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
