"""`tadkit train CONFIG [--set k=v ...] [--out DIR] [--resume]` (DDP under `torchrun -m tadkit.cli train`)."""

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

    return run_train(args, make_evaluate_fn=make_evaluate_fn)
