"""The training loop every method shares: Adam + step LR, seeds, DDP, AMP, checkpoints, resume, logs.

Reproducibility contract (what makes ``--resume`` continue a killed run exactly):

* the sample order of epoch ``e`` is a function of ``(train.seed, e)`` only: a ``DistributedSampler``
  (also with one process) reseeded with ``set_epoch(e)``, and a DataLoader generator reseeded per
  epoch for worker seeds;
* every other random draw (random negatives in losses, random resampling in datasets) comes from the
  global Python / NumPy / torch generators, whose states are stored in each checkpoint (per rank)
  at the epoch boundary and restored on resume;
* ``train.batch_size`` is the GLOBAL batch: with W processes each takes batch_size / W samples of the
  same global batch, so 1 process x 2b and 2 processes x b see the same samples per step.

Outputs in ``out_dir`` (rank 0 only): ``config.yaml`` (resolved config), ``epoch_XXX.pt`` /
``last.pt`` / ``best.pt``, ``history.json``, ``train.log``, ``tensorboard/``.
"""

from __future__ import annotations

import contextlib
import math
from collections import Counter
import os
import random
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
    RESUME_KEYS,
    CheckpointManager,
    capture_rng_state,
    load_checkpoint,
    model_config_of,
    restore_rng_state,
    strip_ddp_prefix,
)
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
from tadkit.utils.io import write_json

HISTORY_FORMAT = "tadkit-history/1"

EvaluateFn = Callable[[nn.Module, int], Mapping[str, float]]


@dataclass
class TrainData:
    """What ``build_datasets_fn(config)`` returns: the training set and how to batch it."""

    train: Dataset
    collate_fn: Callable[[list[Any]], dict[str, Any]] | None = None  # None: tadkit.data collate_windows


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


def build_optimizer(model: nn.Module, config: Config) -> torch.optim.Optimizer:
    """Adam (default betas), as every method in methods/*.md."""
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.Adam(params, lr=config.train.lr, weight_decay=config.train.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, config: Config) -> torch.optim.lr_scheduler.MultiStepLR:
    """Step LR stepped once per epoch: lr *= gamma after each epoch listed in ``lr_decay_epochs``."""
    return torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=list(config.train.lr_decay_epochs), gamma=config.train.lr_gamma
    )


def scheduled_lr(config: Config, completed_epochs: int) -> float:
    """The learning rate after ``completed_epochs`` epochs, multiplied in the order MultiStepLR does."""
    lr = config.train.lr
    for milestone in config.train.lr_decay_epochs:
        if milestone <= completed_epochs:
            lr *= config.train.lr_gamma
    return lr


def apply_config_schedule(optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.MultiStepLR,
                          config: Config, completed_epochs: int) -> None:
    """After loading a checkpoint: the config's lr / decay epochs / gamma / weight decay win over the stored ones.

    So a resumed run may extend ``epochs`` or move the decay points; with an unchanged config the values
    are bit-identical to the stored ones. Adam's moment estimates are kept either way.
    """
    lr = scheduled_lr(config, completed_epochs)
    for group in optimizer.param_groups:
        group["initial_lr"], group["lr"], group["weight_decay"] = config.train.lr, lr, config.train.weight_decay
    scheduler.milestones = Counter(config.train.lr_decay_epochs)
    scheduler.gamma = config.train.lr_gamma
    scheduler.base_lrs = [config.train.lr] * len(optimizer.param_groups)
    scheduler._last_lr = [lr] * len(optimizer.param_groups)


def should_evaluate(epoch: int, config: Config) -> bool:
    every = config.train.eval_every
    return (every > 0 and (epoch % every == 0 or epoch == config.train.epochs)) or epoch in config.train.eval_epochs


def move_targets(targets: list[dict[str, torch.Tensor]], device: torch.device) -> list[dict[str, torch.Tensor]]:
    return [{k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in t.items()} for t in targets]


def default_build_model(config: Config) -> nn.Module:
    """``tadkit.models.build_model(config.model.name, **config.model.kwargs)`` with config-aware errors."""
    from tadkit.models import build_model

    try:
        return build_model(config.model.name, **config.model.kwargs)
    except TadkitError as error:
        field_name = error.field if error.field and error.field.startswith("model") else "model.kwargs"
        if error.field == "model_name":
            field_name = "model.name"
        raise TadkitError(error.message, file=config.source, field=field_name) from None
    except TypeError as error:
        raise TadkitError(f"model {config.model.name!r}: {error}", file=config.source, field="model.kwargs") from None


def _as_train_data(value: Any) -> TrainData:
    data = value if isinstance(value, TrainData) else TrainData(train=value)
    if data.collate_fn is None:
        from tadkit.data.windows import collate_windows

        data.collate_fn = collate_windows
    return data


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
        self.model_config = model_config_of(self.module, config.model.kwargs)
        self.optimizer = build_optimizer(self.module, config)
        self.scheduler = build_scheduler(self.optimizer, config)
        self.amp = amp_enabled(self.cfg.amp, ctx.device)
        self.scaler = make_grad_scaler(self.amp, ctx.device)
        self.batch = per_process_batch(self.cfg.batch_size, ctx.world_size)
        self.sampler = DistributedSampler(
            data.train, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=self.cfg.shuffle,
            seed=self.cfg.seed, drop_last=False,
        )  # fmt: skip
        self.generator = torch.Generator()
        self.loader = DataLoader(
            data.train,
            batch_size=self.batch,
            sampler=self.sampler,
            num_workers=self.cfg.num_workers,
            collate_fn=data.collate_fn,
            drop_last=self.cfg.drop_last,
            generator=self.generator,
            pin_memory=ctx.device.type == "cuda",
        )
        if len(self.loader) == 0:
            raise TadkitError(
                f"no training batch: {len(data.train)} samples, batch {self.cfg.batch_size} with drop_last",
                file=config.source, field="train.drop_last",
            )  # fmt: skip
        self.ckpt = CheckpointManager(out_dir, self.cfg.keep_last, self.cfg.keep_epochs)
        self.epoch = 0
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
        self.optimizer.load_state_dict(data["optimizer"])
        self.scheduler.load_state_dict(data["scheduler"])
        apply_config_schedule(self.optimizer, self.scheduler, self.config, int(data["epoch"]))
        if data.get("scaler") is not None and self.amp:
            self.scaler.load_state_dict(data["scaler"])
        self.epoch = int(data["epoch"])
        self.global_step = int(data["global_step"])
        self.history = list(data.get("history") or [])
        self.best = data.get("best")
        self.resumed_from = self.epoch
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
            {"format": HISTORY_FORMAT, "model": self.config.model.name, "best": self.best, "epochs": self.history},
        )

    # ---- one epoch -------------------------------------------------------------------------------

    def _step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        device = self.ctx.device
        features = batch["features"].to(device, non_blocking=True)
        targets = move_targets(batch["targets"], device)
        with autocast(self.amp, device):
            outputs = self.ddp_model(features)
            losses = self.module.loss(outputs, targets)
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
        return {k: torch.as_tensor(v, device=device).detach().float() for k, v in losses.items()}

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the data; returns the mean of each loss term over steps and processes."""
        self.ddp_model.train()
        self.sampler.set_epoch(epoch)
        self.generator.manual_seed(epoch_seed(self.cfg.seed, epoch))
        sums: dict[str, torch.Tensor] = {}
        counts: dict[str, int] = {}
        bar = tqdm(self.loader, desc=f"epoch {epoch}/{self.cfg.epochs}", unit="batch",
                   disable=not self.progress, leave=False, dynamic_ncols=True)  # fmt: skip
        for step, batch in enumerate(bar, start=1):
            losses = self._step(batch)
            self.global_step += 1
            for name, value in losses.items():
                sums[name] = sums.get(name, 0.0) + value
                counts[name] = counts.get(name, 0) + 1
            if self.cfg.log_every and self.global_step % self.cfg.log_every == 0:
                names = list(losses)
                current = all_reduce_mean(torch.stack([losses[n] for n in names]), self.ctx).tolist()
                for name, value in zip(names, current):
                    self._scalar(f"train/{name}", value, self.global_step)
                text = " ".join(f"{n} {v:.4f}" for n, v in zip(names, current))
                self.log(f"epoch {epoch} step {step}/{len(self.loader)} global_step {self.global_step} {text}")
                bar.set_postfix(loss=f"{current[names.index('total')]:.4f}")
        names = list(sums)
        means = torch.stack([sums[n] / counts[n] for n in names])
        return dict(zip(names, all_reduce_mean(means, self.ctx).tolist()))

    def evaluate(self, epoch: int) -> dict[str, float]:
        """``evaluate_fn`` on every rank (so it can shard with predict_windows); rank 0's result wins."""
        self.module.eval()
        with torch.no_grad():
            metrics = self.evaluate_fn(self.module, epoch) if self.evaluate_fn is not None else {}
        self.module.train()
        metrics = {str(k): float(v) for k, v in (metrics or {}).items()}
        return broadcast_object(metrics, self.ctx)

    def _update_best(self, epoch: int, metrics: Mapping[str, float]) -> bool:
        name = self.cfg.best_metric
        if name is None or not metrics:
            return False
        if name not in metrics:
            self.log(f"best_metric {name!r} is not among the metrics {sorted(metrics)}", console=True)
            return False
        value = metrics[name]
        if math.isnan(value) or (self.best is not None and value <= self.best["value"]):
            return False
        self.best = {"metric": name, "value": value, "epoch": epoch}
        return True

    def _checkpoint_payload(self, rng: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "model_name": self.config.model.name,
            "model_config": self.model_config,
            "model": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.amp else None,
            "epoch": self.epoch,
            "global_step": self.global_step,
            "rng": {"world_size": self.ctx.world_size, "per_rank": rng},
            "sampler": {"seed": self.cfg.seed, "epoch": self.epoch},
            "config": self.config.to_dict(),
            # class names travel with the weights so `tadkit detect` can label a new video
            "classes": [str(c) for c in getattr(getattr(self.data.train, "annotations", None), "classes", [])],
            "history": self.history,
            "best": self.best,
            "versions": {"tadkit": str(__version__), "torch": str(torch.__version__)},  # TorchVersion is not weights_only-safe
        }

    # ---- the run ---------------------------------------------------------------------------------

    def fit(self) -> TrainResult:
        self._open_outputs()
        try:
            return self._fit()
        finally:
            self._close_outputs()

    def _fit(self) -> TrainResult:
        ctx = self.ctx
        if self.resumed_from is not None:
            self.log(f"resumed from {self.ckpt.last_path} at epoch {self.epoch} (global step {self.global_step})", console=True)
            if self.resume_notes:
                self.log(f"config changed since the checkpoint (the new values apply from here on): "
                         f"{', '.join(self.resume_notes)}", console=True)
            if self.rng_note:
                self.log(self.rng_note, console=True)
        else:
            self.log(f"training {self.config.model.name} for {self.cfg.epochs} epochs: {len(self.data.train)} samples, "
                     f"global batch {self.cfg.batch_size} over {ctx.world_size} process(es), device {ctx.device}")
        self.ddp_model = wrap_ddp(self.module, ctx, self.cfg.find_unused_parameters)
        for epoch in range(self.epoch + 1, self.cfg.epochs + 1):
            start = time.perf_counter()
            lr = float(self.optimizer.param_groups[0]["lr"])
            losses = self.train_epoch(epoch)
            self.scheduler.step()
            seconds = time.perf_counter() - start
            self.epoch = epoch
            metrics = self.evaluate(epoch) if self.evaluate_fn is not None and should_evaluate(epoch, self.config) else {}
            if metrics:
                self.last_metrics = metrics
            is_best = self._update_best(epoch, metrics)
            record = {
                "epoch": epoch,
                "global_step": self.global_step,
                "lr": lr,
                "loss": losses,
                "metrics": metrics,
                "seconds": seconds,
                "samples_per_second": len(self.sampler) * ctx.world_size / max(seconds, 1e-9),
            }
            self.history.append(record)
            rng = all_gather_objects(capture_rng_state(), ctx)  # every rank's generators, for exact resume
            if ctx.is_main:
                self.ckpt.save(self._checkpoint_payload(rng), epoch, best=is_best)
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
                self.log(f"epoch {epoch}/{self.cfg.epochs}  {loss_text}  lr {lr:.3g}{metric_text}  {seconds:.1f} s", console=True)
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
        )


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
    (WindowDataset from the config's ``data`` section). ``evaluate_fn(model, epoch) -> {name: value}``
    runs on every process at evaluation epochs with the unwrapped model in eval mode (use
    :func:`tadkit.engine.predict_windows` inside it to shard the work); rank 0's metrics are kept.
    ``build_model_fn(config)`` defaults to the model registry.
    """
    out_dir = Path(out_dir)
    if build_datasets_fn is None:
        from tadkit.engine.data import build_train_data

        build_datasets_fn = build_train_data
    last = out_dir / "last.pt"
    if not resume and last.exists():
        raise TadkitError(
            "already holds a training run (last.pt); pass --resume to continue it or choose another --out",
            file=str(out_dir), field="out_dir",
        )  # fmt: skip
    ctx = init_distributed(config.train.device)
    try:
        with determinism(config.train.deterministic, ctx.device):
            seed_everything(config.train.seed + ctx.rank)
            data = _as_train_data(build_datasets_fn(config))
            if len(data.train) == 0:  # type: ignore[arg-type]
                raise TadkitError("the training set is empty", file=config.source, field="data.subset_train")
            model = (build_model_fn or default_build_model)(config)
            trainer = Trainer(config, out_dir, data, model, ctx, evaluate_fn, progress)
            if resume and last.exists():
                trainer.load_state(last)
            return trainer.fit()
    finally:
        cleanup_distributed(ctx)


__all__ = [
    "BuildDatasetsFn",
    "EvaluateFn",
    "RunLog",
    "TrainData",
    "TrainResult",
    "Trainer",
    "build_optimizer",
    "build_scheduler",
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
