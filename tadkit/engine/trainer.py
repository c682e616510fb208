"""The training loop every method shares: optimizers, LR schedules, seeds, DDP, AMP, checkpoints, resume, logs.

The loop knows no method: it hands the whole batch to ``model(batch)`` and ``model.loss(outputs,
batch)`` (the contract in :mod:`tadkit.methods.base`). Runs are epoch-based (``train.epochs``) or
iteration-based (``train.iterations``: the data is cycled epoch after epoch until that many
optimizer steps, with evaluation and checkpoints every ``eval_every`` / ``checkpoint_every`` steps).

Reproducibility contract (what makes ``--resume`` continue a killed run exactly):

* the sample order of epoch ``e`` is a function of ``(train.seed, e)`` only: a ``DistributedSampler``
  (also with one process) reseeded with ``set_epoch(e)``, and a DataLoader generator reseeded per
  epoch for worker seeds; a run resumed inside an epoch skips the sample indices it already used;
* the learning rate is a pure function of the config and the progress (:func:`lr_at`), so a resumed
  run continues the schedule whatever changed in between;
* every other random draw (random negatives in losses, random resampling in datasets) comes from the
  global Python / NumPy / torch generators, whose states are stored in each checkpoint (per rank)
  at the epoch boundary and restored on resume;
* ``train.batch_size`` is the GLOBAL batch: with W processes each takes batch_size / W samples of the
  same global batch, so 1 process x 2b and 2 processes x b see the same samples per step.

Outputs in ``out_dir`` (rank 0 only): ``config.yaml`` (resolved config), ``last.pt`` (full state) and
``best.pt`` (weights only), ``epoch_XXX.pt`` (``step_XXXXXX.pt`` in iteration-based runs) snapshots when
``train.keep_checkpoints`` / ``keep_epochs`` ask for them (see :class:`CheckpointManager`),
``history.json``, ``train.log`` (it starts with the checkpoints' expected disk use), ``tensorboard/``.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, TextIO

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from tadkit import __version__
from tadkit.engine.checkpoint import (
    EMA_KEY,
    LINK_SUFFIX,
    RESUME_KEYS,
    CheckpointManager,
    capture_rng_state,
    estimate_checkpoint_disk,
    format_size,
    load_checkpoint,
    model_config_of,
    restore_rng_state,
)
from tadkit.engine.data import TrainData
from tadkit.engine.ema import ModelEMA
from tadkit.models.base import strip_ddp_prefix
from tadkit.engine.config import Config, save_resolved
from tadkit.engine.distributed import (
    DistContext,
    all_gather_objects,
    all_reduce_mean,
    amp_enabled,
    autocast,
    broadcast_object,
    cleanup_distributed,
    init_distributed,
    make_grad_scaler,
    wrap_ddp,
)
from tadkit.errors import TadkitError
from tadkit.utils.io import (
    WRITE_ONLY_ERRNOS,
    DirectoryLock,
    DirectoryLocked,
    WriteFailure,
    ensure_writable_dir,
    lock_directory,
    remove_stale_tmp,
    translate_write_errors,
    write_failure,
    write_json,
)
from tadkit.utils.progress import progress

HISTORY_FORMAT = "tadkit-history/1"

EvaluateFn = Callable[[nn.Module, int], Mapping[str, float]]


BuildDatasetsFn = Callable[[Config], "TrainData | Dataset"]
BuildModelFn = Callable[[Config], nn.Module]


@dataclass
class TrainResult:
    out_dir: Path
    epoch: int  # last completed epoch
    global_step: int
    history: list[dict[str, Any]]
    last_checkpoint: Path | None
    best_checkpoint: Path | None = None
    best: dict[str, Any] | None = None  # {"metric", "value", "epoch"}
    resumed_from: int | None = None  # epoch of the checkpoint the run continued from
    metrics: dict[str, float] = field(default_factory=dict)  # of the last evaluation
    notes: list[str] = field(default_factory=list)  # what the run left out (skipped videos), also in train.log


# --------------------------------------------------------------------------------------------------
# Small pieces (each unit-tested)
# --------------------------------------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """A seed that depends on (seed, epoch, rank) only (DataLoader worker seeds, RNG fallback on resume)."""
    return (seed * 1_000_003 + epoch * 9_973 + rank) % (2**63 - 1)


@contextlib.contextmanager
def determinism(enabled: bool, device: torch.device):
    """Deterministic kernels for the duration of a run; the caller's global flags are restored after.

    Only CUDA needs ``torch.use_deterministic_algorithms`` (cuBLAS / cuDNN / atomics); CPU kernels are
    already reproducible for a fixed thread count, and the call imports the whole compiler stack
    (seconds per process), so on CPU seeding is all ``train.deterministic`` does.
    """
    if not (enabled and device.type == "cuda"):
        yield
        return
    previous = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it for determinism
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = previous[2], previous[3]


def per_process_batch(batch_size: int, world_size: int) -> int:
    if batch_size % world_size:
        raise TadkitError(
            f"the global batch {batch_size} does not split evenly over {world_size} processes",
            field="train.batch_size",
        )
    return batch_size // world_size


def _group_of(name: str, config: Config) -> int:
    """Index of the first ``train.param_groups`` rule whose regex matches ``name``; -1 = the default group."""
    for index, rule in enumerate(config.train.param_groups):
        if re.search(rule["params"], name):
            return index
    return -1


def group_settings(config: Config, index: int) -> tuple[float, float]:
    """(base lr, weight decay) of parameter group rule ``index`` (-1 = the default group)."""
    cfg = config.train
    if index < 0:
        return cfg.lr, cfg.weight_decay
    rule = config.train.param_groups[index]
    lr = float(rule["lr"]) if rule.get("lr") is not None else cfg.lr * float(rule.get("lr_scale", 1.0))
    decay = float(rule["weight_decay"]) if rule.get("weight_decay") is not None else cfg.weight_decay
    return lr, decay


DECAYED_WEIGHT_MODULES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def decayed_parameter_names(model: nn.Module, config: Config) -> set[str]:
    """Names of the parameters weight decay applies to (``train.weight_decay_params``).

    ``weights``: only the ``weight`` of Linear / Conv layers (the minGPT rule ActionFormer's
    make_optimizer follows): biases, norm weights, scales and embeddings are not decayed.
    """
    names = {name for name, _ in model.named_parameters()}
    if config.train.weight_decay_params == "all":
        return names
    return {f"{module_name}.weight" if module_name else "weight"
            for module_name, module in model.named_modules()
            if isinstance(module, DECAYED_WEIGHT_MODULES) and getattr(module, "weight", None) is not None} & names


def build_optimizer(model: nn.Module, config: Config) -> torch.optim.Optimizer:
    """Adam or AdamW over the trainable parameters, in ``train.param_groups`` (first regex match wins).

    Each group records its rule index (``"rule"``) so a resumed run can re-apply the config's values;
    with ``train.weight_decay_params: weights`` each rule splits into a decayed group and one marked
    ``"no_decay"`` (weight decay 0).
    """
    decayed = decayed_parameter_names(model, config)
    members: dict[tuple[int, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            members.setdefault((_group_of(name, config), name not in decayed), []).append(param)
    groups = []
    # rules in order, the default group last; within a rule the decayed parameters first (as ActionFormer)
    for index, no_decay in sorted(members, key=lambda key: (key[0] < 0, key[0], key[1])):
        lr, decay = group_settings(config, index)
        group = {"params": members[(index, no_decay)], "lr": lr, "weight_decay": 0.0 if no_decay else decay,
                 "rule": index}
        if no_decay:
            group["no_decay"] = True
        groups.append(group)
    if not groups:
        raise TadkitError("the model has no trainable parameter", field="model.name")
    kind = torch.optim.AdamW if config.train.optimizer == "adamw" else torch.optim.Adam
    return kind(groups, lr=config.train.lr, betas=tuple(config.train.betas), weight_decay=config.train.weight_decay)


def schedule_length(config: Config, steps_per_epoch: int) -> int:
    """Length of the LR schedule in its own units (epochs or iterations)."""
    cfg = config.train
    if cfg.scheduler_unit == "iteration":
        return cfg.iterations if cfg.iterations else cfg.epochs * steps_per_epoch
    return cfg.epochs if not cfg.iterations else max(1, math.ceil(cfg.iterations / max(steps_per_epoch, 1)))


def warmup_length(config: Config, steps_per_epoch: int = 1) -> int:
    """Warm-up length in scheduler units: ``train.warmup_epochs`` (x steps per epoch when the schedule
    steps per iteration) when set, else ``train.warmup``."""
    cfg = config.train
    if cfg.warmup_epochs is None:
        return cfg.warmup
    return cfg.warmup_epochs * (steps_per_epoch if cfg.scheduler_unit == "iteration" else 1)


def lr_at(base_lr: float, config: Config, progress: int, total: int, steps_per_epoch: int = 1) -> float:
    """The learning rate after ``progress`` scheduler steps (epochs or iterations) of ``total``.

    ``multistep``: ``lr *= lr_gamma`` after each milestone, multiplied in the order MultiStepLR
    does (bit-identical to it); ``cosine``: from lr to ``lr x min_lr_factor`` over the schedule
    (closed form of CosineAnnealingLR); both after an optional linear warm-up of
    :func:`warmup_length` steps: ``lr x (p + 1) / (W + 1)``, or with ``train.warmup_from_zero``
    ``lr x p / (W - 1)`` (the closed form of ActionFormer's LinearWarmupCosineAnnealingLR, whose
    first step has lr 0 and whose step W - 1 already has the full lr).
    """
    cfg = config.train
    warmup = warmup_length(config, steps_per_epoch)
    if warmup and progress < warmup:
        if cfg.warmup_from_zero:
            return base_lr * progress / (warmup - 1) if warmup > 1 else 0.0
        return base_lr * (progress + 1) / (warmup + 1)
    if cfg.scheduler == "cosine":
        span = max(total - warmup, 1)
        t = min(progress - warmup, span)
        low = base_lr * cfg.min_lr_factor
        return low + (base_lr - low) * (1 + math.cos(math.pi * t / span)) / 2
    milestones = cfg.lr_decay_iterations if cfg.scheduler_unit == "iteration" else cfg.lr_decay_epochs
    lr = base_lr
    for milestone in milestones:
        if milestone <= progress:
            lr *= cfg.lr_gamma
    return lr


def scheduled_lr(config: Config, completed_epochs: int) -> float:
    """The default group's learning rate after ``completed_epochs`` epochs of an epoch-unit schedule."""
    return lr_at(config.train.lr, config, completed_epochs, config.train.epochs)


class ConfigSchedule(torch.optim.lr_scheduler.LRScheduler):
    """The config's LR schedule as a PyTorch scheduler: ``step()`` once per epoch or per iteration
    (``train.scheduler_unit``); the lr of every group is :func:`lr_at` of its base lr."""

    def __init__(self, optimizer: torch.optim.Optimizer, config: Config, steps_per_epoch: int = 1) -> None:
        self.config, self.steps_per_epoch = config, steps_per_epoch
        self.total = schedule_length(config, steps_per_epoch)
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:
        return [lr_at(base, self.config, self.last_epoch, self.total, self.steps_per_epoch) for base in self.base_lrs]

    def state_dict(self) -> dict[str, Any]:  # the config is not state: it comes from the run's config
        return {k: v for k, v in super().state_dict().items() if k not in ("config", "total", "steps_per_epoch")}


def build_scheduler(optimizer: torch.optim.Optimizer, config: Config, steps_per_epoch: int = 1) -> ConfigSchedule:
    return ConfigSchedule(optimizer, config, steps_per_epoch)


def apply_config_schedule(optimizer: torch.optim.Optimizer, scheduler: ConfigSchedule, config: Config,
                          completed: int) -> None:
    """After loading a checkpoint: the config's lr / schedule / weight decay win over the stored ones.

    ``completed`` = scheduler steps taken (epochs or iterations). With an unchanged config the values
    are bit-identical to the stored ones; Adam's moment estimates are kept either way.
    """
    scheduler.config = config
    scheduler.total = schedule_length(config, scheduler.steps_per_epoch)
    bases = []
    for group in optimizer.param_groups:
        base, decay = group_settings(config, int(group.get("rule", -1)))
        group["initial_lr"], group["weight_decay"] = base, 0.0 if group.get("no_decay") else decay
        group["lr"] = lr_at(base, config, completed, scheduler.total, scheduler.steps_per_epoch)
        bases.append(base)
    scheduler.base_lrs = bases
    scheduler.last_epoch = completed
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]


def should_evaluate(epoch: int, config: Config) -> bool:
    """Epoch-based runs: evaluate after this epoch? (every ``eval_every``, the last, ``eval_epochs``)."""
    every = config.train.eval_every
    return (every > 0 and (epoch % every == 0 or epoch == config.train.epochs)) or epoch in config.train.eval_epochs


def iteration_marks(step: int, config: Config) -> tuple[bool, bool]:
    """Iteration-based runs: (evaluate, checkpoint) after optimizer step ``step``?"""
    cfg = config.train
    last = step >= (cfg.iterations or 0)
    evaluate = last or (cfg.eval_every > 0 and step % cfg.eval_every == 0)
    every = cfg.checkpoint_every or cfg.eval_every or 100
    return evaluate, evaluate or last or step % every == 0


def move_to_device(value: Any, device: torch.device) -> Any:
    """Tensors (also inside dicts, lists and tuples) onto ``device``; everything else unchanged."""
    if torch.is_tensor(value):
        return value.to(device, non_blocking=True)
    if isinstance(value, dict):
        return {k: move_to_device(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(move_to_device(v, device) for v in value)
    return value


def default_build_model(config: Config) -> nn.Module:
    """The model of the config's method (``model.name``) built with ``model.kwargs``, its ``init_pretrained()``
    called when it has one (training only); config-aware errors."""
    from tadkit.engine.data import method_of

    spec = method_of(config)
    try:
        model = spec.build(**config.model.kwargs)
        # pretrained parts (e.g. an I3D backbone) load when training starts, never when a checkpoint is read
        init_pretrained = getattr(model, "init_pretrained", None)
        if callable(init_pretrained):
            init_pretrained()
        return model
    except TadkitError as error:
        field_name = error.field if error.field and error.field.startswith("model") else f"model.kwargs.{error.field or ''}".rstrip(".")
        raise TadkitError(error.message, file=config.source, field=field_name) from None
    except (TypeError, ValueError) as error:
        raise TadkitError(f"model {config.model.name!r}: {error}", file=config.source, field="model.kwargs") from None


def _as_train_data(value: Any) -> TrainData:
    data = value if isinstance(value, TrainData) else TrainData(train=value)
    if data.collate_fn is None:
        from tadkit.data.windows import collate_windows

        data.collate_fn = collate_windows
    if data.classes is None:
        from tadkit.engine.data import dataset_classes

        data.classes = dataset_classes(data.train)
    return data


class _SkipFirst(torch.utils.data.Sampler):
    """The indices of ``sampler`` from position ``skip`` on (resuming inside an epoch loads nothing twice)."""

    def __init__(self, sampler: DistributedSampler, skip: int) -> None:
        self.sampler, self.skip = sampler, skip

    def __iter__(self):
        return iter(list(self.sampler)[self.skip:])

    def __len__(self) -> int:
        return max(len(self.sampler) - self.skip, 0)


def _flat_diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys = list(dict.fromkeys([*a, *b]))
        return [k for key in keys for k in _flat_diff(a.get(key), b.get(key), f"{prefix}{key}.")]
    return [] if a == b else [prefix.rstrip(".")]


class RunLog:
    """``train.log`` (appended, one line per event; a log is not an output that needs atomic writes)."""

    def __init__(self, path: Path | None, echo: bool) -> None:
        self.echo = echo
        self.handle: TextIO | None = open(path, "a", encoding="utf-8", buffering=1) if path is not None else None

    def __call__(self, message: str, console: bool = False) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        if self.handle is not None:
            self.handle.write(f"{stamp} {message}\n")
        if console and self.echo:
            tqdm.write(message)

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


# --------------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------------


class Trainer:
    """One run in ``out_dir``; build with :func:`train` (it sets up the process group around it)."""

    def __init__(
        self,
        config: Config,
        out_dir: Path,
        data: TrainData,
        model: nn.Module,
        ctx: DistContext,
        evaluate_fn: EvaluateFn | None = None,
        progress: bool = True,
    ) -> None:
        self.config = config
        self.cfg = config.train
        self.out_dir = out_dir
        self.data = data
        self.ctx = ctx
        self.evaluate_fn = evaluate_fn
        self.progress = progress and ctx.is_main
        self.module = model.to(ctx.device)
        # the weights' moving average (train.model_ema_decay): what evaluation, best.pt and `tadkit test` use
        self.ema = ModelEMA(self.module, self.cfg.model_ema_decay) if self.cfg.model_ema_decay is not None else None
        self.model_config = model_config_of(self.module, config.model.kwargs)
        self.amp = amp_enabled(self.cfg.amp, ctx.device)
        self.scaler = make_grad_scaler(self.amp, ctx.device)
        self.batch = per_process_batch(self.cfg.batch_size, ctx.world_size)
        self.sampler = DistributedSampler(
            data.train, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=self.cfg.shuffle,
            seed=self.cfg.seed, drop_last=False,
        )  # fmt: skip
        self.generator = torch.Generator()
        self.loader = self._loader(0)
        if len(self.loader) == 0:
            raise TadkitError(
                f"no training batch: {len(data.train)} samples, batch {self.cfg.batch_size} with drop_last",
                file=config.source, field="train.drop_last",
            )  # fmt: skip
        self.steps_per_epoch = len(self.loader)
        self.optimizer = build_optimizer(self.module, config)
        self.scheduler = build_scheduler(self.optimizer, config, self.steps_per_epoch)
        self.by_iteration = bool(self.cfg.iterations)
        self.ckpt = CheckpointManager(out_dir, self.cfg.keep_checkpoints, self.cfg.keep_epochs,
                                      prefix="step" if self.by_iteration else "epoch",
                                      snapshot_state=self.cfg.snapshot_state)
        self.start_notes: list[str] = []  # said when the run starts (e.g. temp files a killed run left)
        self.epoch = 0  # completed epochs
        self.step_in_epoch = 0  # optimizer steps taken in the epoch in progress (iteration-based runs)
        self.global_step = 0
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        self.resumed_from: int | None = None
        self.last_metrics: dict[str, float] = {}
        self.resume_notes: list[str] = []  # config keys changed since the checkpoint
        self.rng_note = ""
        self.ddp_model: nn.Module = self.module
        self.writer: Any = None
        self.log = RunLog(None, False)
        self._eval_skip_logged = False  # the evaluation subset's skipped videos are logged once
        self.notes: list[str] = []  # TrainResult.notes
        self._sums: dict[str, torch.Tensor] = {}  # loss sums since the last record
        self._counts: dict[str, int] = {}

    def _reset_losses(self) -> None:
        self._sums, self._counts = {}, {}

    def _loader(self, skip_batches: int) -> DataLoader:
        sampler = _SkipFirst(self.sampler, skip_batches * self.batch) if skip_batches else self.sampler
        return DataLoader(
            self.data.train,
            batch_size=self.batch,
            sampler=sampler,
            num_workers=self.cfg.num_workers,
            collate_fn=self.data.collate_fn,
            drop_last=self.cfg.drop_last,
            generator=self.generator,
            pin_memory=self.ctx.device.type == "cuda",
        )

    @property
    def progress_unit(self) -> int:
        """What checkpoints, history and the best-model record count: epochs, or steps when iteration-based."""
        return self.global_step if self.by_iteration else self.epoch

    # ---- resume ----------------------------------------------------------------------------------

    def load_state(self, path: Path) -> None:
        """Continue from a checkpoint written by this trainer (model, optimizer, scheduler, RNG, history)."""
        data = load_checkpoint(path, map_location="cpu", require=("model_name", "model_config", "model", "epoch", *RESUME_KEYS))
        if str(data["model_name"]).lower() != self.config.model.name.lower():
            raise TadkitError(
                f"checkpoint holds model {data['model_name']!r} but the config builds {self.config.model.name!r}",
                file=str(path), field="model.name",
            )  # fmt: skip
        diff = _flat_diff(dict(data["model_config"]), self.model_config)
        if diff:
            raise TadkitError(
                f"checkpoint model config differs from the config's model in {', '.join(diff)}; "
                "resume with the same model settings or train into a new --out",
                file=str(path), field=f"model.kwargs.{diff[0]}",
            )  # fmt: skip
        self.module.load_state_dict(strip_ddp_prefix(data["model"]))
        if self.ema is not None:
            if data.get(EMA_KEY) is not None:
                self.ema.load_state_dict(strip_ddp_prefix(data[EMA_KEY]))
            else:  # the run had no average so far: it starts from the resumed weights
                self.ema.load_state_dict(self.module.state_dict())
                self.start_notes.append("the checkpoint has no weight average (train.model_ema_decay was off before): "
                                        "the average starts from the resumed weights")
        self.optimizer.load_state_dict(data["optimizer"])
        self.scheduler.load_state_dict(data["scheduler"])
        if data.get("scaler") is not None and self.amp:
            self.scaler.load_state_dict(data["scaler"])
        self.epoch = int(data["epoch"])
        self.step_in_epoch = int(data.get("step_in_epoch", 0))
        self.global_step = int(data["global_step"])
        completed = self.global_step if self.cfg.scheduler_unit == "iteration" else self.epoch
        apply_config_schedule(self.optimizer, self.scheduler, self.config, completed)
        self.history = list(data.get("history") or [])
        self.best = data.get("best")
        self.resumed_from = self.progress_unit
        changed = [k for k in _flat_diff(data["config"], self.config.to_dict()) if k != "out_dir"]
        self.resume_notes = changed
        rng = data["rng"]
        per_rank = rng.get("per_rank") or []
        if int(rng.get("world_size", 0)) == self.ctx.world_size and len(per_rank) == self.ctx.world_size:
            restore_rng_state(per_rank[self.ctx.rank])
        else:  # different process count: the data order is unchanged, other draws are reseeded
            seed_everything(epoch_seed(self.cfg.seed, self.epoch, self.ctx.rank))
            self.rng_note = (
                f"checkpoint RNG states are for {rng.get('world_size')} processes, this run has "
                f"{self.ctx.world_size}: random draws reseeded (sample order is unaffected)"
            )

    # ---- outputs ---------------------------------------------------------------------------------

    def _open_outputs(self) -> None:
        if not self.ctx.is_main:
            return
        with translate_write_errors(self.out_dir, "write the run's outputs"):
            self.out_dir.mkdir(parents=True, exist_ok=True)
            save_resolved(self.config, self.out_dir / "config.yaml")
            self.log = RunLog(self.out_dir / "train.log", echo=self.progress)
            if self.cfg.tensorboard:
                try:
                    from torch.utils.tensorboard import SummaryWriter
                except ImportError as error:
                    raise TadkitError(f"TensorBoard is not usable ({error}); install tensorboard or set "
                                      "train.tensorboard=false", field="train.tensorboard") from None
                purge = self.global_step + 1 if self.resumed_from is not None else None
                self.writer = SummaryWriter(log_dir=str(self.out_dir / "tensorboard"), purge_step=purge)

    def _close_outputs(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        self.log.close()

    def _scalar(self, tag: str, value: float, step: int) -> None:
        if self.writer is not None:
            self.writer.add_scalar(tag, value, step)

    def write_history(self) -> None:
        write_json(
            self.out_dir / "history.json",
            {"format": HISTORY_FORMAT, "model": self.config.model.name, "unit": "iteration" if self.by_iteration else "epoch",
             "best": self.best, "epochs": self.history},
        )

    # ---- one step --------------------------------------------------------------------------------

    def _step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        device = self.ctx.device
        batch = move_to_device(batch, device)
        with autocast(self.amp, device):
            outputs = self.ddp_model(batch)
            losses = self.module.loss(outputs, batch)
        if "total" not in losses:
            raise RuntimeError(f"{type(self.module).__name__}.loss() must return a 'total' term, got {sorted(losses)}")
        total = losses["total"]
        if not self.amp:  # with AMP the GradScaler skips non-finite steps itself
            finite = torch.isfinite(total.detach()).float()
            if float(all_reduce_mean(finite, self.ctx)) < 1.0:  # every rank stops together (no DDP hang)
                terms = {k: round(float(torch.as_tensor(v).detach()), 4) for k, v in losses.items()}
                raise TadkitError(
                    f"loss is not finite at epoch {self.epoch + 1}, step {self.global_step + 1} ({terms}); "
                    "check the features for NaN/Inf or lower the learning rate",
                    file=self.config.source, field="train.lr",
                )  # fmt: skip
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        if self.cfg.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update()
        if self.cfg.scheduler_unit == "iteration":
            self.scheduler.step()
        return {k: torch.as_tensor(v, device=device).detach().float() for k, v in losses.items()}

    def _log_step(self, losses: dict[str, torch.Tensor], step: int, steps: int, bar: Any) -> None:
        names = list(losses)
        current = all_reduce_mean(torch.stack([losses[n] for n in names]), self.ctx).tolist()
        for name, value in zip(names, current):
            self._scalar(f"train/{name}", value, self.global_step)
        text = " ".join(f"{n} {v:.4f}" for n, v in zip(names, current))
        self.log(f"epoch {self.epoch + 1} step {step}/{steps} global_step {self.global_step} {text}")
        bar.set_postfix(loss=f"{current[names.index('total')]:.4f}")

    def _reduce(self, sums: dict[str, torch.Tensor], counts: dict[str, int]) -> dict[str, float]:
        names = list(sums)
        if not names:
            return {}
        means = torch.stack([sums[n] / counts[n] for n in names])
        return dict(zip(names, all_reduce_mean(means, self.ctx).tolist()))

    def train_epoch(self, epoch: int, stop_at: Callable[[int], bool] | None = None) -> dict[str, float]:
        """One pass over the data (from ``step_in_epoch`` on); returns the mean of each loss term.

        ``stop_at(global_step)`` (iteration-based runs) ends the pass early after that step.
        """
        self.ddp_model.train()
        self.sampler.set_epoch(epoch)
        self.generator.manual_seed(epoch_seed(self.cfg.seed, epoch))
        loader = self._loader(self.step_in_epoch)
        sums, counts = self._sums, self._counts
        total_steps = self.steps_per_epoch
        label = f"epoch {epoch}/{self.cfg.epochs}" if not self.by_iteration else f"epoch {epoch} (step {self.global_step}/{self.cfg.iterations})"
        bar = progress(loader, desc=label, unit="batch", disable=not self.progress, leave=False, dynamic_ncols=True)
        for batch in bar:
            losses = self._step(batch)
            self.global_step += 1
            self.step_in_epoch += 1
            for name, value in losses.items():
                sums[name] = sums.get(name, 0.0) + value
                counts[name] = counts.get(name, 0) + 1
            if self.cfg.log_every and self.global_step % self.cfg.log_every == 0:
                self._log_step(losses, self.step_in_epoch, total_steps, bar)
            if stop_at is not None and stop_at(self.global_step) and self.step_in_epoch < total_steps:
                break
        bar.close()
        if self.step_in_epoch >= total_steps:  # the epoch is complete
            self.epoch = epoch
            self.step_in_epoch = 0
            if self.cfg.scheduler_unit == "epoch":
                self.scheduler.step()
        return self._reduce(sums, counts)

    def _note(self, message: str) -> None:
        """Something the user must know about the run's data: train.log, the console, TrainResult.notes."""
        self.log(message, console=True)
        self.notes.append(message)

    def evaluate(self, at: int) -> dict[str, float]:
        """``evaluate_fn`` on every rank (so it can shard with predict); rank 0's result wins."""
        evaluated = self.ema.module if self.ema is not None else self.module
        evaluated.eval()
        with torch.no_grad():
            metrics = self.evaluate_fn(evaluated, at) if self.evaluate_fn is not None else {}
        self.module.train()
        if self.ema is not None:
            self.ema.module.eval()
        skipped = getattr(self.evaluate_fn, "skipped", None)  # set by pipeline.make_evaluate_fn
        if skipped is not None and not self._eval_skip_logged:
            self._note(skipped.message(EVAL_SKIP_CONSEQUENCE))
            self._eval_skip_logged = True
        metrics = {str(k): float(v) for k, v in (metrics or {}).items()}
        return broadcast_object(metrics, self.ctx)

    def _update_best(self, at: int, metrics: Mapping[str, float]) -> bool:
        name = self.cfg.best_metric
        if name is None or not metrics:
            return False
        if name not in metrics:
            self.log(f"best_metric {name!r} is not among the metrics {sorted(metrics)}", console=True)
            return False
        value = metrics[name]
        if math.isnan(value) or (self.best is not None and value <= self.best["value"]):
            return False
        key = "step" if self.by_iteration else "epoch"
        self.best = {"metric": name, "value": value, key: at}
        return True

    def _checkpoint_payload(self, rng: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "model_name": self.config.model.name,
            "model_config": self.model_config,
            "model": self.module.state_dict(),
            **({EMA_KEY: self.ema.state_dict()} if self.ema is not None else {}),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.amp else None,
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "rng": {"world_size": self.ctx.world_size, "per_rank": rng},
            "sampler": {"seed": self.cfg.seed, "epoch": self.epoch},
            "config": self.config.to_dict(),
            "classes": list(self.data.classes or []),  # so `tadkit detect` can label a new video
            "history": self.history,
            "best": self.best,
            "versions": {"tadkit": str(__version__), "torch": str(torch.__version__)},  # TorchVersion is not weights_only-safe
        }

    def _record(self, losses: dict[str, float], metrics: dict[str, float], lr: float, seconds: float,
                samples: int) -> None:
        """History entry + checkpoint + logs after an epoch (or an iteration segment)."""
        ctx = self.ctx
        at = self.progress_unit
        if metrics:
            self.last_metrics = metrics
        is_best = self._update_best(at, metrics)
        record = {
            "epoch": self.epoch,
            "global_step": self.global_step,
            "lr": lr,
            "loss": losses,
            "metrics": metrics,
            "seconds": seconds,
            "samples_per_second": samples * ctx.world_size / max(seconds, 1e-9),
        }
        if self.by_iteration:
            record["step"] = self.global_step
        self.history.append(record)
        rng = all_gather_objects(capture_rng_state(), ctx)  # every rank's generators, for exact resume
        if ctx.is_main:
            self.ckpt.save(self._checkpoint_payload(rng), at, best=is_best)
            self.write_history()
            for name, value in losses.items():
                self._scalar(f"epoch/{name}", value, self.global_step)
            self._scalar("lr", lr, self.global_step)
            for name, value in metrics.items():
                self._scalar(f"val/{name}", value, self.global_step)
            if self.writer is not None:
                self.writer.flush()
            loss_text = " ".join(f"{k} {v:.4f}" for k, v in losses.items())
            metric_text = "".join(f"  {k} {v:.4f}" for k, v in metrics.items())
            where = f"step {self.global_step}/{self.cfg.iterations}" if self.by_iteration else f"epoch {self.epoch}/{self.cfg.epochs}"
            self.log(f"{where}  {loss_text}  lr {lr:.3g}{metric_text}  {seconds:.1f} s", console=True)

    # ---- the run ---------------------------------------------------------------------------------

    def checkpoint_marks(self) -> list[int]:
        """The epochs (steps, in an iteration-based run) after which a checkpoint is written."""
        if not self.by_iteration:
            return list(range(1, self.cfg.epochs + 1))
        total = int(self.cfg.iterations or 0)
        every = self.cfg.checkpoint_every or self.cfg.eval_every or 100
        marks = set(range(every, total + 1, every)) | {total}
        if self.cfg.eval_every > 0:
            marks |= set(range(self.cfg.eval_every, total + 1, self.cfg.eval_every))
        return sorted(marks)

    def _disk_notes(self) -> list[str]:
        """The checkpoints' expected disk use, and a warning when the disk has less room than that."""
        estimate = estimate_checkpoint_disk(self.module, self.optimizer, self.ckpt, self.checkpoint_marks(),
                                            best=bool(self.cfg.best_metric), ema=self.ema is not None)
        free = shutil.disk_usage(self.out_dir).free
        notes = [estimate.describe(self.ckpt.prefix, free)]
        if estimate.peak > free:
            notes.append(f"warning: the checkpoints need about {format_size(estimate.peak)} but {self.out_dir} has "
                         f"{format_size(free)} free; lower train.keep_checkpoints / keep_epochs or choose another --out")
        return notes

    def fit(self) -> TrainResult:
        self._open_outputs()
        try:
            return self._fit()
        finally:
            self._close_outputs()

    def _fit(self) -> TrainResult:
        ctx = self.ctx
        if self.resumed_from is not None:
            unit = "step" if self.by_iteration else "epoch"
            self.log(f"resumed from {self.ckpt.last_path} at {unit} {self.resumed_from} (global step {self.global_step})", console=True)
            if self.resume_notes:
                self.log(f"config changed since the checkpoint (the new values apply from here on): "
                         f"{', '.join(self.resume_notes)}", console=True)
            if self.rng_note:
                self.log(self.rng_note, console=True)
        else:
            length = f"{self.cfg.iterations} iterations" if self.by_iteration else f"{self.cfg.epochs} epochs"
            self.log(f"training {self.config.model.name} for {length}: {len(self.data.train)} samples, "
                     f"global batch {self.cfg.batch_size} over {ctx.world_size} process(es), device {ctx.device}")
        if ctx.is_main:
            for note in [*self.start_notes, *self._disk_notes()]:
                self.log(note, console=True)
        if self.data.skipped is not None:
            self._note(self.data.skipped.message(TRAIN_SKIP_CONSEQUENCE))
        self.ddp_model = wrap_ddp(self.module, ctx, self.cfg.find_unused_parameters)
        if self.by_iteration:
            self._fit_iterations()
        else:
            for epoch in range(self.epoch + 1, self.cfg.epochs + 1):
                start = time.perf_counter()
                lr = float(self.optimizer.param_groups[-1]["lr"])
                self._reset_losses()
                losses = self.train_epoch(epoch)
                seconds = time.perf_counter() - start
                metrics = self.evaluate(epoch) if self.evaluate_fn is not None and should_evaluate(epoch, self.config) else {}
                self._record(losses, metrics, lr, seconds, len(self.sampler))
        if ctx.is_main and self.resumed_from is None and not self.history:
            self.write_history()
        return TrainResult(
            out_dir=self.out_dir,
            epoch=self.epoch,
            global_step=self.global_step,
            history=self.history,
            last_checkpoint=self.ckpt.last_path if self.ckpt.last_path.exists() else None,
            best_checkpoint=self.ckpt.best_path if self.best is not None and self.ckpt.best_path.exists() else None,
            best=self.best,
            resumed_from=self.resumed_from,
            metrics=self.last_metrics,
            notes=self.notes,
        )

    def _fit_iterations(self) -> None:
        """Cycle the data until ``train.iterations`` steps; evaluate / checkpoint at the marks."""
        total = int(self.cfg.iterations or 0)
        while self.global_step < total:
            if not self._counts:
                start, first = time.perf_counter(), self.global_step
                lr = float(self.optimizer.param_groups[-1]["lr"])
            losses = self.train_epoch(self.epoch + 1, stop_at=lambda step: iteration_marks(step, self.config)[1])
            seconds = time.perf_counter() - start
            evaluate, save = iteration_marks(self.global_step, self.config)
            if not save:
                continue  # an epoch ended between two marks: the losses keep accumulating
            self._reset_losses()
            metrics = self.evaluate(self.global_step) if self.evaluate_fn is not None and evaluate else {}
            self._record(losses, metrics, lr, seconds, (self.global_step - first) * self.batch)


def train(
    config: Config,
    out_dir: str | os.PathLike,
    resume: bool,
    build_datasets_fn: BuildDatasetsFn | None = None,
    evaluate_fn: EvaluateFn | None = None,
    *,
    build_model_fn: BuildModelFn | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train ``config`` into ``out_dir``; the entry point of ``tadkit train`` (also under ``torchrun``).

    ``resume``: continue from ``out_dir/last.pt`` (a fresh start if there is none yet). Without it an
    ``out_dir`` that already holds a checkpoint is refused rather than overwritten.
    ``build_datasets_fn(config)`` returns :class:`TrainData` (or just the training Dataset, batched
    with ``collate_windows``); it runs on every process. None = :func:`tadkit.engine.data.build_train_data`
    (the dataset of the method's data kind from the config's ``data`` section). ``evaluate_fn(model, epoch) -> {name: value}``
    runs on every process at evaluation epochs with the unwrapped model in eval mode (use
    :func:`tadkit.engine.predict_windows` inside it to shard the work); rank 0's metrics are kept.
    ``build_model_fn(config)`` defaults to the model registry.

    Faults: before any data is loaded, rank 0 creates ``out_dir``, proves it writable and takes an
    exclusive lock on ``out_dir/.lock`` (held until the run returns); a read-only or full directory,
    or one another run holds, fails at once with a TadkitError. A full disk or read-only file system
    met later (checkpoint, history, log) is one TadkitError saying so; checkpoints are written
    atomically, so the previous ``last.pt`` stays whole. A run that fails before writing anything
    removes the directory it created.
    """
    out_dir = Path(out_dir)
    if build_datasets_fn is None:
        from tadkit.engine.data import build_train_data

        build_datasets_fn = build_train_data
    last = out_dir / "last.pt"
    ctx = init_distributed(config.train.device)
    claim: _RunDirClaim | None = None
    finished = False
    trainer: Trainer | None = None
    try:
        claim = _claim_run_dir(out_dir, ctx)  # writable and ours, before any data is loaded
        if not resume and last.exists():
            raise TadkitError(
                "already holds a training run (last.pt); pass --resume to continue it or choose another --out",
                file=str(out_dir), field="out_dir",
            )  # fmt: skip
        with determinism(config.train.deterministic, ctx.device):
            seed_everything(config.train.seed + ctx.rank)
            data = _as_train_data(build_datasets_fn(config))
            if len(data.train) == 0:  # type: ignore[arg-type]
                raise TadkitError("the training set is empty", file=config.source, field="data.subset_train")
            model = (build_model_fn or default_build_model)(config)
            trainer = Trainer(config, out_dir, data, model, ctx, evaluate_fn, progress)
            if claim.stale:
                size = format_size(sum(size for _, size in claim.stale))
                trainer.start_notes.append(f"removed {len(claim.stale)} temp file(s) ({size}) a killed run left: "
                                           + ", ".join(path.name for path, _ in claim.stale))
            if resume and last.exists():
                trainer.load_state(last)
            result = trainer.fit()
        if claim is not None:
            claim.succeeded = True
        finished = True
        return result
    except WriteFailure as failure:
        if claim is None:
            raise
        raise failure.with_hint(RESUME_HINT) from failure
    except Exception as error:
        # a full disk / read-only file system met by a plain write (train.log, TensorBoard)
        failure = write_failure(error, out_dir, "write to the run directory", RESUME_HINT, WRITE_ONLY_ERRNOS)
        if failure is None or claim is None:
            raise
        raise failure from error
    finally:
        if claim is not None:
            claim.release()
        # the DDP wrapper holds the process group: dropped first, the group (gloo threads and
        # connections) is destroyed inside cleanup_distributed, after every rank passed its barrier
        trainer = model = None  # noqa: F841
        cleanup_distributed(ctx, synchronize=finished)


RESUME_HINT = "checkpoints already written are intact; free space (or choose another --out) and rerun with --resume"
TRAIN_SKIP_CONSEQUENCE = "the model is not trained on them"
EVAL_SKIP_CONSEQUENCE = "the per-epoch evaluation gives them no detections, so their ground truth counts as missed"


@dataclass
class _RunDirClaim:
    """The run directory as :func:`train` holds it: its lock (rank 0) and whether the run created it."""

    out_dir: Path
    lock: DirectoryLock | None
    created: bool
    succeeded: bool = False
    stale: list[tuple[Path, int]] = field(default_factory=list)  # temp files of a killed run, removed

    def release(self) -> None:
        """Unlock; a directory this run created and left empty (it failed before writing anything) goes."""
        if self.lock is None:
            return
        if self.created and not self.succeeded:
            with contextlib.suppress(OSError):
                if {p.name for p in self.out_dir.iterdir()} <= {self.lock.path.name}:
                    self.lock.path.unlink()
                    self.out_dir.rmdir()
        self.lock.release()
        self.lock = None


def _claim_run_dir(out_dir: Path, ctx: DistContext) -> _RunDirClaim:
    """Rank 0: create ``out_dir``, prove it writable, take ``out_dir/.lock``; every rank learns the outcome.

    A read-only or full ``--out``, or one another ``tadkit train`` holds, fails here, at once (exit 2),
    before any data is loaded. The lock is held until :func:`train` returns.
    """
    claim, problem = None, None
    if ctx.is_main:
        try:
            created = ensure_writable_dir(out_dir, hint="choose a writable --out")
            try:
                lock = lock_directory(out_dir)
            except DirectoryLocked as locked:
                who = f"pid {locked.pid}" if locked.pid is not None else "a process whose pid is unknown"
                raise TadkitError(
                    f"another tadkit train ({who}) is running in this directory; wait for it to finish or "
                    "choose another --out", file=str(out_dir), field="out_dir",
                ) from None
            # the lock is ours, so no writer is alive here: a temp file is what a killed run left behind
            claim = _RunDirClaim(out_dir, lock, created,
                                 stale=remove_stale_tmp(out_dir, extra_suffixes=(LINK_SUFFIX,)))
        except TadkitError as error:
            problem = error
        except OSError as error:  # anything else the file system says: still one clear line, on every rank
            problem = TadkitError(f"cannot prepare the run directory ({error.strerror or error})",
                                  file=str(out_dir), field="out_dir")
    message = broadcast_object(None if problem is None else str(problem), ctx)
    if problem is not None:
        raise problem
    if message is not None:  # another rank: rank 0 could not claim the directory
        raise TadkitError(message)
    return claim if claim is not None else _RunDirClaim(out_dir, None, False)


__all__ = [
    "BuildDatasetsFn",
    "EvaluateFn",
    "RunLog",
    "TrainData",
    "TrainResult",
    "Trainer",
    "ConfigSchedule",
    "build_optimizer",
    "build_scheduler",
    "iteration_marks",
    "lr_at",
    "move_to_device",
    "default_build_model",
    "determinism",
    "epoch_seed",
    "apply_config_schedule",
    "per_process_batch",
    "scheduled_lr",
    "seed_everything",
    "should_evaluate",
    "train",
]
