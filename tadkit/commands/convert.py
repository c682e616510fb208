"""`tadkit convert`: turn third-party checkpoints into tadkit checkpoints.

    tadkit convert a2net-official IN.pth OUT.pt [--window 128] [--anchor-ratios 0.5 0.75 1 1.5 2]

A tadkit checkpoint is ``{"model": state_dict, "model_name": str, "model_config": dict}``; rebuild it
with ``tadkit.models.build_model(ckpt["model_name"], **ckpt["model_config"])``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tadkit.errors import TadkitError


def load_official_state_dict(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; accept a raw state_dict or one nested under
    ``"state_dict"`` / ``"model"`` (the official training script saves ``{"epoch", "model", "optimizer"}``)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise TadkitError("checkpoint file not found", file=str(path))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - corrupt files raise anything from KeyError to UnpicklingError
        text = str(error).strip()
        reason = f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__
        raise TadkitError(f"cannot read a PyTorch checkpoint (weights_only=True): {reason}", file=str(path)) from error
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj:
        raise TadkitError(f"expected a state_dict (dict of tensors), got {type(obj).__name__}", file=str(path))
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise TadkitError("state_dict entry is not a tensor", file=str(path), field=str(bad[0]))
    from tadkit.models.a2net import strip_module_prefix

    return {strip_module_prefix(k): v for k, v in obj.items()}


def convert_a2net_official(
    src: str | Path, dst: str | Path, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Convert an official A2Net checkpoint; returns the saved model config."""
    from tadkit.models.a2net import A2Net
    from tadkit.engine.checkpoint import CHECKPOINT_FORMAT
    from tadkit.utils.io import torch_save

    state_dict = load_official_state_dict(src)
    model = A2Net.from_official_state_dict(state_dict, source=str(src), **(overrides or {}))
    config = model.config_dict()
    try:
        torch_save({"format": CHECKPOINT_FORMAT, "model": model.state_dict(), "model_name": "a2net",
                    "model_config": config}, dst)
    except OSError as error:
        raise TadkitError(f"cannot write the converted checkpoint: {error.strerror or error}", file=str(dst)) from error
    return config


def _run_a2net(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {}
    if args.window is not None:
        overrides["window"] = args.window
    if args.anchor_ratios is not None:
        overrides["anchor_ratios"] = tuple(args.anchor_ratios)
    config = convert_a2net_official(args.input, args.output, overrides)
    dims = "/".join(str(d) for d in config["pyramid_dims"])
    print(
        f"converted {args.input} -> {args.output}: a2net, in_dim {config['in_dim']}, base {config['base_dim']}, "
        f"pyramid {dims}, {config['num_classes']} classes, branches {config['branches']}"
    )
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("convert", help="convert third-party checkpoints to tadkit checkpoints")
    kinds = parser.add_subparsers(dest="kind", metavar="KIND")
    a2net = kinds.add_parser(
        "a2net-official",
        help="official A2Net (LeYangNwpu/A2Net) checkpoint -> tadkit checkpoint",
        description="Read the authors' checkpoint (raw state_dict, or nested under 'state_dict'/'model'), "
        "infer the widths from the tensor shapes and save {model, model_name, model_config}.",
    )
    a2net.add_argument("input", help="official .pth file")
    a2net.add_argument("output", help="tadkit checkpoint to write (.pt)")
    a2net.add_argument("--window", type=int, default=None, help="features per window (default 128)")
    a2net.add_argument(
        "--anchor-ratios", type=float, nargs="+", default=None, help="anchor ratios (default 0.5 0.75 1 1.5 2)"
    )
    a2net.set_defaults(func=_run_a2net)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)
