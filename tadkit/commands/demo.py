"""`tadkit demo [--method NAME] [--out DIR]`: the embedded default, end to end, with no download.

Synthetic THUMOS-like data (generated once) -> train the method's CPU-sized config
(``tadkit/configs/<method>/synthetic.yaml``) -> detect on the test subset -> both official protocols
+ per-duration mAP -> results JSON, THUMOS txt and PNG plots. A2Net (fully supervised) is the default;
``--method ecm|acrnet`` trains a weakly supervised method from the same videos' labels only;
``--method afsd|actionformer`` the other fully supervised ones.
``--method afsd --frames`` runs AFSD end to end from pixels instead: synthetic videos
(``tadkit data synth --video``) -> frames (``tadkit data frames``) -> ``afsd/synthetic_frames``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tadkit.errors import TadkitError

DEMO_METHODS = ("a2net", "ecm", "acrnet", "afsd", "actionformer")
FEATURE_DIM = 256  # the synthetic features' width (the CPU-sized configs take 256-d input)
FEATURE_VIDEOS = 100  # per subset, feature demos
FRAME_VIDEOS = 40  # per subset, --frames (about 34 s each at 64 px)
FRAME_METHODS = ("afsd",)  # methods with an end-to-end (frames) synthetic config
FRAME_CLASSES = 5
FRAME_SIZE = 64


def demo_config(method: str, data_dir: Path, epochs: int | None, seed: int, frames: bool = False) -> dict[str, Any]:
    """The demo's run config: the method's shipped synthetic config pointed at ``data_dir`` (with
    ``frames``: ``<method>/synthetic_frames`` on ``data_dir/annotations.json`` + ``data_dir/frames``)."""
    from tadkit.engine.config import find_config, load_config

    source = f"data.frames={data_dir / 'frames'}" if frames else f"data.features={data_dir / 'features'}"
    overrides = [f"data.annotations={data_dir / 'annotations.json'}", source,
                 f"train.seed={seed}", "train.eval_every=0", "train.best_metric=null"]
    config = load_config(find_config(f"{method}/synthetic_frames" if frames else f"{method}/synthetic"), overrides)
    if epochs is not None:
        if config.train.iterations:  # iteration-based method: --epochs scales its iterations
            config.train.iterations = max(1, round(config.train.iterations * epochs / config.train.epochs))
        else:
            config.train.lr_decay_epochs = [max(1, int(epochs * 0.75))] if config.train.lr_decay_epochs else []
            if config.train.warmup_epochs:  # keep the warm-up's share of the run (ActionFormer: 1/6)
                config.train.warmup_epochs = min(config.train.warmup_epochs, max(1, epochs // 6))
            config.train.epochs = epochs
    return config.to_dict()


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo", help="synthetic data -> train a method -> evaluate -> plots (about 10 min on 2 CPU cores)",
        description="Runs the whole pipeline on built-in synthetic THUMOS-like data; nothing is downloaded.",
    )
    parser.add_argument("--method", default="a2net", choices=DEMO_METHODS,
                        help="method to train (default a2net; ecm and acrnet learn from video-level labels only)")
    parser.add_argument("--frames", action="store_true",
                        help="end to end from pixels (afsd only): synthetic videos -> 10-fps frames -> AFSD with its I3D")
    parser.add_argument("--out", default="tadkit_demo", help="output directory (default: tadkit_demo)")
    parser.add_argument("--videos", type=int, default=None,
                        help=f"synthetic videos per subset (default {FEATURE_VIDEOS}; with --frames {FRAME_VIDEOS})")
    parser.add_argument("--epochs", type=int, default=None,
                        help="training epochs (default: the method's synthetic config; A2Net 30)")
    parser.add_argument("--seed", type=int, default=0, help="seed of data and training (default 0)")
    parser.add_argument("--max-video-seconds", type=float, default=240.0,
                        help="longest synthetic video (default 240 s; THUMOS goes to 600)")
    parser.add_argument("--difficulty", nargs="+", default=[], metavar="PRESET|KNOB=VALUE",
                        help="synthetic-data difficulty: easy | default | hard and/or knobs (see docs/synthetic.md)")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run)


def _video_data(data_dir: Path, args, progress: bool) -> None:
    """Synthetic videos (mp4 + annotations) and their 10-fps frames, each step reused when already there."""
    from tadkit.data.synthetic_video import VideoSynthConfig, generate_video_dataset
    from tadkit.video.frames import FrameSettings, convert_videos

    videos = args.videos or FRAME_VIDEOS
    if (data_dir / "annotations.json").exists():
        print(f"[1/4] synthetic videos: reusing {data_dir}")
    else:
        print(f"[1/4] synthetic videos: rendering {videos} + {videos} videos ({FRAME_CLASSES} motion classes, "
              f"{FRAME_SIZE} px, 10 fps) in {data_dir}")
        generate_video_dataset(data_dir, VideoSynthConfig(seed=args.seed, videos=videos, num_classes=FRAME_CLASSES,
                                                          size=FRAME_SIZE), progress=progress)
    summary = convert_videos(sorted((data_dir / "videos").glob("*.mp4")), data_dir / "frames",
                             FrameSettings(fps=10.0, size=FRAME_SIZE), show_progress=progress)
    if summary.failed:
        raise TadkitError(f"cannot decode {sorted(summary.failed)}", file=str(data_dir / "videos"), field="videos")
    print(f"      frames: {len(summary.written)} decoded, {len(summary.skipped)} reused in {data_dir / 'frames'}")


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

    if args.frames:
        if args.method not in FRAME_METHODS:
            raise TadkitError(f"--frames is for {', '.join(FRAME_METHODS)} (end to end from pixels)", field="frames")
        data_dir = out / "video_data"
        _video_data(data_dir, args, progress)
    elif (data_dir / "annotations.json").exists():
        print(f"[1/4] synthetic data: reusing {data_dir}")
    else:
        videos = args.videos or FEATURE_VIDEOS
        print(f"[1/4] synthetic data: generating {videos} + {videos} videos in {data_dir}")
        synth = SynthConfig(seed=args.seed, dim=FEATURE_DIM, videos=videos,
                            max_video_seconds=args.max_video_seconds,
                            difficulty=difficulty_from_spec(args.difficulty))
        generate_dataset(data_dir, synth, progress=progress)

    config = Config.from_dict(demo_config(args.method, data_dir, args.epochs, args.seed, frames=args.frames))
    run_dir = out / (f"run_{args.method}_frames" if args.frames else f"run_{args.method}")
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
    outputs.files.update(plot_outputs(outputs.gt, outputs.dets, outputs.report, run_dir / "history.json", out,
                                             config=config))
    for name, path in outputs.files.items():
        print(f"  {name}: {path}")
    primary = outputs.report.results[config.test.protocol]
    at_05 = dict(zip([round(t, 2) for t in primary.tiou], primary.mAP)).get(0.5)
    summary = outputs.report.summary_text()
    if at_05 is not None:
        summary = f"mAP@0.5 {100 * at_05:.1f}, " + summary
    name = f"{args.method}, end to end from frames" if args.frames else args.method
    print(f"\ndemo ({name}) done in {time.perf_counter() - started:.0f} s: {config.test.protocol} {summary} "
          f"({len(outputs.gt.videos)} test videos, {len(outputs.dets)} detections)")
    return 0
