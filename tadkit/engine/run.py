"""What ``tadkit train CONFIG [--set KEY=VALUE ...] [--out DIR] [--resume]`` needs, as small functions.

``commands/train.py`` stays a thin wrapper::

    def register(subparsers):
        parser = subparsers.add_parser("train", help="train a model from a YAML config")
        add_train_arguments(parser)
        parser.set_defaults(func=lambda args: run_train(args, make_evaluate_fn=make_evaluate_fn))

``build_datasets_fn`` defaults to :func:`tadkit.engine.data.build_train_data` (WindowDataset from the
config's ``data`` section); ``make_evaluate_fn(config, out_dir)`` returns the per-epoch evaluator.

Under ``torchrun --nproc_per_node N -m tadkit.cli train CONFIG`` the same command runs DDP.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from tadkit.utils.cli_options import add_set_option

if TYPE_CHECKING:  # argument parsing must not import torch (`tadkit train --help` stays fast)
    from tadkit.engine.config import Config
    from tadkit.engine.trainer import BuildDatasetsFn, EvaluateFn

MakeEvaluateFn = Callable[["Config", Path], "EvaluateFn | None"]


def add_train_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("config", help="YAML run config (relative paths in it resolve against its directory)")
    add_set_option(parser, "override config keys, e.g. --set train.lr=1e-4 train.lr_decay_epochs=[30]")
    parser.add_argument("--out", default=None, help="run directory (default: config out_dir, else runs/<config name>)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--seeds", default=None, metavar="S,S,...",
                        help="train one run per seed into OUT/seed_<s>/ (train.seed = s); `tadkit test OUT` tests them "
                        "all and summarizes mean/std over seeds; with --resume, finished seeds are skipped")
    parser.add_argument("--parallel", type=int, default=1, metavar="N",
                        help="with --seeds: run N seeds at once as separate processes (default 1: one after another)")
    parser.add_argument("--devices", default=None, metavar="D,D,...",
                        help="with --seeds: devices handed out to the seeds in turn: 'cpu' or CUDA indices (0,1,...), "
                        "each exported to its process alone as CUDA_VISIBLE_DEVICES")
    return parser


def resolve_out_dir(config: "Config", out: str | None, config_path: str | None = None) -> Path:
    """``--out`` (relative to the current directory) > ``out_dir`` in the config > ``runs/<config stem>``."""
    if out:
        return Path(out).absolute()
    if config.out_dir:
        return Path(config.out_dir)
    stem = Path(config_path).stem if config_path else "run"
    return (Path("runs") / stem).absolute()


def prepare_run(args: argparse.Namespace) -> tuple["Config", Path]:
    from tadkit.engine.config import load_config

    config = load_config(args.config, args.overrides)
    out_dir = resolve_out_dir(config, args.out, args.config)
    config.out_dir = str(out_dir)  # the resolved config beside the run names where it lives
    return config, out_dir


def run_train(
    args: argparse.Namespace,
    build_datasets_fn: "BuildDatasetsFn | None" = None,
    make_evaluate_fn: MakeEvaluateFn | None = None,
) -> int:
    """Load the config, train, print where the results are. Returns the exit code.

    :func:`tadkit.engine.trainer.train` claims the run directory (writable, locked against a second
    run) before any data is loaded, and turns a full or read-only disk into a TadkitError (exit 2).
    """
    from tadkit.engine.trainer import train

    config, out_dir = prepare_run(args)
    evaluate_fn = make_evaluate_fn(config, out_dir) if make_evaluate_fn is not None else None
    result = train(
        config, out_dir, args.resume, build_datasets_fn, evaluate_fn, progress=not args.no_progress
    )
    if int(os.environ.get("RANK", "0")) == 0:  # torchrun: only rank 0 reports
        if args.no_progress:  # with progress the trainer already showed them as they came
            for note in result.notes:  # also in train.log
                print(f"note: {note}")
        print(f"trained {result.epoch} epoch(s); checkpoints, history.json and train.log in {out_dir}")
        if result.best is not None:
            unit = "step" if "step" in result.best else "epoch"  # iteration-based runs record the step
            print(f"best {result.best['metric']} {result.best['value']:.4f} at {unit} {result.best[unit]} -> {result.best_checkpoint}")
    return 0


__all__ = ["add_train_arguments", "prepare_run", "resolve_out_dir", "run_train"]
