"""`tadkit train CONFIG [--set k=v ...] [--out DIR] [--resume] [--seeds 0,1,2 [--parallel N] [--devices ...]]`
(DDP under `torchrun -m tadkit.cli train`)."""

from __future__ import annotations


def register(subparsers) -> None:
    from tadkit.commands import add_method_module_argument
    from tadkit.engine.run import add_train_arguments

    parser = subparsers.add_parser(
        "train", help="train a method from a YAML config",
        description="Train the method of a YAML config (model.name); checkpoints (atomic), resolved config, "
        "history.json, TensorBoard logs and train.log go to --out. Evaluates on the test subset every "
        "train.eval_every epochs (iterations in an iteration-based run).",
    )
    add_train_arguments(parser)
    add_method_module_argument(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    from tadkit.commands import load_method_modules
    from tadkit.engine.run import run_train
    from tadkit.pipeline import make_evaluate_fn

    load_method_modules(args)
    if args.seeds is not None:
        from tadkit.engine.seeds import run_seeds

        return run_seeds(args, make_evaluate_fn=make_evaluate_fn)
    if args.parallel != 1 or args.devices:
        from tadkit.errors import TadkitError

        raise TadkitError("--parallel and --devices need --seeds", field="--seeds")
    return run_train(args, make_evaluate_fn=make_evaluate_fn)
