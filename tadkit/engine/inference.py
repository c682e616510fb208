"""Sample-level inference (windows or whole videos) that works the same on one process and under DDP.

Under DDP each process predicts its shard (``DistributedSampler(shuffle=False)``), then the shards are
exchanged with ``all_gather_object``. DistributedSampler pads the last shard by repeating samples, so
the merged list is de-duplicated by dataset index: every window (hence every video) appears exactly
once, in dataset order, on every rank.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tadkit.utils.progress import progress as progress_bar

from tadkit.engine.distributed import DistContext, current_context, gather_unique, unwrap
from tadkit.engine.trainer import move_to_device
from tadkit.methods.base import ClassActivation
from tadkit.models.base import WindowDetections


@dataclass
class WindowPrediction:
    """``model.decode`` output of one sample (CPU tensors) with the sample's meta.

    ``detections`` is a :class:`WindowDetections` (window steps) for ``detections`` methods or a
    :class:`ClassActivation` for ``cas`` methods.
    """

    index: int  # position in the dataset: the de-duplication key
    meta: dict[str, Any]  # video_id, t0, step, valid_length (+ fps, frame_num, ... for whole videos)
    detections: WindowDetections | ClassActivation

    @property
    def video_id(self) -> str:
        return str(self.meta["video_id"])


class _Indexed(Dataset):
    """Yields ``(index, sample)`` so predictions keep their dataset position through the sampler."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[int, Any]:
        return index, self.dataset[index]


class _IndexedCollate:
    """Picklable (worker-safe) wrapper: ``[(i, sample)]`` -> ``(indices, collate(samples))``."""

    def __init__(self, collate_fn: Callable[[list[Any]], dict[str, Any]]) -> None:
        self.collate_fn = collate_fn

    def __call__(self, items: list[tuple[int, Any]]) -> tuple[list[int], dict[str, Any]]:
        return [i for i, _ in items], self.collate_fn([s for _, s in items])


def _to_cpu(det: WindowDetections | ClassActivation) -> WindowDetections | ClassActivation:
    if isinstance(det, ClassActivation):
        return ClassActivation(det.cas.detach().float().cpu(), det.video_scores.detach().float().cpu(),
                               {k: v.detach().cpu() for k, v in det.extras.items()})
    return WindowDetections(det.segments.detach().cpu(), det.scores.detach().cpu(), det.labels.detach().cpu())


@torch.no_grad()
def predict_windows(
    model: nn.Module,
    dataset: Dataset,
    collate_fn: Callable[[list[Any]], dict[str, Any]],
    *,
    ctx: DistContext | None = None,
    batch_size: int = 1,
    num_workers: int = 0,
    progress: bool = True,
    desc: str = "predict",
) -> list[WindowPrediction]:
    """Run ``model(batch)`` + ``model.decode(outputs, batch)`` over ``dataset``; every rank gets all samples once.

    ``batch_size`` is per process. ``ctx`` defaults to the running process group (so an
    ``evaluate_fn`` called by the trainer under ``torchrun`` shards automatically). The model is put in
    eval mode and left in it.
    """
    ctx = ctx or current_context()
    module = unwrap(model)
    module.eval()
    device = next(module.parameters()).device
    sampler = DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=False, drop_last=False)
    loader = DataLoader(
        _Indexed(dataset),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=_IndexedCollate(collate_fn),
        pin_memory=device.type == "cuda",
        # its own generator: a loader draws a base seed, which must not come from the global RNG, or the
        # evaluation schedule would change the training run that calls this between epochs
        generator=torch.Generator().manual_seed(0),
    )
    local: list[WindowPrediction] = []
    for indices, batch in progress_bar(loader, desc=desc, unit="batch", disable=not (progress and ctx.is_main), leave=False):
        batch = move_to_device(batch, device)
        outputs = module(batch)
        detections = module.decode(outputs, batch)
        for index, meta, det in zip(indices, batch["meta"], detections, strict=True):
            local.append(WindowPrediction(int(index), dict(meta), _to_cpu(det)))
    merged = gather_unique(local, key=lambda p: p.index, ctx=ctx)
    merged.sort(key=lambda p: p.index)
    if len(merged) != len(dataset):  # type: ignore[arg-type]
        raise RuntimeError(f"gathered {len(merged)} window predictions for a dataset of {len(dataset)}")
    return merged


def group_by_video(predictions: Sequence[WindowPrediction]) -> dict[str, list[WindowPrediction]]:
    """Windows per video, in first-appearance order (cross-window NMS works per video)."""
    out: dict[str, list[WindowPrediction]] = defaultdict(list)
    for pred in predictions:
        out[pred.video_id].append(pred)
    return dict(out)


predict = predict_windows  # the name says windows; any sample kind goes through it

__all__ = ["WindowPrediction", "group_by_video", "predict", "predict_windows"]
