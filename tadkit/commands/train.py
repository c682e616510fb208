"""`tadkit train CONFIG [--set k=v ...] [--out DIR] [--resume]` (DDP under `torchrun -m tadkit.cli train`)."""

from __future__ import annotations


def register(subparsers) -> None:
    from tadkit.engine.run import add_train_arguments, run_train
    from tadkit.pipeline import make_evaluate_fn

    parser = subparsers.add_parser(
        "train", help="train a model from a YAML config",
        description="Train from a YAML config; checkpoints (atomic, each epoch), resolved config, history.json, "
        "TensorBoard logs and train.log go to --out. Evaluates on the test subset every train.eval_every epochs.",
    )
    add_train_arguments(parser)
    parser.set_defaults(func=lambda args: run_train(args, make_evaluate_fn=make_evaluate_fn))
