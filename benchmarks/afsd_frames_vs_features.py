"""AFSD end to end from pixels vs AFSD on I3D features extracted from the same videos.

Same synthetic videos (`tadkit data synth --video --seed S --video-classes 5 --videos N`: train on
`validation`, test on `test`), same evaluator (activitynet protocol, tIoU 0.1:0.7), two inputs:

* **frames** — `tadkit data frames` (64 px, 10 fps) -> `afsd_e2e` with `afsd/synthetic_frames`: a
  quarter-width I3D trained from scratch with the head (128-frame clips, random 56 crops);
* **features** — `tadkit extract` with the real Kinetics-400 I3D (RGB, 16-frame stacks every
  `--step` frames at 10 fps; frames upsampled to 224) -> the feature variant `afsd` with
  `afsd/synthetic`'s optimisation, windows spanning the same 12.8 s (128 frames).

Needs the I3D weights (`tadkit weights i3d`; `--random-i3d` runs the pipeline with random weights, which
says nothing about accuracy). Re-running reuses data, frames, features and finished runs.

    nice -n 10 python benchmarks/afsd_frames_vs_features.py --out runs/afsd_frames_vs_features [--videos 40]

Prints one row per input (mAP per tIoU, average, training and extraction seconds) and writes
OUT/afsd_frames_vs_features.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

TIOU = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
SIZE = 64
CLASSES = 5
CLIP_FRAMES = 128  # the e2e clip: 12.8 s at 10 fps


def tadkit(*argv: str) -> None:
    from tadkit.cli import main

    code = main([str(a) for a in argv])
    if code != 0:
        sys.exit(f"tadkit {' '.join(map(str, argv))} failed with exit code {code}")


def scores(report_path: Path) -> dict[str, Any]:
    report = json.loads(report_path.read_text())
    result = report["protocols"]["activitynet"]
    return {"tiou": result["tiou"], "mAP": result["mAP"], "average_mAP": result["average_mAP"]}


def train_and_test(config: str, overrides: list[str], run: Path) -> tuple[dict[str, Any], float]:
    sets = [x for o in overrides for x in ("--set", o)]
    tadkit("train", config, *sets, "--out", run, "--resume", "--no-progress")  # a finished run is reused
    seconds = sum(e.get("seconds", 0.0) for e in json.loads((run / "history.json").read_text())["epochs"])
    tadkit("test", config, *sets, "--checkpoint", run / "last.pt", "--out", run / "test", "--no-progress", "--no-plots")
    return scores(run / "test" / "report.json"), seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/afsd_frames_vs_features")
    parser.add_argument("--videos", type=int, default=40, help="videos per subset (default 40, as the demo)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--step", type=int, default=16, help="frames between I3D feature stacks (default 16 = 1.6 s)")
    parser.add_argument("--random-i3d", action="store_true", help="random I3D weights (pipeline check only)")
    args = parser.parse_args()

    from tadkit.data.frames import FrameStore
    from tadkit.utils.io import write_json

    out = Path(args.out).absolute()
    data = out / "data"
    if not (data / "annotations.json").exists():
        tadkit("data", "synth", "--video", "--out", data, "--seed", args.seed, "--video-classes", CLASSES,
               "--videos", args.videos)
    tadkit("data", "frames", data / "videos", "--out", data / "frames", "--size", SIZE)
    common = [f"data.annotations={data / 'annotations.json'}", f"train.seed={args.seed}", "train.eval_every=0",
              "train.tensorboard=false"]

    rows: dict[str, Any] = {}
    scores_e2e, seconds = train_and_test("afsd/synthetic_frames", [*common, f"data.frames={data / 'frames'}"],
                                         out / "e2e")
    rows["frames (end to end, I3D x0.25 from scratch)"] = {**scores_e2e, "train_seconds": seconds}

    features = out / "features"
    started = time.perf_counter()
    extract = ["extract", data / "videos", "--out", features, "--fps", "10", "--stack", "16", "--step", args.step, "--batch", "4"]
    if args.random_i3d:
        import torch

        from tadkit.video.i3d import I3D, I3DConfig

        weights = out / "random_i3d.pt"
        if not weights.exists():
            torch.manual_seed(0)
            torch.save({"state_dict": I3D(I3DConfig()).state_dict()}, weights)
        extract += ["--weights", weights]
    tadkit(*extract)
    extract_seconds = time.perf_counter() - started
    store = FrameStore(data / "frames")
    write_json(features / "features.json", {"fps": 10.0, "stride_frames": args.step, "clip_frames": 16,
                                            "offset_frames": 0, "dim": 1024})
    window = CLIP_FRAMES // args.step
    feature_overrides = [*common, f"data.features={features}", "data.feature_subsample=1", f"data.window={window}",
                         f"data.stride_train={max(1, 30 // args.step)}", f"data.stride_test={max(1, window // 2)}",
                         "model.kwargs.in_dim=1024", f"model.kwargs.num_classes={CLASSES}",
                         f"model.kwargs.clip_length={CLIP_FRAMES}", "test.protocol=activitynet",
                         f"test.tiou_thresholds={TIOU}"]
    scores_feat, seconds = train_and_test("afsd/synthetic", feature_overrides, out / "features_run")
    name = "I3D features (Kinetics-400 RGB, frozen)" if not args.random_i3d else "I3D features (RANDOM weights)"
    rows[name] = {**scores_feat, "train_seconds": seconds, "extract_seconds_this_run": extract_seconds}

    frames = sum(v.num_frames for v in store.videos.values())
    print(f"\nAFSD on {len(store.videos)} synthetic videos ({frames} frames, {SIZE} px, {CLASSES} motion classes); "
          "activitynet protocol, mAP %")
    print(f"{'input':<45}" + "".join(f"{t:>7.1f}" for t in TIOU) + f"{'avg':>7}{'train s':>9}")
    for name, row in rows.items():
        print(f"{name:<45}" + "".join(f"{100 * m:>7.1f}" for m in row["mAP"]) + f"{100 * row['average_mAP']:>7.1f}"
              f"{row['train_seconds']:>9.0f}")
    write_json(out / "afsd_frames_vs_features.json", {"videos_per_subset": args.videos, "seed": args.seed,
                                                       "step": args.step, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
