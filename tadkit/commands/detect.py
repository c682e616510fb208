"""`tadkit detect INPUT [--checkpoint CKPT]`: actions in one new video (or one feature file).

Without ``--checkpoint`` the detector is zero-shot: the 400 Kinetics actions of I3D's own classifier
(:mod:`tadkit.video.zeroshot`). Extracted features are cached (:mod:`tadkit.video.cache`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from tadkit.errors import TadkitError

FEATURE_SUFFIXES = {".npy", ".npz"}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "detect", help="detect actions in one video file or feature file (zero-shot Kinetics-400 without --checkpoint)",
        description="INPUT is a video (features are extracted with I3D first; run `tadkit weights i3d` once) "
        "or a (T, D) .npy feature file (timing from features.json beside it, a `tadkit extract` sidecar "
        "JSON, or --feature-fps/--feature-stride). With --checkpoint: runs the model over the whole video with "
        "the windows/resampling of its config and its post-processing. Without: ZERO-SHOT localization of the "
        "400 Kinetics-400 actions from I3D's own Kinetics classifier, applied to every feature stack (no "
        "training; the classes are Kinetics', not your dataset's). Prints the segments and writes ActivityNet "
        "JSON. Extracted features are cached in $TADKIT_CACHE/features (default ~/.cache/tadkit/features).",
    )
    parser.add_argument("input", help="video file or feature file")
    parser.add_argument("--checkpoint", default=None,
                        help="tadkit checkpoint (from tadkit train / convert); omit for zero-shot Kinetics-400")
    parser.add_argument("--config", help="YAML config whose data/test sections override the checkpoint's")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override; without --checkpoint a zero-shot setting such as "
                        "class_threshold=0.1, max_classes=3, smooth=1, cas.gamma=0, nms.iou_threshold=0.4")
    parser.add_argument("--out", help="write ActivityNet-format JSON here")
    parser.add_argument("--plot", help="draw the detection timeline to this PNG")
    parser.add_argument("--top", type=int, default=20, help="rows printed (default 20; the JSON has all)")
    parser.add_argument("--min-score", type=float, default=0.0, help="drop detections below this score")
    video = parser.add_argument_group("video input (feature extraction)")
    video.add_argument("--fps", type=float, default=None, help="resample frames to this fps (default: native)")
    video.add_argument("--stack", type=int, default=16, help="frames per feature (default 16)")
    video.add_argument("--step", type=int, default=16, help="frames between features (default 16)")
    video.add_argument("--stream", default="rgb", choices=["rgb", "flow", "rgb+flow"])
    video.add_argument("--flow-weights", default=None, help="flow I3D weights (stream flow / rgb+flow)")
    video.add_argument("--features-out", default=None, help="keep the extracted features in this directory")
    video.add_argument("--no-cache", action="store_true",
                       help="neither read nor write the feature cache ($TADKIT_CACHE/features)")
    feats = parser.add_argument_group("feature-file input without features.json or sidecar")
    feats.add_argument("--feature-fps", type=float, default=None, help="frame rate the features were taken at")
    feats.add_argument("--feature-stride", type=float, default=None, help="frames between consecutive features")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run)


def _class_names(checkpoint: dict, model) -> list[str]:
    classes = [str(c) for c in checkpoint.get("classes") or []]
    getter = getattr(model, "config_dict", None)
    num = getter().get("num_classes") if callable(getter) else None
    if not classes and isinstance(num, int):
        classes = [f"class_{i}" for i in range(num)]  # converted checkpoints: indices are all we know
    return classes


I3D_DIM_PER_STREAM = 1024


def check_feature_kind(spec, model, stream: str, checkpoint: str) -> None:
    """Before any extraction: the checkpoint must take I3D features of the streams asked for."""
    from tadkit.pipeline import model_input_dim

    if spec.data_kind == "frames":
        raise TadkitError(f"method {spec.name!r} runs on decoded frames, which `tadkit detect` does not "
                          "decode in this version", file=checkpoint, field="model_name")
    expected = I3D_DIM_PER_STREAM * len(stream.split("+"))
    in_dim = model_input_dim(model)
    if in_dim is not None and in_dim != expected:
        hint = {1024: "--stream rgb", 2048: "--stream rgb+flow --flow-weights FLOW"}.get(in_dim, "features of its own kind")
        raise TadkitError(f"the model takes {in_dim}-d features but --stream {stream} gives {expected}-d I3D "
                          f"features; use {hint}, or pass a feature file", file=checkpoint, field="stream")


def run(args) -> int:
    import numpy as np

    from tadkit.engine.checkpoint import load_checkpoint, load_checkpoint_model
    from tadkit.engine.config import Config, load_config
    from tadkit.engine.data import method_of
    from tadkit.evaluation import write_activitynet_json
    from tadkit.pipeline import detect_feature_store, single_video_store

    source = Path(args.input)
    if not source.exists():
        raise TadkitError("no such file", file=str(source), field="input")
    checkpoint = load_checkpoint(args.checkpoint, map_location="cpu", require=("model_name", "model_config", "model"))
    model, ckpt_config = load_checkpoint_model(args.checkpoint)
    config: Config = load_config(args.config, args.overrides) if args.config else ckpt_config
    if not args.config and args.overrides:
        from tadkit.engine.config import apply_overrides

        config = Config.from_dict(apply_overrides(ckpt_config.to_dict(), args.overrides)[0], file=args.checkpoint)
    classes = _class_names(checkpoint, model)
    progress = not args.no_progress
    if source.suffix.lower() not in FEATURE_SUFFIXES:
        check_feature_kind(method_of(config), model, args.stream, args.checkpoint)

    with tempfile.TemporaryDirectory(prefix="tadkit_detect_") as tmp:
        work = Path(tmp)
        duration = None
        if source.suffix.lower() in FEATURE_SUFFIXES:
            features_path = source
        else:
            from tadkit.utils.io import numpy_save, write_json
            from tadkit.video.extract import extract_video
            from tadkit.video.weights import load_i3d

            streams = args.stream.split("+")
            rgb = load_i3d() if "rgb" in streams else None
            flow = load_i3d(args.flow_weights, stream="flow") if "flow" in streams else None
            features, meta = extract_video(source, rgb, flow_model=flow, fps=args.fps, stack=args.stack,
                                           step=args.step, streams=args.stream, progress=progress)
            keep = Path(args.features_out) if args.features_out else work / "extracted"
            features_path = keep / f"{source.stem}.npy"
            numpy_save(features_path, features)
            write_json(features_path.with_suffix(".json"), meta)
            duration = meta.get("duration")
        store = single_video_store(features_path, work / "store", fps=args.feature_fps,
                                   stride_frames=args.feature_stride, clip_frames=None)
        dets = detect_feature_store(model, store, features_path.stem, config, classes, duration, progress=progress)
    if args.min_score > 0:
        dets = dets.select(dets.score >= args.min_score)
    order = np.argsort(-dets.score, kind="stable")
    dets = dets.select(order)

    print(f"{features_path.stem}: {len(dets)} detections")
    print(f"{'start (s)':>10} {'end (s)':>10}  {'label':<28} {'score':>7}")
    for i in range(min(args.top, len(dets))):
        print(f"{dets.start[i]:>10.2f} {dets.end[i]:>10.2f}  {str(dets.label[i]):<28} {dets.score[i]:>7.4f}")
    if args.out:
        write_activitynet_json(dets, args.out)
        print(f"results: {args.out}")
    if args.plot:
        from tadkit.viz import plot_timeline

        end = float(max(dets.end.max(initial=0.0), duration or 0.0, 1.0))
        plot_timeline([], dets, duration or end, classes, args.plot, title=f"{features_path.stem}: detections")
        print(f"plot: {args.plot}")
    return 0
