"""Checkpoints: everything a killed run needs to continue bit-for-bit, in weights_only-safe types.

A checkpoint is a dict of tensors and plain Python values (``torch.load(..., weights_only=True)``
reads it; no pickled classes)::

    format          "tadkit-checkpoint/1"
    model_name      registry name, e.g. "a2net"
    model_config    kwargs that rebuild the model: build_model(model_name, **model_config)
    model           state_dict (DDP prefix stripped)
    model_ema       state_dict of the weights' moving average (only with train.model_ema_decay): the
                    weights the run evaluates, and what load_checkpoint_model loads
    optimizer, scheduler, scaler   their state_dicts (scaler: None without AMP)
    epoch           last completed epoch (1-based); global_step: optimizer steps so far
    rng             {"world_size": W, "per_rank": [rng state of rank r, ...]} (see capture_rng_state)
    sampler         {"seed", "epoch"}: the data order of epoch e is a function of (seed, e) only
    config          Config.to_dict() of the run
    history         list of per-epoch records (what history.json holds)
    best            {"metric", "value", "epoch"} or None
    versions        {"tadkit", "torch"}

Files in a run directory (see :class:`CheckpointManager`): ``last.pt``, the newest full checkpoint
(what ``--resume`` continues from); ``best.pt``, weights only, when ``train.best_metric`` is set; and
``epoch_XXX.pt`` / ``step_XXXXXX.pt`` snapshots only when ``train.keep_checkpoints`` or
``train.keep_epochs`` ask for them (weights only unless ``train.snapshot_state: full``). A weights-only
file (``"weights_only": True``) drops the optimizer, scheduler, scaler and RNG states: for A2Net at the
official widths 262 MB instead of 786 MB. ``tadkit test`` and ``tadkit detect`` read either kind.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from tadkit.errors import TadkitError
from tadkit.models.base import strip_ddp_prefix
from tadkit.utils.io import atomic_open, check_input_file, torch_save

CHECKPOINT_FORMAT = "tadkit-checkpoint/1"
LAST = "last.pt"
BEST = "best.pt"
_PROGRESS_RE = re.compile(r"^(epoch|step)_(\d+)\.pt$")
REQUIRED_KEYS = ("model_name", "model_config", "model", "epoch")
EMA_KEY = "model_ema"  # the moving average of the weights (train.model_ema_decay)
RESUME_KEYS = ("optimizer", "scheduler", "global_step", "rng", "config")
TRAINING_STATE_KEYS = ("optimizer", "scheduler", "scaler", "rng", "sampler")  # what a weights-only file drops
SNAPSHOT_FULL = "full"
LINK_SUFFIX = ".link"  # last.pt / best.pt are made as ".<name>.<pid>.link" then renamed


def epoch_filename(epoch: int, prefix: str = "epoch") -> str:
    """``epoch_003.pt`` (epoch-based runs) or ``step_000300.pt`` (iteration-based runs)."""
    return f"{prefix}_{epoch:03d}.pt" if prefix == "epoch" else f"{prefix}_{epoch:06d}.pt"


# --------------------------------------------------------------------------------------------------
# RNG state <-> weights_only-safe values
# --------------------------------------------------------------------------------------------------


def capture_rng_state() -> dict[str, Any]:
    """Python, NumPy, torch (and CUDA) generator states as tensors / ints / floats / None.

    ``random.getstate()`` is ``(version, tuple of 625 ints, gauss_next)`` and NumPy's legacy state is
    ``('MT19937', uint32[624], pos, has_gauss, cached_gaussian)``; tuples of ints and NumPy arrays are
    not what the weights_only unpickler is for, so both become int64 tensors here.
    """
    version, internal, gauss_next = random.getstate()
    bit_generator, keys, pos, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": {"version": int(version), "state": torch.tensor(internal, dtype=torch.int64), "gauss_next": gauss_next},
        "numpy": {
            "bit_generator": str(bit_generator),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "torch": torch.get_rng_state(),
        "cuda": [s for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
    }
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    py = state["python"]
    random.setstate((int(py["version"]), tuple(int(x) for x in py["state"].tolist()), py["gauss_next"]))
    npy = state["numpy"]
    np.random.set_state(
        (
            npy["bit_generator"],
            npy["keys"].numpy().astype(np.uint32),
            int(npy["pos"]),
            int(npy["has_gauss"]),
            float(npy["cached_gaussian"]),
        )
    )
    torch.set_rng_state(state["torch"].cpu())
    cuda_states = state.get("cuda") or []
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states])


# --------------------------------------------------------------------------------------------------
# Reading and writing
# --------------------------------------------------------------------------------------------------


def save_checkpoint(payload: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write atomically (temp file + rename): a kill mid-write leaves the previous file intact.

    A full disk, a read-only file system or a missing permission raises
    :class:`tadkit.utils.io.WriteFailure` (a TadkitError naming ``path``; PyTorch's own report of a
    full disk is ``RuntimeError: unexpected pos ...``), with the previous file intact and no temp file.
    """
    data = dict(payload)
    data.setdefault("format", CHECKPOINT_FORMAT)
    torch_save(data, path)
    return Path(path)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu",
                    require: tuple[str, ...] = REQUIRED_KEYS) -> dict[str, Any]:
    """Load a tadkit checkpoint with ``weights_only=True``; anything else is a clear TadkitError."""
    path = check_input_file(path, "checkpoint")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except MemoryError:
        raise TadkitError("not a readable PyTorch checkpoint (it asks for more memory than there is)",
                          file=str(path)) from None
    except Exception as error:  # noqa: BLE001 - a text or cut file fails anywhere in the unpickler (KeyError too)
        text = str(error).strip().splitlines()[0] if str(error).strip() else ""
        # PyTorch's own messages explain themselves; a bare KeyError(104) needs its type to mean anything
        explained = isinstance(error, (pickle.UnpicklingError, RuntimeError)) and text
        reason = text if explained else f"{type(error).__name__}: {text}".rstrip(": ")
        raise TadkitError(f"not a readable PyTorch checkpoint ({reason})", file=str(path)) from None
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise TadkitError(
            f"not a tadkit checkpoint (format {found!r}, expected {CHECKPOINT_FORMAT!r}); official "
            "weights are imported with `tadkit convert`",
            file=str(path),
            field="format",
        )
    for key in require:
        if key not in data:
            if data.get("weights_only") and key in RESUME_KEYS:
                raise TadkitError("is a weights-only checkpoint (no optimizer or RNG state): a run continues "
                                  f"from its {LAST}", file=str(path), field=key)
            raise TadkitError("checkpoint is missing this entry", file=str(path), field=key)
    return data


def weights_only(payload: Mapping[str, Any]) -> dict[str, Any]:
    """``payload`` without the training state: what `tadkit test` / `detect` need, a third of an Adam run's."""
    data = {key: value for key, value in payload.items() if key not in TRAINING_STATE_KEYS}
    data["weights_only"] = True
    return data


def _link_or_copy(src: Path, dst: Path) -> None:
    """Atomically make ``dst`` hold ``src``: a hard link (no second write of a large file) or a copy."""
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}{LINK_SUFFIX}")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        os.link(src, tmp)
        os.replace(tmp, dst)
        return
    except OSError:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    with open(src, "rb") as source, atomic_open(dst, "wb") as target:
        shutil.copyfileobj(source, target, length=16 << 20)


class CheckpointManager:
    """The checkpoint files of a run directory, written after every epoch (or checkpoint step).

    * ``last.pt``: the full state (model, optimizer, scheduler, RNG, history), replaced atomically each
      time; ``--resume`` reads it.
    * ``best.pt``: weights only, when the epoch is the best so far (``train.best_metric``).
    * ``epoch_XXX.pt`` (``step_XXXXXX.pt``): a snapshot only when ``keep`` > 0 (``None`` = every one) or
      the epoch is in ``keep_epochs``; the newest ``keep`` survive pruning, and ``keep_epochs`` always.
      Weights only unless ``snapshot_state`` is ``"full"`` (then a run can restart from one).
    """

    def __init__(self, directory: str | os.PathLike, keep: int | None = 0,
                 keep_epochs: tuple[int, ...] | list[int] = (), prefix: str = "epoch",
                 snapshot_state: str = "weights") -> None:
        self.directory = Path(directory)
        self.prefix = prefix
        self.keep = keep
        self.keep_epochs = set(int(e) for e in keep_epochs)
        self.full_snapshots = snapshot_state == SNAPSHOT_FULL

    @property
    def last_path(self) -> Path:
        return self.directory / LAST

    @property
    def best_path(self) -> Path:
        return self.directory / BEST

    def epoch_path(self, epoch: int) -> Path:
        return self.directory / epoch_filename(epoch, self.prefix)

    def epoch_files(self) -> dict[int, Path]:
        out = {}
        if self.directory.is_dir():
            for path in self.directory.iterdir():
                match = _PROGRESS_RE.match(path.name)
                if match and match.group(1) == self.prefix:
                    out[int(match.group(2))] = path
        return dict(sorted(out.items()))

    def snapshots(self, epoch: int) -> bool:
        """Whether epoch (step) ``epoch`` gets an ``epoch_XXX.pt`` file."""
        return self.keep is None or self.keep > 0 or epoch in self.keep_epochs

    def save(self, payload: Mapping[str, Any], epoch: int, best: bool = False) -> Path:
        """Write ``last.pt`` first (what a resume needs; the others can be lost without harm), then the
        snapshot and ``best.pt`` (one weights-only write, hard-linked when both are due); prune."""
        last = save_checkpoint(payload, self.last_path)
        light: Path | None = None
        if self.snapshots(epoch):
            snapshot = self.epoch_path(epoch)
            if self.full_snapshots:
                _link_or_copy(last, snapshot)
            else:
                light = save_checkpoint(weights_only(payload), snapshot)
        if best:
            if light is not None:
                _link_or_copy(light, self.best_path)
            else:
                save_checkpoint(weights_only(payload), self.best_path)
        self.prune()
        return last

    def prune(self) -> list[Path]:
        """Delete snapshots beyond the newest ``keep`` (never ``keep_epochs``, last.pt, best.pt)."""
        if self.keep is None:
            return []
        files = self.epoch_files()
        doomed = [p for e, p in list(files.items())[: max(len(files) - self.keep, 0)] if e not in self.keep_epochs]
        for path in doomed:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        return doomed


@dataclass(frozen=True)
class DiskEstimate:
    """Expected size of a run's checkpoint files (bytes), from the model's and optimizer's tensors."""

    full: int  # last.pt (and each snapshot with snapshot_state: full)
    weights: int  # best.pt and each weights-only snapshot
    snapshots: int  # epoch / step snapshot files at the end of the run
    full_snapshots: bool
    best: bool

    @property
    def total(self) -> int:
        return self.full + self.best * self.weights + self.snapshots * (self.full if self.full_snapshots else self.weights)

    @property
    def peak(self) -> int:
        """While ``last.pt`` is replaced, its temp file and the previous one both exist."""
        return self.total + self.full

    def describe(self, prefix: str = "epoch", free: int | None = None) -> str:
        kind = "full" if self.full_snapshots else "weights-only"
        parts = [f"last.pt {format_size(self.full)} (weights + optimizer state)"]
        if self.best:
            parts.append(f"best.pt {format_size(self.weights)} (weights only)")
        parts.append(f"{self.snapshots} {prefix} snapshot{'s' * (self.snapshots != 1)}"
                     + (f" x {format_size(self.full if self.full_snapshots else self.weights)} ({kind})" if self.snapshots else "")
                     + " (train.keep_checkpoints / keep_epochs)")
        text = f"checkpoints: {', '.join(parts)}; about {format_size(self.total)} on disk, {format_size(self.peak)} while last.pt is replaced"
        if free is not None:
            text += f" ({format_size(free)} free)"
        return text


def _tensor_bytes(tensors: Any) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if torch.is_tensor(t))


def estimate_checkpoint_disk(model: nn.Module, optimizer: torch.optim.Optimizer, manager: CheckpointManager,
                             marks: list[int], best: bool, ema: bool = False) -> DiskEstimate:
    """What ``manager`` will hold once checkpoints were written at ``marks`` (epochs, or steps of an
    iteration-based run). The optimizer state is counted as Adam's two moments per trainable parameter
    (tadkit's optimizers are Adam and AdamW); ``ema``: every file also holds the averaged weights."""
    weights = _tensor_bytes(model.state_dict().values()) * (2 if ema else 1)
    moments = 2 * sum(_tensor_bytes(group["params"]) for group in optimizer.param_groups)
    marks = sorted(set(marks))
    if manager.keep is None:
        snapshots = len(marks)
    else:
        newest = set(marks[len(marks) - manager.keep:]) if manager.keep else set()
        snapshots = len(newest | (manager.keep_epochs & set(marks)))
    return DiskEstimate(full=weights + moments, weights=weights, snapshots=snapshots,
                        full_snapshots=manager.full_snapshots, best=best)


def format_size(num_bytes: float) -> str:
    """``786 MB``, ``1.2 GB``: decimal units, as disk sizes are sold."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if num_bytes >= scale:
            value = num_bytes / scale
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{int(num_bytes)} B"


# --------------------------------------------------------------------------------------------------
# Model restore for inference
# --------------------------------------------------------------------------------------------------


def load_checkpoint_model(path: str | os.PathLike, device: str | torch.device = "cpu"):
    """Rebuild the model of a tadkit checkpoint (eval mode) and return ``(model, config)``.

    The model comes from ``build_model(model_name, **model_config)`` and loads its weights with
    ``strict=True`` (the ``model_ema`` weights when the run kept a moving average: the model it
    evaluated); ``config`` is the run's :class:`tadkit.engine.config.Config`.
    """
    # model-only checkpoints (e.g. `tadkit convert a2net-official`) have no training state
    data = load_checkpoint(path, map_location="cpu", require=("model_name", "model_config", "model"))
    return build_checkpoint_model(data, path, device)


def build_checkpoint_model(data: dict[str, Any], path: str | os.PathLike, device: str | torch.device = "cpu"):
    """:func:`load_checkpoint_model` on a checkpoint already read with :func:`load_checkpoint` (``require``
    model_name, model_config, model), for callers that also need its other entries: the file is read once."""
    from tadkit.engine.config import Config
    from tadkit.methods import get_method

    # a checkpoint is data: the method it names must already be known (never a module to import)
    spec = get_method(str(data["model_name"]), field="model_name", file=str(path), allow_import=False)
    # lenient: a checkpoint must stay loadable when later tadkit versions add or drop config keys
    if "config" in data:
        config = Config.from_dict(data["config"], file=path, strict=False, from_data=True)
    else:
        config = Config.from_dict({"model": {"name": str(data["model_name"])}}, file=path, from_data=True)
    model_config = data["model_config"]
    if not isinstance(model_config, dict):
        raise TadkitError("model_config must be a mapping", file=str(path), field="model_config")
    weights_key = EMA_KEY if data.get(EMA_KEY) is not None else "model"
    try:
        check_config_fits_weights(path, data[weights_key], lambda: spec.build(**model_config))
        model = spec.build(**model_config)
    except TadkitError as error:
        raise TadkitError(error.message, file=str(path), field=error.field or "model_name") from None
    except (TypeError, ValueError, RuntimeError, MemoryError) as error:  # RuntimeError: the allocator
        raise TadkitError(f"cannot build the model from model_config: {error}", file=str(path), field="model_config") from None
    state = strip_ddp_prefix(data[weights_key])
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        summary = " ".join(str(error).split())[:400]
        raise TadkitError(f"weights do not fit the model: {summary}", file=str(path), field=weights_key) from None
    model.to(device)
    model.eval()
    return model, config


def check_config_fits_weights(path: str | os.PathLike, state: Mapping[str, Any], build: Any) -> None:
    """Refuse a ``model_config`` that asks for other tensors than the checkpoint's weights, before any
    memory is allocated: ``build()`` runs on the meta device (shapes only), so a hostile size such as
    ``in_dim: 10**12`` costs nothing and the weights bound what the file may ask for."""
    if not isinstance(state, Mapping):
        raise TadkitError(f"model must be a state_dict (names -> tensors), got {type(state).__name__}",
                          file=str(path), field="model")
    try:
        with torch.device("meta"):
            probe = build()
    except (NotImplementedError, RuntimeError):  # a model that computes values while it is built
        return  # cannot be probed on meta; strict loading still compares every tensor
    wanted = {name: tuple(t.shape) for name, t in probe.state_dict().items()}
    given = {name: tuple(t.shape) for name, t in strip_ddp_prefix(state).items() if isinstance(t, torch.Tensor)}
    wrong = sorted(name for name in wanted.keys() & given.keys() if wanted[name] != given[name])
    if wrong:
        name = wrong[0]
        raise TadkitError(f"weights do not fit the model: its model_config makes {name} of shape "
                          f"{list(wanted[name])} but the checkpoint's is {list(given[name])} ({len(wrong)} tensor(s) "
                          "differ)", file=str(path), field="model")


def model_config_of(model: nn.Module, fallback: Mapping[str, Any]) -> dict[str, Any]:
    """The kwargs that rebuild ``model``: its ``config_dict()`` when it has one."""
    getter = getattr(model, "config_dict", None)
    return dict(getter()) if callable(getter) else dict(fallback)


__all__ = [
    "BEST",
    "EMA_KEY",
    "CHECKPOINT_FORMAT",
    "LAST",
    "CheckpointManager",
    "DiskEstimate",
    "estimate_checkpoint_disk",
    "format_size",
    "weights_only",
    "capture_rng_state",
    "epoch_filename",
    "load_checkpoint",
    "build_checkpoint_model",
    "load_checkpoint_model",
    "model_config_of",
    "restore_rng_state",
    "save_checkpoint",
    "strip_ddp_prefix",
]
