"""`tadkit test CONFIG --checkpoint CKPT --out DIR`: detections + both official protocols."""

from __future__ import annotations

import sys
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "test", help="detect on the test subset and evaluate a checkpoint",
        description="Runs the model of CKPT over the config's test subset, writes results.json (ActivityNet "
        "format), detections_thumos14.txt (when the classes have THUMOS ids), report.json and report.txt "
        "(mAP per tIoU under both official protocols, per-duration mAP) and PNG plots.",
    )
    parser.add_argument("config", help="YAML run config (data + test sections are used)")
    parser.add_argument("--checkpoint", required=True, help="tadkit checkpoint (last.pt, best.pt, epoch_XXX.pt)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key (repeatable)")
    parser.add_argument("--fuse", action="append", default=[], metavar="CKPT",
                        help="average the raw outputs of this checkpoint (same method) with --checkpoint's, e.g. "
                        "the flow model of an RGB one (repeatable; adds to test.fuse; model i reads the channels "
                        "test.fuse_streams[i])")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run)


def run(args) -> int:
    from tadkit.engine.checkpoint import load_checkpoint_model
    from tadkit.engine.config import load_config
    from tadkit.engine.data import method_of
    from tadkit.pipeline import plot_outputs, run_test

    config = load_config(args.config, args.overrides)
    model, stored = load_checkpoint_model(args.checkpoint)
    for note in model_section_notes(config, stored, model):
        print(f"tadkit test: note: {note}", file=sys.stderr)
    config.model = stored.model  # the checkpoint's model is what runs; its method drives the data and decoding
    model = fused_model(model, stored, list(config.test.fuse) + list(args.fuse), config.test.fuse_streams,
                        key="clip" if method_of(config).data_kind == "frames" else "features")
    out_dir = Path(args.out)
    from tadkit.engine.distributed import cleanup_distributed, init_distributed

    ctx = init_distributed("cpu")  # under torchrun: each rank predicts its share of the windows (gloo)
    finished = False
    try:
        outputs = run_test(model, config, out_dir, progress=not args.no_progress)
        finished = True
    finally:
        cleanup_distributed(ctx, synchronize=finished)
    if outputs is None:  # not rank 0: rank 0 evaluates the gathered predictions and writes
        return 0
    print(outputs.report.format())
    if not args.no_plots:
        history = Path(args.checkpoint).parent / "history.json"  # training curves when run beside a run dir
        outputs.files.update(plot_outputs(outputs.gt, outputs.dets, outputs.report, history, out_dir))
    for name, path in outputs.files.items():
        print(f"{name}: {path}")
    return 0


def model_section_notes(config, stored, model) -> list[str]:
    """Where the config's ``model:`` section differs from the checkpoint's (the checkpoint wins)."""
    notes = []
    if config.model.name and stored.model.name and str(config.model.name).lower() != str(stored.model.name).lower():
        notes.append(f"the config names model {config.model.name!r} but the checkpoint holds {stored.model.name!r}; "
                     "the checkpoint's model is used")
    actual = model.config_dict() if callable(getattr(model, "config_dict", None)) else {}
    differing = sorted(k for k, v in (config.model.kwargs or {}).items() if k in actual and actual[k] != v
                       and not (isinstance(v, list) and list(actual[k]) == v))
    if differing:
        notes.append(f"model.kwargs {', '.join(differing)} in the config differ from the checkpoint's; the "
                     "checkpoint's values are used (the config's model section does not rebuild the model)")
    return notes


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
