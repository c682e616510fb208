"""One table, same data, same evaluator: fully supervised A2Net, AFSD and ActionFormer vs weakly supervised ECM and ACRNet.

Generates `tadkit data synth --seed 0 --dim 256 --videos N` data (THUMOS-like timelines; train on the
`validation` subset, test on `test`), trains each method with its shipped CPU-sized synthetic config
(`configs/<method>/synthetic.yaml`; ACRNet twice: `mca_merge: official` and `concat`), runs `tadkit
test`'s pipeline on the last checkpoint and prints, under the `activitynet` protocol (eval_detection.py:
the evaluator ECM's and ACRNet's THUMOS14 numbers come from): mAP per tIoU 0.1..0.7, their average,
mAP@0.5 per GT-duration bin (ES <1.5 s, S <2.5, M <4.2, L <6.9, EL >=6.9) and the
training time (seconds per epoch over the training videos and per 100 optimizer steps; evaluation
excluded), and the same detections' mAP under the `thumos14` protocol (TH14evalDet, A2Net's evaluator).
A2Net, AFSD (feature variant, 12 epochs) and ActionFormer see the segments; ECM and ACRNet see only the
video-level labels.

    nice -n 10 python benchmarks/methods_table.py --out runs/methods_table [--videos 100]
        [--epochs 30] [--ecm-epochs 80] [--acrnet-iterations 300] [--methods a2net ecm acrnet acrnet_concat afsd actionformer]
        [--seeds 0,1,2]

``--seeds 0,1,2`` trains every method once per training seed (``train.seed``; runs in OUT/<method>/seed_<s>/)
and reports mean ± std over the seeds (sample std, n - 1) for every mAP and duration column, plus a
per-seed table; without it each method trains once with its config's seed (as before).

Defaults are the configs' own settings (A2Net 30 epochs, ECM 80 epochs, ACRNet 300 iterations, AFSD 12
epochs): ~15 min of training on 2 idle cores at --videos 100 (AFSD ~5.5 min of it, A2Net most of the
rest); --videos and --epochs (A2Net) trade accuracy for time and each row says what was run. Re-running reuses finished runs (each run
directory resumes; a finished one only re-tests), so their timing columns are those of the first run.
Writes OUT/methods_table.json. Report what it prints, whatever it says.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any


REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "tadkit" / "configs"
TIOU = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
# row name -> (config, extra overrides, supervision)
METHODS: dict[str, tuple[str, list[str], str]] = {
    "a2net": ("a2net/synthetic.yaml", [], "full"),
    "ecm": ("ecm/synthetic.yaml", [], "weak"),
    "acrnet": ("acrnet/synthetic.yaml", ["model.kwargs.mca_merge=official"], "weak"),
    "acrnet_concat": ("acrnet/synthetic.yaml", ["model.kwargs.mca_merge=concat"], "weak"),
    "afsd": ("afsd/synthetic.yaml", [], "full"),
    "actionformer": ("actionformer/synthetic.yaml", [], "full"),
}
# the model's input-width option where it is not `in_dim` (ActionFormer keeps the official name)
INPUT_DIM_KEYS = {"actionformer": "input_dim"}
LABELS = {"a2net": "A2Net (full)", "ecm": "ECM (weak)", "acrnet": "ACRNet official", "acrnet_concat": "ACRNet concat",
          "afsd": "AFSD (full)", "actionformer": "ActionFormer"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/methods_table")
    parser.add_argument("--videos", type=int, default=100, help="synthetic videos per subset (default 100)")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0, help="data seed (training seeds are the configs')")
    parser.add_argument("--epochs", type=int, default=None, help="A2Net epochs (default: its config, 30)")
    parser.add_argument("--ecm-epochs", type=int, default=None, help="ECM epochs (default: its config)")
    parser.add_argument("--acrnet-iterations", type=int, default=None, help="ACRNet iterations (default: its config)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seeds", default=None, metavar="S,S,...",
                        help="training seeds: one run per seed, table = mean ± std over them")
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def parse_seed_list(text: str | None) -> list[int] | None:
    if text is None:
        return None
    from tadkit.engine.seeds import parse_seeds

    return parse_seeds(text)


def ensure_data(out: Path, videos: int, dim: int, seed: int, progress: bool) -> Path:
    from tadkit.data.synthetic import SynthConfig, generate_dataset

    data = out / f"data_v{videos}_d{dim}_s{seed}"
    if not (data / "annotations.json").exists():
        print(f"generating synthetic data: {videos} + {videos} videos, {dim}-d, seed {seed} -> {data}", flush=True)
        generate_dataset(data, SynthConfig(seed=seed, dim=dim, videos=videos), progress=progress)
    return data


def budget_overrides(name: str, args: argparse.Namespace) -> list[str]:
    """The training length asked for on the command line (LR milestones scaled like `tadkit demo`)."""
    from tadkit.engine.config import load_config

    config = load_config(CONFIGS / METHODS[name][0])
    if name == "a2net" and args.epochs is not None:
        milestones = [max(1, int(args.epochs * e / config.train.epochs)) for e in config.train.lr_decay_epochs]
        return [f"train.epochs={args.epochs}", f"train.lr_decay_epochs={milestones}"]
    if name == "ecm" and args.ecm_epochs is not None:
        milestones = [max(1, int(args.ecm_epochs * e / config.train.epochs)) for e in config.train.lr_decay_epochs]
        return [f"train.epochs={args.ecm_epochs}", f"train.lr_decay_epochs={milestones}"]
    if name.startswith("acrnet") and args.acrnet_iterations is not None:
        return [f"train.iterations={args.acrnet_iterations}"]
    return []


def run_method(name: str, args: argparse.Namespace, data: Path, run_dir: Path, seed: int | None = None) -> dict[str, Any]:
    from tadkit.engine.checkpoint import load_checkpoint_model
    from tadkit.engine.config import load_config
    from tadkit.engine.trainer import train
    from tadkit.pipeline import run_test

    config_name, extra, supervision = METHODS[name]
    config = load_config(CONFIGS / config_name, [
        f"data.annotations={data / 'annotations.json'}",
        f"data.features={data / 'features'}",
        f"model.kwargs.{INPUT_DIM_KEYS.get(name, 'in_dim')}={args.dim}",
        f"test.tiou_thresholds={TIOU}",
        "test.protocol=activitynet",  # the evaluator ECM and ACRNet report with; thumos14 is scored too
        "train.eval_every=0",
        "train.best_metric=null",
        "train.keep_checkpoints=0",
        "train.tensorboard=false",
        *extra,
        *budget_overrides(name, args),
        *([f"train.seed={seed}"] if seed is not None else []),
    ])
    started = time.perf_counter()
    result = train(config, run_dir, resume=True, progress=not args.no_progress)
    wall = time.perf_counter() - started
    model, _ = load_checkpoint_model(result.last_checkpoint)
    outputs = run_test(model, config, run_dir / "test", progress=not args.no_progress)
    anet, thumos = outputs.report.results["activitynet"], outputs.report.results["thumos14"]
    bins = {b.name: (100.0 * b.mAP[0], b.num_gt) for b in outputs.report.durations.bins}

    # Training time from the history (optimizer steps only; evaluation is off and would be excluded anyway).
    seconds = float(sum(h["seconds"] for h in result.history))
    steps = int(result.global_step)
    if config.train.iterations:  # an epoch = one pass over the training videos
        per_step = seconds / max(steps, 1)
        per_epoch = per_step * math.ceil(len(load_subset_ids(config)) / config.train.batch_size)
        length = f"{steps} it"
    else:
        epochs = max(len(result.history), 1)
        per_epoch = seconds / epochs
        per_step = seconds / max(steps, 1)
        length = f"{result.epoch} ep"
    return {
        "supervision": supervision,
        "tiou": [float(t) for t in anet.tiou],
        "mAP": [100.0 * m for m in anet.mAP],
        "average": 100.0 * anet.average_mAP,
        "mAP_thumos14": [100.0 * m for m in thumos.mAP],
        "average_thumos14": 100.0 * thumos.average_mAP,
        "per_duration": bins,
        "seconds_per_epoch": per_epoch,
        "seconds_per_100_steps": 100.0 * per_step,
        "train_seconds": seconds,
        "wall_seconds": wall,
        "length": length,
        "detections": len(outputs.dets),
    }


def load_subset_ids(config) -> list[str]:
    """Video ids of the config's training subset (windows-based methods count videos, not windows)."""
    from tadkit.data.annotations import load_annotations

    annotations = load_annotations(config.data.annotations, config.data.annotation_format)
    return list(annotations.subset(config.data.subset_train).videos)


MEAN_FIELDS = ("mAP", "average", "mAP_thumos14", "average_thumos14", "seconds_per_epoch", "seconds_per_100_steps",
               "train_seconds", "wall_seconds")


def aggregate_seeds(per_seed: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """One method's rows over seeds -> the same fields as means, plus ``<field>_std`` (n - 1) and the rows."""
    import numpy as np

    rows = [per_seed[s] for s in sorted(per_seed)]
    out: dict[str, Any] = {"supervision": rows[0]["supervision"], "length": rows[0]["length"],
                           "tiou": rows[0]["tiou"], "seeds": sorted(per_seed), "per_seed": per_seed,
                           "detections": float(np.mean([r["detections"] for r in rows]))}
    ddof = 1 if len(rows) > 1 else 0
    for key in MEAN_FIELDS:
        values = np.asarray([r[key] for r in rows], dtype=float)
        out[key] = values.mean(axis=0).tolist()
        out[f"{key}_std"] = values.std(axis=0, ddof=ddof).tolist()
    bins = list(rows[0]["per_duration"])
    out["per_duration"] = {b: (float(np.mean([r["per_duration"][b][0] for r in rows])), rows[0]["per_duration"][b][1])
                           for b in bins}
    out["per_duration_std"] = {b: float(np.std([r["per_duration"][b][0] for r in rows], ddof=ddof)) for b in bins}
    return out


def format_seed_table(results: dict[str, dict[str, Any]]) -> str:
    """mean±std over seeds per cell (activitynet protocol), then the thumos14 protocol likewise."""
    first = next(iter(results.values()))
    bins = list(first["per_duration"])
    head = (f"{'method':<17}{'train':>8}" + "".join(f"{t:>11.1f}" for t in TIOU) + f"{'avg':>11}  |"
            + "".join(f"{b:>11}" for b in bins))
    lines = [f"mean±std over seeds {first['seeds']}", head, "-" * len(head)]
    cell = lambda m, s: f"{m:>5.1f}±{s:<4.1f}"  # noqa: E731
    for name, r in results.items():
        lines.append(f"{LABELS[name]:<17}{r['length']:>8}" + "".join(f"{cell(m, s):>11}" for m, s in zip(r["mAP"], r["mAP_std"]))
                     + f"{cell(r['average'], r['average_std']):>11}  |"
                     + "".join(f"{cell(r['per_duration'][b][0], r['per_duration_std'][b]):>11}" for b in bins))
    lines.append("same detections under the thumos14 protocol:")
    for name, r in results.items():
        lines.append(f"{LABELS[name]:<17}{r['length']:>8}"
                     + "".join(f"{cell(m, s):>11}" for m, s in zip(r["mAP_thumos14"], r["mAP_thumos14_std"]))
                     + f"{cell(r['average_thumos14'], r['average_thumos14_std']):>11}")
    lines.append("per seed (activitynet avg / thumos14 avg):")
    for name, r in results.items():
        lines.append(f"{LABELS[name]:<17}" + "  ".join(f"seed {s}: {row['average']:.1f} / {row['average_thumos14']:.1f}"
                                                     for s, row in r["per_seed"].items()))
    return "\n".join(lines)


def format_table(results: dict[str, dict[str, Any]]) -> str:
    first = next(iter(results.values()))
    bins = list(first["per_duration"])
    head = (f"{'method':<17}{'sup':>5}{'train':>8}" + "".join(f"{t:>6.1f}" for t in TIOU) + f"{'avg':>6}  |"
            + "".join(f"{b:>6}" for b in bins) + "  |" + f"{'s/ep':>7}{'s/100it':>8}")
    lines = [head, "-" * len(head)]
    for name, r in results.items():
        lines.append(
            f"{LABELS[name]:<17}{r['supervision']:>5}{r['length']:>8}" + "".join(f"{m:>6.1f}" for m in r["mAP"])
            + f"{r['average']:>6.1f}  |" + "".join(f"{r['per_duration'][b][0]:>6.1f}" for b in bins)
            + "  |" + f"{r['seconds_per_epoch']:>7.1f}{r['seconds_per_100_steps']:>8.1f}")
    counts = "  ".join(f"{b} {first['per_duration'][b][1]}" for b in bins)
    lines.append(f"(#GT per bin: {counts})")
    lines.append("same detections under the thumos14 protocol (TH14evalDet: GT-driven matching, no interpolation):")
    for name, r in results.items():
        lines.append(f"{LABELS[name]:<17}{r['supervision']:>5}{r['length']:>8}"
                     + "".join(f"{m:>6.1f}" for m in r["mAP_thumos14"]) + f"{r['average_thumos14']:>6.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    out = Path(args.out).absolute()
    data = ensure_data(out, args.videos, args.dim, args.seed, not args.no_progress)
    results: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    seeds = parse_seed_list(args.seeds)
    table = format_table if seeds is None else format_seed_table
    for name in args.methods:
        budget = " ".join(budget_overrides(name, args)) or "config defaults"
        print(f"== {LABELS[name]} ({METHODS[name][0]} {' '.join(METHODS[name][1])}; {budget})", flush=True)
        per_seed = {}
        for seed in seeds or [None]:
            run_dir = out / name if seed is None else out / name / f"seed_{seed}"
            r = per_seed[seed] = run_method(name, args, data, run_dir, seed)
            print(f"   {'' if seed is None else f'seed {seed}: '}mAP@0.5 {r['mAP'][4]:.1f}  avg {r['average']:.1f}  "
                  f"({r['length']}, {r['train_seconds']:.0f} s training, {r['wall_seconds']:.0f} s wall)", flush=True)
        results[name] = per_seed[None] if seeds is None else aggregate_seeds(per_seed)
        print(table(results), flush=True)

    print(f"\nactivitynet protocol (eval_detection.py, the evaluator of the ECM and ACRNet papers), mAP % on {args.videos} synthetic test videos "
          f"(data seed {args.seed}, {args.dim}-d; trained on the {args.videos} validation videos); "
          f"ES..EL: mAP@0.5 per GT duration; s/ep, s/100it: training seconds; total {time.perf_counter() - started:.0f} s")
    print(table(results))
    print("published (real THUMOS14, I3D features), @0.5 / avg 0.1:0.7: A2Net 45.5 / 47.0 | ECM 29.1 / 37.4 | "
          "ACRNet 37.0 / 47.5 (ACRNet: its own protocol variant, test-set model selection) | "
          "AFSD 55.5 @0.5 / 52.0 avg 0.3:0.7 (RGB+flow, end to end) | ActionFormer 71.0 @0.5 / 66.8 avg 0.3:0.7")

    from tadkit.utils.io import write_json

    write_json(out / "methods_table.json", {"args": vars(args), "tiou": TIOU, "results": results})
    print(f"written: {out / 'methods_table.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
