"""`tadkit demo [--out DIR]`: the embedded default, end to end, with no download.

Synthetic THUMOS-like data (generated once) -> train a CPU-sized A2Net -> detect on the test subset
-> both official protocols + per-duration mAP -> results JSON, THUMOS txt and PNG plots.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

# CPU-sized A2Net: official structure and losses, narrower pyramid (the official widths need a GPU).
DEMO_MODEL = {
    "in_dim": 256,
    "base_dim": 128,
    "pyramid_dims": [128, 256, 256, 256, 256, 256],
    "reduce_dim": 128,
    "head_dim": 128,
    "num_classes": 20,
}


def demo_config(data_dir: Path, epochs: int, seed: int) -> dict[str, Any]:
    """The demo's run config (also written as `config.yaml` in the run directory)."""
    return {
        "data": {
            "annotations": str(data_dir / "annotations.json"),
            "features": str(data_dir / "features"),
            "subset_train": "validation",
            "subset_test": "test",
            "mode": "sliding",
            "window": 128,
        },
        "model": {"name": "a2net", "kwargs": dict(DEMO_MODEL)},
        "train": {
            "epochs": epochs,
            "batch_size": 16,
            "lr": 1e-3,
            "lr_decay_epochs": [max(1, int(epochs * 0.75))],
            "seed": seed,
            "eval_every": 0,
            "keep_last": 1,
        },
        "test": {"protocol": "thumos14", "nms": {"preset": "a2net"}, "duplicate_cliffdiving": True},
    }


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo", help="synthetic data -> train A2Net -> evaluate -> plots (about 10 min on 2 CPU cores)",
        description="Runs the whole pipeline on built-in synthetic THUMOS-like data; nothing is downloaded.",
    )
    parser.add_argument("--out", default="tadkit_demo", help="output directory (default: tadkit_demo)")
    parser.add_argument("--videos", type=int, default=100, help="synthetic videos per subset (default 100)")
    parser.add_argument("--epochs", type=int, default=30, help="training epochs (default 30)")
    parser.add_argument("--seed", type=int, default=0, help="seed of data and training (default 0)")
    parser.add_argument("--max-video-seconds", type=float, default=240.0,
                        help="longest synthetic video (default 240 s; THUMOS goes to 600)")
    parser.add_argument("--difficulty", nargs="+", default=[], metavar="PRESET|KNOB=VALUE",
                        help="synthetic-data difficulty: easy | default | hard and/or knobs (see docs/synthetic.md)")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run)


def run(args) -> int:
    import torch

    from tadkit.data.synthetic import SynthConfig, difficulty_from_spec, generate_dataset
    from tadkit.engine.checkpoint import load_checkpoint_model
    from tadkit.engine.config import Config
    from tadkit.engine.trainer import train
    from tadkit.pipeline import plot_outputs, run_test

    started = time.perf_counter()
    out = Path(args.out).absolute()
    data_dir = out / "data"
    progress = not args.no_progress
    torch.set_num_threads(max(1, torch.get_num_threads()))

    if (data_dir / "annotations.json").exists():
        print(f"[1/4] synthetic data: reusing {data_dir}")
    else:
        print(f"[1/4] synthetic data: generating {args.videos} + {args.videos} videos in {data_dir}")
        synth = SynthConfig(seed=args.seed, dim=DEMO_MODEL["in_dim"], videos=args.videos,
                            max_video_seconds=args.max_video_seconds,
                            difficulty=difficulty_from_spec(args.difficulty))
        generate_dataset(data_dir, synth, progress=progress)

    config = Config.from_dict(demo_config(data_dir, args.epochs, args.seed))
    run_dir = out / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    print(f"[2/4] training A2Net ({args.epochs} epochs, CPU-sized widths) in {run_dir}")
    result = train(config, run_dir, resume=True, progress=progress)  # resume: a re-run continues or reuses

    print("[3/4] detecting on the test subset and scoring with both official protocols")
    model, _ = load_checkpoint_model(result.last_checkpoint)
    outputs = run_test(model, config, out, progress=progress)
    print()
    print(outputs.report.format())

    print("\n[4/4] plots")
    outputs.files.update(plot_outputs(outputs.gt, outputs.dets, outputs.report, run_dir / "history.json", out))
    for name, path in outputs.files.items():
        print(f"  {name}: {path}")
    primary = outputs.report.results[config.test.protocol]
    at_05 = dict(zip([round(t, 2) for t in primary.tiou], primary.mAP)).get(0.5)
    summary = f"average mAP {100 * primary.average_mAP:.1f}"
    if at_05 is not None:
        summary = f"mAP@0.5 {100 * at_05:.1f}, " + summary
    print(f"\ndemo done in {time.perf_counter() - started:.0f} s: {config.test.protocol} {summary} "
          f"({len(outputs.gt.videos)} test videos, {len(outputs.dets)} detections)")
    return 0
