"""`tadkit demo [--method NAME] [--out DIR]`: the embedded default, end to end, with no download.

Synthetic THUMOS-like data (generated once) -> train the method's CPU-sized config
(``tadkit/configs/<method>/synthetic.yaml``) -> detect on the test subset -> both official protocols
+ per-duration mAP -> results JSON, THUMOS txt and PNG plots. A2Net (fully supervised) is the default;
``--method ecm|acrnet`` trains a weakly supervised method from the same videos' labels only.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

DEMO_METHODS = ("a2net", "ecm", "acrnet", "afsd")
FEATURE_DIM = 256  # the synthetic features' width (the CPU-sized configs take 256-d input)


def demo_config(method: str, data_dir: Path, epochs: int | None, seed: int) -> dict[str, Any]:
    """The demo's run config: the method's shipped synthetic config pointed at ``data_dir``."""
    from tadkit.engine.config import find_config, load_config

    overrides = [f"data.annotations={data_dir / 'annotations.json'}", f"data.features={data_dir / 'features'}",
                 f"train.seed={seed}", "train.keep_last=1", "train.eval_every=0", "train.best_metric=null"]
    config = load_config(find_config(f"{method}/synthetic"), overrides)
    if epochs is not None:
        if config.train.iterations:  # iteration-based method: --epochs scales its iterations
            config.train.iterations = max(1, round(config.train.iterations * epochs / config.train.epochs))
        else:
            config.train.lr_decay_epochs = [max(1, int(epochs * 0.75))] if config.train.lr_decay_epochs else []
            config.train.epochs = epochs
    return config.to_dict()


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo", help="synthetic data -> train a method -> evaluate -> plots (about 10 min on 2 CPU cores)",
        description="Runs the whole pipeline on built-in synthetic THUMOS-like data; nothing is downloaded.",
    )
    parser.add_argument("--method", default="a2net", choices=DEMO_METHODS,
                        help="method to train (default a2net; ecm and acrnet learn from video-level labels only)")
    parser.add_argument("--out", default="tadkit_demo", help="output directory (default: tadkit_demo)")
    parser.add_argument("--videos", type=int, default=100, help="synthetic videos per subset (default 100)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="training epochs (default: the method's synthetic config; A2Net 30)")
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
        synth = SynthConfig(seed=args.seed, dim=FEATURE_DIM, videos=args.videos,
                            max_video_seconds=args.max_video_seconds,
                            difficulty=difficulty_from_spec(args.difficulty))
        generate_dataset(data_dir, synth, progress=progress)

    config = Config.from_dict(demo_config(args.method, data_dir, args.epochs, args.seed))
    run_dir = out / f"run_{args.method}"
    run_dir.mkdir(parents=True, exist_ok=True)
    length = f"{config.train.iterations} iterations" if config.train.iterations else f"{config.train.epochs} epochs"
    print(f"[2/4] training {args.method} ({length}, CPU-sized widths) in {run_dir}")
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
    print(f"\ndemo ({args.method}) done in {time.perf_counter() - started:.0f} s: {config.test.protocol} {summary} "
          f"({len(outputs.gt.videos)} test videos, {len(outputs.dets)} detections)")
    return 0
