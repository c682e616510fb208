"""`tadkit test CONFIG --checkpoint CKPT --out DIR`: detections + both official protocols.

`tadkit test DIR --out OUT` on a directory written by `tadkit train --seeds`: every seed's run is
tested into `OUT/seed_<s>/` (the usual outputs) and `OUT/summary.json` + `summary.txt` hold the
statistics over seeds (tadkit.evaluation.seeds).
"""

from __future__ import annotations

import sys
from pathlib import Path

from tadkit.utils.cli_options import add_set_option


def register(subparsers) -> None:
    from tadkit.commands import add_method_module_argument

    parser = subparsers.add_parser(
        "test", help="detect on the test subset and evaluate a checkpoint",
        description="Runs the model of CKPT over the config's test subset, writes results.json (ActivityNet "
        "format), detections_thumos14.txt (when the classes have THUMOS ids), report.json and report.txt "
        "(mAP per tIoU under both official protocols, per-duration mAP), ground_truth.json (the GT scored), "
        "report.html (the `tadkit view` page) and PNG plots. Given a directory "
        "written by `tadkit train --seeds`, tests every seed into OUT/seed_<s>/ and writes OUT/summary.json "
        "and summary.txt (mean, std, min, max over seeds; combined seed + video-bootstrap interval).",
    )
    parser.add_argument("config", help="YAML run config (data + test sections are used), or a `tadkit train --seeds` "
                        "directory")
    parser.add_argument("--checkpoint", default=None,
                        help="tadkit checkpoint (last.pt, best.pt, epoch_XXX.pt); with a seeds directory: the file "
                        "name inside every seed's run (default last.pt)")
    parser.add_argument("--out", required=True, help="output directory")
    add_set_option(parser, "override config keys, e.g. --set test.protocol=activitynet")
    parser.add_argument("--fuse", action="append", default=[], metavar="CKPT",
                        help="average the raw outputs of this checkpoint (same method) with --checkpoint's, e.g. "
                        "the flow model of an RGB one (repeatable; adds to test.fuse; model i reads the channels "
                        "test.fuse_streams[i])")
    parser.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                        help="seeds directory: video resamples per seed for the combined interval (default 1000)")
    add_method_module_argument(parser)
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--no-html", action="store_true", help="skip report.html (the `tadkit view` page)")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run)


def run(args) -> int:
    from tadkit.errors import TadkitError

    if Path(args.config).is_dir():
        from tadkit.engine.seeds import SEEDS_MANIFEST

        if not (Path(args.config) / SEEDS_MANIFEST).exists():
            raise TadkitError("is a directory without seeds.json; pass a YAML config with --checkpoint, or a "
                              "`tadkit train --seeds` directory", file=args.config, field="config")
        return run_seed_directory(args)
    if args.checkpoint is None:
        raise TadkitError("--checkpoint is required with a YAML config", field="--checkpoint")
    outputs, _, selection = evaluate_checkpoint(args.config, args.checkpoint, Path(args.out), args)
    if outputs is None:  # a torchrun rank other than 0
        return 0
    print(outputs.report.format())
    if selection is not None:
        from tadkit.evaluation.epoch_selection import format_epoch_selection

        print("\n" + format_epoch_selection(selection))
    for name, path in outputs.files.items():
        print(f"{name}: {path}")
    return 0


def evaluate_checkpoint(config_path, checkpoint, out_dir: Path, args, fuse: list[str] | None = None):
    """One checkpoint through the config's test pipeline into ``out_dir`` (+ plots unless --no-plots).

    When the checkpoint sits in a run directory whose history.json has evaluations, the epoch
    selection (last / best on validation / best on test) is written to ``epoch_selection.json``.
    Returns (TestOutputs, the config that ran, the selection or None)."""
    from tadkit.engine.checkpoint import load_checkpoint_model
    from tadkit.engine.config import load_config
    from tadkit.engine.data import method_of
    from tadkit.commands import load_method_modules
    from tadkit.evaluation.epoch_selection import read_epoch_selection
    from tadkit.pipeline import check_test_files, plot_outputs, run_test
    from tadkit.utils.io import ensure_writable_dir, write_json

    load_method_modules(args)
    config = load_config(config_path, args.overrides)  # before the checkpoint: a plug-in comes from here
    check_test_files(config)
    ensure_writable_dir(out_dir, hint="choose a writable --out")  # before the model runs over the test subset
    model, stored = load_checkpoint_model(checkpoint)
    for note in model_section_notes(config, stored, model):
        print(f"tadkit test: note: {note}", file=sys.stderr)
    config.model = stored.model  # the checkpoint's model is what runs; its method drives the data and decoding
    fuse_paths = list(config.test.fuse) + list(args.fuse if fuse is None else fuse)
    if fuse_paths and method_of(config).data_kind == "frames":  # an RGB + a flow end-to-end model: checked pair
        from tadkit.commands.stream_fusion import fuse_frame_checkpoints

        model, config = fuse_frame_checkpoints(checkpoint, model, stored, fuse_paths, config)
    else:
        model = fused_model(model, stored, fuse_paths, config.test.fuse_streams,
                            key="clip" if method_of(config).data_kind == "frames" else "features")
    from tadkit.engine.distributed import cleanup_distributed, init_distributed

    ctx = init_distributed("cpu")  # under torchrun: each rank predicts its share of the windows (gloo)
    finished = False
    try:
        outputs = run_test(model, config, out_dir, progress=not args.no_progress, html=not args.no_html)
        finished = True
    finally:
        cleanup_distributed(ctx, synchronize=finished)
    if outputs is None:  # not rank 0: rank 0 evaluates the gathered predictions and writes
        return None, config, None
    history = Path(checkpoint).parent / "history.json"  # training curves / evaluations when beside a run dir
    if not args.no_plots:
        outputs.files.update(plot_outputs(outputs.gt, outputs.dets, outputs.report, history, out_dir, config=config))
    selection = read_epoch_selection(history)
    if selection is not None:
        outputs.files["epoch_selection"] = out_dir / "epoch_selection.json"
        write_json(outputs.files["epoch_selection"], selection)
    return outputs, config, selection


def run_seed_directory(args) -> int:
    """Every seed of a `tadkit train --seeds` directory, then the summary over seeds."""
    from tadkit.engine.seeds import read_manifest, seed_dir
    from tadkit.errors import TadkitError
    from tadkit.evaluation.bootstrap import bootstrap_replicates
    from tadkit.evaluation.seeds import format_summary, summarize_epoch_selection, summarize_seeds
    from tadkit.utils.io import write_json, write_text

    if args.fuse:
        raise TadkitError("--fuse needs one checkpoint (a YAML config with --checkpoint)", field="--fuse")
    if args.bootstrap < 1:
        raise TadkitError(f"must be >= 1, got {args.bootstrap}", field="--bootstrap")
    directory, out = Path(args.config), Path(args.out)
    name = args.checkpoint or "last.pt"
    if Path(name).name != name:
        raise TadkitError("with a seeds directory, --checkpoint is a file name inside each seed's run (e.g. best.pt)",
                          field="--checkpoint")
    seeds = read_manifest(directory)["seeds"]
    reports, replicates, selections = {}, {}, {}
    for seed in seeds:
        run_dir = seed_dir(directory, seed)
        for needed in ("config.yaml", name):
            if not (run_dir / needed).is_file():
                raise TadkitError(f"seed {seed} has no {needed} (unfinished? `tadkit train ... --seeds ... --resume`)",
                                  file=str(run_dir), field="seeds")
        print(f"seed {seed}: testing {run_dir / name}", flush=True)
        outputs, config, selections[seed] = evaluate_checkpoint(run_dir / "config.yaml", run_dir / name,
                                                            out / f"seed_{seed}", args, fuse=[])
        reports[seed] = outputs.report.to_dict()
        replicates[seed] = {
            protocol: bootstrap_replicates(outputs.gt, outputs.dets, protocol, args.bootstrap, 0,
                                           result.tiou, config.data.subset_test, config.test.blocked_videos)[1]
            for protocol, result in outputs.report.results.items()
        }
    summary = summarize_seeds(reports, replicates, bootstrap_seed=0, checkpoint=name)
    summary["seed_reports"] = {str(s): str(Path(f"seed_{s}") / "report.json") for s in seeds}
    selection = summarize_epoch_selection(selections)
    if selection is not None:
        summary["epoch_selection"] = selection
    write_json(out / "summary.json", summary)
    text = format_summary(summary)
    write_text(out / "summary.txt", text + "\n")
    print(text)
    print(f"summary: {out / 'summary.json'}, {out / 'summary.txt'}")
    return 0


def model_section_notes(config, stored, model) -> list[str]:
    """Where the config's ``model:`` section differs from the checkpoint's (the checkpoint wins)."""
    notes = []
    if config.model.name and stored.model.name and str(config.model.name).lower() != str(stored.model.name).lower():
        notes.append(f"the config names model {config.model.name!r} but the checkpoint holds {stored.model.name!r}; "
                     "the checkpoint's model is used")
    actual = model.config_dict() if callable(getattr(model, "config_dict", None)) else {}
    asked = resolved_model_kwargs(model, dict(config.model.kwargs or {}))
    differing = sorted(k for k, v in asked.items() if k in actual and _plain(actual[k]) != _plain(v))
    if differing:
        notes.append(f"model.kwargs {', '.join(differing)} in the config differ from the checkpoint's; the "
                     "checkpoint's values are used (the config's model section does not rebuild the model)")
    return notes


def _plain(value):
    """Tuples as lists, all the way down (a YAML list and a dataclass tuple are the same setting)."""
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def resolved_model_kwargs(model, kwargs: dict) -> dict:
    """The config's ``model.kwargs`` as the model's own config dataclass resolves them (``null`` =
    automatic becomes the value it stands for), so that they compare with what the checkpoint stores."""
    from dataclasses import asdict, fields, is_dataclass, replace

    from tadkit.errors import TadkitError

    own = getattr(model, "config", None)
    if not is_dataclass(own):
        return kwargs
    names = {f.name for f in fields(own)}
    try:
        resolved = asdict(replace(own, **{k: v for k, v in kwargs.items() if k in names}))
    except (TadkitError, TypeError, ValueError):
        return kwargs  # the raw values are compared; the checkpoint's model runs either way
    return {k: resolved.get(k, v) for k, v in kwargs.items()}


def fused_model(model, stored, paths: list[str], streams, key: str = "features"):
    """``model`` alone, or wrapped with the checkpoints of ``paths`` in an output-averaging
    :class:`tadkit.postprocess.video_classifier.FusedModel` (all must hold the same method) that slices
    channels of ``batch[key]`` (``features``, or ``clip`` for frame models)."""
    from tadkit.engine.checkpoint import load_checkpoint_model
    from tadkit.errors import TadkitError
    from tadkit.postprocess.video_classifier import FusedModel

    if not paths:
        if streams is not None:
            raise TadkitError("test.fuse_streams is set but there is no model to fuse (--fuse / test.fuse)",
                              field="test.fuse_streams")
        return model
    models = [model]
    for path in paths:
        other, other_config = load_checkpoint_model(path)
        if str(other_config.model.name).lower() != str(stored.model.name).lower():
            raise TadkitError(f"holds method {other_config.model.name!r}, --checkpoint holds {stored.model.name!r}; "
                              "only models of one method can be fused", file=str(path), field="test.fuse")
        models.append(other)
    return FusedModel(models, streams, key=key)
