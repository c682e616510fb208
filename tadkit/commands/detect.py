"""`tadkit detect INPUT [--checkpoint CKPT [--fuse FLOW_CKPT]]`: actions in one new video (or one feature file).

Without ``--checkpoint`` the detector is zero-shot: the 400 Kinetics actions of I3D's own classifier
(:mod:`tadkit.video.zeroshot`). Extracted features are cached (:mod:`tadkit.video.cache`). ``--fuse``
averages an end-to-end RGB model with its flow model as the official two-stream test does
(:mod:`tadkit.commands.stream_fusion`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from tadkit.errors import TadkitError
from tadkit.utils.cli_options import add_set_option

FEATURE_SUFFIXES = {".npy", ".npz"}


def register(subparsers) -> None:
    from tadkit.commands import add_method_module_argument

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
    parser.add_argument("--fuse", default=None, metavar="FLOW_CKPT",
                        help="end-to-end (frame) models: the flow checkpoint of --checkpoint's RGB model; the video "
                        "is decoded to RGB and TV-L1 flow frames (needs the flow extra), each model reads its stream "
                        "and their raw outputs are averaged before decoding (the official RGB + flow fusion)")
    parser.add_argument("--config", help="YAML config whose data/test sections override the checkpoint's")
    add_set_option(parser, "config overrides; without --checkpoint zero-shot settings such as "
                   "class_threshold=0.1 max_classes=3 smooth=1 cas.gamma=0 nms.iou_threshold=0.4")
    parser.add_argument("--out", help="write ActivityNet-format JSON here")
    parser.add_argument("--plot", help="draw the detection timeline to this PNG")
    parser.add_argument("--top", type=int, default=20, help="rows printed (default 20; the JSON has all)")
    parser.add_argument("--min-score", type=float, default=0.0, help="drop detections below this score")
    parser.add_argument("--drop-nested", action="store_true",
                        help="drop segments lying inside a higher-scoring segment of the same class (kept by "
                        "default: they are the alternative extents the official post-processing outputs)")
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
    add_method_module_argument(parser)
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run)


def checkpoint_classes(checkpoint: dict, model) -> list[str]:
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
        return  # decodes the video itself (detect_frames)
    expected = I3D_DIM_PER_STREAM * len(stream.split("+"))
    in_dim = model_input_dim(model)
    if in_dim is not None and in_dim != expected:
        hint = {1024: "--stream rgb", 2048: "--stream rgb+flow --flow-weights FLOW"}.get(in_dim, "features of its own kind")
        raise TadkitError(f"the model takes {in_dim}-d features but --stream {stream} gives {expected}-d I3D "
                          f"features; use {hint}, or pass a feature file", file=checkpoint, field="stream")


def _extract(args, source: Path, rgb, flow, progress: bool) -> tuple[Any, dict[str, Any]]:
    """Features of a video through the feature cache; says whether they were reused."""
    from tadkit.video.cache import cached_extract, feature_cache_dir

    features, meta, hit = cached_extract(source, rgb, flow_model=flow, fps=args.fps, stack=args.stack,
                                         step=args.step, streams=args.stream, progress=progress,
                                         use_cache=not args.no_cache)
    if hit:
        print(f"features: reused from the cache {feature_cache_dir()} (--no-cache extracts again)")
    return features, meta


def _video_features(args, source: Path, work: Path, progress: bool) -> tuple[Path, Any, dict[str, Any]]:
    """Extract (or reuse) a video's features; write them (+ sidecar) to ``work`` (--features-out gets
    them only after the detections are printed: a full disk there must not cost the detections)."""
    from tadkit.video.weights import load_i3d

    streams = args.stream.split("+")
    rgb = load_i3d() if "rgb" in streams else None
    flow = load_i3d(args.flow_weights, stream="flow") if "flow" in streams else None
    features, meta = _extract(args, source, rgb, flow, progress)
    features_path = _save_features(work / "extracted", source.stem, features, meta)
    return features_path, features, meta


def _save_features(directory: Path, video_id: str, features: Any, meta: dict[str, Any]) -> Path:
    """``DIR/<video>.npy`` + its sidecar ``DIR/<video>.json`` (what `tadkit extract` writes)."""
    from tadkit.utils.io import numpy_save, write_json

    features_path = Path(directory) / f"{video_id}.npy"
    numpy_save(features_path, features)
    write_json(features_path.with_suffix(".json"), meta)
    return features_path


def _keep_features(args, video_id: str, features: Any, meta: dict[str, Any]) -> None:
    """--features-out, written after the detections were printed and saved."""
    if args.features_out:
        path = _save_features(Path(args.features_out), video_id, features, meta)
        print(f"features: {path}")


NESTED_NOTE = ("{count} segment(s) marked 'in #k' lie inside the higher-scoring segment #k of the same class. "
               "{why} They are alternative extents of one action ranked by score (the official mAP protocols score "
               "such lists as they are); --drop-nested drops them.")
NESTED_WHY_CAS = ("The CAS recipe proposes one extent per activation threshold (cas.thresholds) and NMS keeps the "
                  "extents that overlap a better one by less than its iou_threshold.")
NESTED_WHY = "The model proposes several extents per action and NMS keeps those overlapping a better one little."


def _print_and_write(args, dets, video_id: str, duration: float | None, classes: list[str], title: str,
                     why_nested: str = NESTED_WHY) -> None:
    import numpy as np

    from tadkit.evaluation import write_activitynet_json
    from tadkit.postprocess.merge import enclosing_detection

    if args.min_score > 0:
        dets = dets.select(dets.score >= args.min_score)
    dets = dets.select(np.argsort(-dets.score, kind="stable"))
    parent = enclosing_detection(dets)
    if args.drop_nested and (parent >= 0).any():
        print(f"--drop-nested: {int((parent >= 0).sum())} segment(s) inside a better same-class one dropped")
        dets = dets.select(parent < 0)
        parent = np.full(len(dets), -1)
    print(f"{video_id}: {len(dets)} detections")
    print(f"{'#':>4} {'start (s)':>10} {'end (s)':>10}  {'label':<28} {'score':>7}  nested")
    shown = min(args.top, len(dets))
    for i in range(shown):
        nested = f"in #{parent[i] + 1}" if parent[i] >= 0 else ""
        row = f"{i + 1:>4} {dets.start[i]:>10.2f} {dets.end[i]:>10.2f}  {str(dets.label[i]):<28} {dets.score[i]:>7.4f}"
        print(f"{row}  {nested}".rstrip())
    nested_shown = int((parent[:shown] >= 0).sum())
    if nested_shown:
        print("note: " + NESTED_NOTE.format(count=nested_shown, why=why_nested))
    if args.out:
        write_activitynet_json(dets, args.out)
        print(f"results: {args.out}")
    if args.plot and len(dets) == 0:
        print(f"plot: not drawn, no detections ({args.plot} not written)")
    elif args.plot:
        from tadkit.viz import plot_timeline

        end = float(max(dets.end.max(initial=0.0), duration or 0.0, 1.0))
        plot_timeline([], dets, duration or end, classes, args.plot, title=title)
        print(f"plot: {args.plot}")


def run(args) -> int:
    from tadkit.data.ids import check_video_id
    from tadkit.utils.io import check_input_file

    source = check_input_file(args.input, "video or feature file", field="input")
    check_video_id(source.stem, file=source, field="input")  # names --features-out/<id>.npy and .json, plots, ids
    if args.checkpoint is None:
        if args.fuse:
            raise TadkitError("--fuse needs --checkpoint (the RGB model; --fuse names its flow model)", field="--fuse")
        return run_zero_shot(args, source)

    from tadkit.commands import load_method_modules
    from tadkit.engine.checkpoint import build_checkpoint_model, load_checkpoint
    from tadkit.engine.config import Config, load_config
    from tadkit.engine.data import method_of
    from tadkit.pipeline import detect_feature_store, single_video_store

    load_method_modules(args)
    # the user's config before the checkpoint: a plug-in method comes from it (or --method-module), never a file
    user_config = load_config(args.config, args.overrides) if args.config else None
    checkpoint = load_checkpoint(args.checkpoint, map_location="cpu", require=("model_name", "model_config", "model"))
    model, ckpt_config = build_checkpoint_model(checkpoint, args.checkpoint)  # the file is read once
    config: Config = user_config if user_config is not None else ckpt_config
    if not args.config and args.overrides:
        from tadkit.engine.config import apply_overrides

        config = Config.from_dict(apply_overrides(ckpt_config.to_dict(), args.overrides)[0], file=args.checkpoint,
                                  from_data=True)
    classes = checkpoint_classes(checkpoint, model)
    progress = not args.no_progress
    is_video = source.suffix.lower() not in FEATURE_SUFFIXES
    if args.fuse:
        from tadkit.commands.stream_fusion import StreamCheckpoint, fuse_rgb_flow, read_stream_checkpoint

        rgb = StreamCheckpoint(str(args.checkpoint), model, ckpt_config, classes)
        model, config = fuse_rgb_flow(rgb, read_stream_checkpoint(args.fuse), config)  # refusals before decoding
    if method_of(config).data_kind == "frames":
        if not is_video:
            raise TadkitError(f"method {method_of(config).name!r} detects from video frames; pass the video, not "
                              "a feature file", file=str(source), field="input")
        return detect_frames(args, source, model, config, classes, progress)
    if is_video:
        check_feature_kind(method_of(config), model, args.stream, args.checkpoint)  # before any extraction

    with tempfile.TemporaryDirectory(prefix="tadkit_detect_") as tmp:
        work = Path(tmp)
        duration, extracted = None, None
        features_path = source
        if is_video:
            features_path, features, meta = _video_features(args, source, work, progress)
            duration, extracted = meta.get("duration"), (features, meta)
        store = single_video_store(features_path, work / "store", fps=args.feature_fps,
                                   stride_frames=args.feature_stride, clip_frames=None)
        dets = detect_feature_store(model, store, features_path.stem, config, classes, duration, progress=progress)
    why = NESTED_WHY_CAS if method_of(config).output_kind == "cas" else NESTED_WHY
    _print_and_write(args, dets, features_path.stem, duration, classes, f"{features_path.stem}: detections",
                     why_nested=why)
    if extracted is not None:
        _keep_features(args, features_path.stem, *extracted)
    return 0


def detect_frames(args, source: Path, model, config, classes: list[str], progress: bool) -> int:
    """End-to-end checkpoints: decode the video to the training frames' rate and size (``data.frame_fps``,
    ``data.frame_size``, stream(s) ``data.stream``: ``rgb+flow`` for a fused pair) as `tadkit data frames`
    does, then run the clips."""
    from tadkit.data.frames import FrameStore
    from tadkit.pipeline import detect_frame_store
    from tadkit.video.frames import FrameSettings, convert_videos

    data = config.data
    settings = FrameSettings(fps=float(data.frame_fps), size=int(data.frame_size),
                             flow="flow" in str(data.stream).split("+"), max_frames=data.frame_max_frames)
    with tempfile.TemporaryDirectory(prefix="tadkit_detect_") as tmp:
        frames_dir = Path(tmp) / "frames"
        summary = convert_videos([source], frames_dir, settings, show_progress=progress)
        if summary.failed:
            raise TadkitError(f"cannot decode the video: {next(iter(summary.failed.values()))}", file=str(source),
                              field="input")
        video_id = (summary.written or summary.skipped)[0]
        store = FrameStore(frames_dir, stream=data.stream)
        print(f"frames: {store.videos[video_id].num_frames} at {store.video_fps(video_id):g} fps, {settings.size}x{settings.size} "
              f"({data.stream})")
        dets = detect_frame_store(model, store, video_id, config, classes, progress=progress)
        duration = store.videos[video_id].duration
    _print_and_write(args, dets, video_id, duration, classes, f"{video_id}: detections")
    return 0


ZERO_SHOT_BANNER = ("ZERO-SHOT: no checkpoint given, so the actions are the 400 Kinetics-400 classes of I3D's own "
                    "classifier (DeepMind's Kinetics RGB weights), localized from its per-stack predictions; "
                    "nothing was trained on your data. Pass --checkpoint for a trained detector.")


def run_zero_shot(args, source: Path) -> int:
    """Kinetics-400 zero-shot localization of one video (or one RGB I3D feature file)."""
    import numpy as np

    from tadkit.video.weights import load_i3d
    from tadkit.video.zeroshot import ZeroShotConfig, kinetics400_labels, kinetics_head, localize_zero_shot, stack_logits

    if args.config:
        raise TadkitError("--config needs --checkpoint (zero-shot settings are --set KEY=VALUE)", field="config")
    if args.stream != "rgb":
        raise TadkitError(f"zero-shot uses the RGB Kinetics classifier; --stream {args.stream} needs --checkpoint",
                          field="stream")
    config = ZeroShotConfig.from_overrides(args.overrides)
    labels = list(kinetics400_labels())
    model = load_i3d()  # says how to install the weights when they are missing
    progress = not args.no_progress
    video_id = source.stem
    if source.suffix.lower() in FEATURE_SUFFIXES:
        features, starts, clip_seconds, duration = _feature_file_timing(args, source)
    else:
        features, meta = _extract(args, source, model, None, progress)
        starts = np.asarray(meta["timestamps"], dtype=np.float64)
        clip_seconds = float(meta["clip_seconds"])
        duration = float(meta.get("duration") or starts[-1] + clip_seconds)
    result = localize_zero_shot(stack_logits(features, kinetics_head(model)), starts, clip_seconds, duration,
                                video_id, config, labels)
    print(ZERO_SHOT_BANNER)
    picked = ", ".join(f"{labels[c]} {result.video_scores[c]:.2f}" for c in result.selected)
    print(f"video-level Kinetics classes localized (score >= {config.class_threshold:g}, at most "
          f"{config.max_classes}): {picked}")
    if len(result.detections) == 0:
        print(f"no stack reached the lowest CAS threshold {min(config.cas.thresholds):g} for those classes; "
              "lower it with --set 'cas.thresholds=[0.05, 0.1]'")
    present = list(dict.fromkeys(str(label) for label in result.detections.label)) or [labels[result.selected[0]]]
    _print_and_write(args, result.detections, video_id, duration, present,
                     f"{video_id}: zero-shot Kinetics-400 detections", why_nested=NESTED_WHY_CAS)
    if source.suffix.lower() not in FEATURE_SUFFIXES:
        _keep_features(args, video_id, features, meta)
    return 0


def _feature_file_timing(args, source: Path):
    """(features, stack start seconds, stack seconds, duration) of a `tadkit extract` RGB feature file."""
    import numpy as np

    from tadkit.pipeline import single_video_store

    with tempfile.TemporaryDirectory(prefix="tadkit_detect_") as tmp:
        store = single_video_store(source, Path(tmp), fps=args.feature_fps, stride_frames=args.feature_stride,
                                   clip_frames=None)
        timing = store.timing(source.stem, None)
        features = np.array(store.read(source.stem), dtype=np.float32)
    sidecar = source.with_suffix(".json")
    meta: dict[str, Any] = {}
    if sidecar.is_file():
        import json

        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    if features.shape[1] != I3D_DIM_PER_STREAM or meta.get("streams", ["rgb"]) != ["rgb"]:
        raise TadkitError(f"zero-shot needs RGB I3D features (1024-d, from `tadkit extract`), got {features.shape[1]}-d "
                          f"{'+'.join(meta.get('streams', ['?']))}", file=str(source), field="features")
    count = features.shape[0]
    starts = np.asarray(meta.get("timestamps") or timing.index_to_seconds(np.arange(count)), dtype=np.float64)
    clip_seconds = float(meta.get("clip_seconds") or timing.clip_frames / timing.fps)
    duration = float(meta.get("duration") or starts[-1] + clip_seconds)
    return features, starts, clip_seconds, duration
