"""Process-group plumbing for single-process and DDP runs (``torchrun``, env:// rendezvous).

One :class:`DistContext` describes the process: its rank, the world size and the device. Every
helper here also works when there is no process group (world size 1), so the trainer has a single
code path. Backend: NCCL on CUDA, gloo on CPU.
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import os
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Iterable, Iterator, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from tadkit.errors import TadkitError

T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None  # None: no process group
    owns_group: bool = False  # True if init_distributed created the group (and must destroy it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise TadkitError(f"environment variable {name}={value!r} is not an integer", field=name) from None


def select_device(preference: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> CUDA if present else CPU; ``cuda`` without a GPU is a user error."""
    if preference not in ("auto", "cpu", "cuda"):
        raise TadkitError(f"device must be auto, cpu or cuda, got {preference!r}", field="train.device")
    if preference == "cpu" or (preference == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise TadkitError("train.device is cuda but no CUDA device is available", field="train.device")
    index = local_rank % torch.cuda.device_count()
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def init_distributed(device: str = "auto", timeout_s: float | None = None) -> DistContext:
    """Join the job ``torchrun`` started (RANK / WORLD_SIZE / LOCAL_RANK / MASTER_* in the environment).

    Without those variables (or with WORLD_SIZE=1) this is a plain single process. ``timeout_s``: how
    long a collective may wait for the other ranks (default: PyTorch's, 30 min for gloo).
    """
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    torch_device = select_device(device, local_rank)
    if world_size <= 1:
        return DistContext(device=torch_device)
    if not dist.is_available():
        raise TadkitError("this PyTorch build has no torch.distributed support", field="WORLD_SIZE")
    backend = "nccl" if torch_device.type == "cuda" else "gloo"
    owns = False
    if not dist.is_initialized():
        _import_before_the_group_exists()
        timeout = None if timeout_s is None else datetime.timedelta(seconds=timeout_s)
        dist.init_process_group(backend=backend, init_method="env://", world_size=world_size, rank=rank,
                                timeout=timeout)
        owns = True
    return DistContext(rank, world_size, local_rank, torch_device, backend, owns)


def current_context() -> DistContext:
    """The context of an already initialised process group (single process when there is none)."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistContext()
    local_rank = _env_int("LOCAL_RANK", 0)
    backend = dist.get_backend()
    device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank, device, str(backend), False)


def _import_before_the_group_exists() -> None:
    """Import ``torch.distributed.nn.functional`` while there is no process group yet.

    Its functions take ``group=group.WORLD`` as a default argument, evaluated at import. DDP imports
    the module lazily, i.e. after ``init_process_group``, so the defaults would capture the live WORLD
    group and keep it (its gloo worker threads and TCP connections) alive after
    ``destroy_process_group``, until the garbage collection of interpreter shutdown destroyed it,
    racing the other ranks' teardown: the "terminate called without an active exception" abort of a
    finished run. Imported first, the defaults are None (= the default group at call time).
    """
    import torch.distributed.nn.functional  # noqa: F401


def cleanup_distributed(ctx: DistContext, synchronize: bool = False) -> None:
    """Destroy the process group this process created; ``synchronize``: all ranks meet at a barrier
    first (only when every rank is known to get here, i.e. after a successful run).

    The group's C++ object (gloo: its worker threads and connections) goes when the last reference
    does. Callers drop their DDP wrappers before calling this; the collection below frees the ones
    caught in reference cycles, so the group is torn down here, not during interpreter shutdown.
    """
    if ctx.owns_group and dist.is_initialized():
        if synchronize and ctx.is_distributed:
            dist.barrier()
        dist.destroy_process_group()
        gc.collect()


def barrier(ctx: DistContext) -> None:
    if ctx.is_distributed:
        dist.barrier()


def all_reduce_mean(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Mean over processes (in place on a copy); identity for a single process."""
    if not ctx.is_distributed:
        return tensor
    out = tensor.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / ctx.world_size


def broadcast_object(obj: T, ctx: DistContext, src: int = 0) -> T:
    """Rank ``src``'s object on every rank (any picklable value)."""
    if not ctx.is_distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_objects(obj: T, ctx: DistContext) -> list[T]:
    """Every rank's object, in rank order."""
    if not ctx.is_distributed:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def unique_by_key(items: Iterable[T], key: Callable[[T], Hashable]) -> list[T]:
    """Drop repeats (first occurrence wins), e.g. the samples DistributedSampler pads with."""
    seen: set[Hashable] = set()
    out: list[T] = []
    for item in items:
        k = key(item)
        if k not in seen:
            seen.add(k)
            out.append(item)
    return out


def gather_unique(items: list[T], key: Callable[[T], Hashable], ctx: DistContext) -> list[T]:
    """Concatenate every rank's ``items`` and de-duplicate by ``key`` (result on every rank)."""
    merged = [item for part in all_gather_objects(items, ctx) for item in part]
    return unique_by_key(merged, key)


def wrap_ddp(model: nn.Module, ctx: DistContext, find_unused_parameters: bool = True) -> nn.Module:
    """DDP wrapper when distributed; the model itself otherwise."""
    if not ctx.is_distributed:
        return model
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(
        model, device_ids=device_ids, find_unused_parameters=find_unused_parameters
    )


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


# --------------------------------------------------------------------------------------------------
# Mixed precision (CUDA only)
# --------------------------------------------------------------------------------------------------


def amp_enabled(requested: bool, device: torch.device) -> bool:
    """AMP only on CUDA: float16 autocast on CPU is slow and bf16 changes numerics, so CPU stays fp32."""
    if requested and device.type != "cuda":
        warnings.warn("train.amp needs CUDA; training in float32 on CPU", stacklevel=2)
        return False
    return requested


@contextlib.contextmanager
def autocast(enabled: bool, device: torch.device) -> Iterator[None]:
    if not enabled:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=torch.float16):
        yield


def make_grad_scaler(enabled: bool, device: torch.device) -> torch.amp.GradScaler:
    return torch.amp.GradScaler(device.type if enabled else "cpu", enabled=enabled)


__all__ = [
    "DistContext",
    "all_gather_objects",
    "all_reduce_mean",
    "amp_enabled",
    "autocast",
    "barrier",
    "broadcast_object",
    "cleanup_distributed",
    "current_context",
    "gather_unique",
    "init_distributed",
    "make_grad_scaler",
    "select_device",
    "unique_by_key",
    "unwrap",
    "wrap_ddp",
]
