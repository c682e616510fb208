"""Toy model and data for the engine tests (no tests in this file), plus a subprocess entry point.

The toy model implements the LocalizationModel protocol (forward / loss / decode / config_dict) on
the real batch format; its loss is a per-sample mean, so a global batch split over DDP processes gives
the same gradient as one process on the whole batch. ``random_negatives > 0`` makes the loss draw from
torch's global RNG (like A2Net's random negatives), which the resume test needs to exercise.

Run as a script (``python tests/test_engine_support.py train CONFIG OUT [--resume]``, also under
``torchrun``) to train the toy model with the real engine in a separate process.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Dataset

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # script mode without an installed package
    sys.path.insert(0, str(REPO))

from tadkit.data.records import Window  # noqa: E402
from tadkit.models import MODELS, register_model  # noqa: E402
from tadkit.models.base import WindowDetections  # noqa: E402

TOY_MODEL = "engine_toy"


class ToyDetector(nn.Module):
    """Conv1d per-step classifier + boundary regressor."""

    def __init__(self, in_dim: int = 8, num_classes: int = 3, hidden: int = 16, random_negatives: float = 0.0) -> None:
        super().__init__()
        self.in_dim, self.num_classes, self.hidden, self.random_negatives = in_dim, num_classes, hidden, random_negatives
        self.body = nn.Conv1d(in_dim, hidden, 3, padding=1)
        self.cls = nn.Conv1d(hidden, num_classes + 1, 1)
        self.reg = nn.Conv1d(hidden, 2, 1)

    def forward(self, batch: Mapping[str, Any] | torch.Tensor) -> dict[str, torch.Tensor]:
        features = batch["features"] if isinstance(batch, Mapping) else batch  # the method contract: whole batch
        x = F.relu(self.body(features))
        return {"logits": self.cls(x), "reg": self.reg(x)}

    @staticmethod
    def step_targets(targets: list[dict[str, torch.Tensor]], length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-step class (0 = background) and (distance to start, distance to end) of the covering GT."""
        centres = torch.arange(length, dtype=torch.float32) + 0.5
        labels, dists = [], []
        for t in targets:
            seg = t["segments"].float().cpu()
            inside = (seg[:, :1] <= centres) & (centres < seg[:, 1:])  # (N, T)
            first = torch.where(inside.any(0), inside.float().argmax(0), torch.full((length,), -1))
            lab = torch.where(first >= 0, t["labels"].cpu()[first.clamp(min=0)] + 1, torch.zeros(length, dtype=torch.long))
            chosen = seg[first.clamp(min=0)]
            labels.append(lab)
            dists.append(torch.stack([centres - chosen[:, 0], chosen[:, 1] - centres], 1))
        return torch.stack(labels), torch.stack(dists)

    def loss(self, outputs: dict[str, torch.Tensor], batch: Mapping[str, Any] | list) -> dict[str, torch.Tensor]:
        targets = batch["targets"] if isinstance(batch, Mapping) else batch
        logits, reg = outputs["logits"], outputs["reg"]
        labels, dists = self.step_targets(targets, logits.shape[-1])
        labels, dists = labels.to(logits.device), dists.to(logits.device)
        ce = F.cross_entropy(logits, labels, reduction="none")  # (B, T)
        weight = torch.ones_like(ce)
        if self.random_negatives > 0:  # drop a random share of background steps (global torch RNG)
            keep = torch.rand(ce.shape, device=ce.device) < self.random_negatives
            weight = torch.where(labels > 0, weight, keep.float())
        cls = ((ce * weight).sum(1) / weight.sum(1).clamp(min=1)).mean()
        fg = (labels > 0).float()
        err = F.smooth_l1_loss(reg.transpose(1, 2), dists, reduction="none").sum(-1)  # (B, T)
        reg_loss = ((err * fg).sum(1) / fg.sum(1).clamp(min=1)).mean()
        return {"cls": cls, "reg": reg_loss, "total": cls + reg_loss}

    @torch.no_grad()
    def decode(self, outputs: dict[str, torch.Tensor], batch: Mapping[str, Any] | None = None) -> list[WindowDetections]:
        probs = outputs["logits"].softmax(1)[:, 1:]  # (B, C, T)
        scores, labels = probs.max(1)
        centres = torch.arange(scores.shape[-1], device=scores.device, dtype=torch.float32) + 0.5
        reg = outputs["reg"]
        segments = torch.stack([centres - reg[:, 0], centres + reg[:, 1]], -1)  # (B, T, 2)
        k = min(4, scores.shape[-1])
        top = scores.topk(k, dim=1).indices
        return [WindowDetections(segments[i, top[i]], scores[i, top[i]], labels[i, top[i]]) for i in range(len(top))]

    def config_dict(self) -> dict[str, Any]:
        return {"in_dim": self.in_dim, "num_classes": self.num_classes, "hidden": self.hidden,
                "random_negatives": self.random_negatives}


def register_toy() -> None:
    if MODELS.get(TOY_MODEL) is not ToyDetector:
        register_model(TOY_MODEL, ToyDetector)


register_toy()


class ToyWindows(Dataset):
    """Deterministic random windows: class c adds a pattern on its segments so the task is learnable.

    ``video_of(i)`` groups ``windows_per_video`` consecutive windows into one video. ``sleep`` slows
    ``__getitem__`` (the kill/resume test uses it to land its SIGKILL inside an epoch).
    """

    def __init__(self, num_windows: int = 24, in_dim: int = 8, length: int = 16, num_classes: int = 3,
                 seed: int = 0, windows_per_video: int = 1, sleep: float = 0.0) -> None:
        self.num_windows, self.in_dim, self.length, self.num_classes = num_windows, in_dim, length, num_classes
        self.seed, self.windows_per_video, self.sleep = seed, windows_per_video, sleep
        self.patterns = np.random.default_rng(seed + 10_000).normal(0, 2.0, (num_classes, in_dim)).astype(np.float32)

    def __len__(self) -> int:
        return self.num_windows

    def video_of(self, index: int) -> str:
        return f"video_{index // self.windows_per_video:04d}"

    def __getitem__(self, index: int) -> Window:
        if self.sleep:
            time.sleep(self.sleep)
        rng = np.random.default_rng([self.seed, index])
        feats = rng.normal(0, 1, (self.length, self.in_dim)).astype(np.float32)
        n = int(rng.integers(1, 3))
        starts = rng.integers(0, self.length - 4, n)
        ends = np.minimum(starts + rng.integers(2, 6, n), self.length)
        labels = rng.integers(0, self.num_classes, n)
        for s, e, c in zip(starts, ends, labels):
            feats[s:e] += self.patterns[c]
        slot = index % self.windows_per_video
        return Window(
            video_id=self.video_of(index),
            features=feats,
            t0=float(slot * self.length),
            step=1.0,
            gt_segments=np.stack([starts, ends], 1).astype(np.float32),
            gt_labels=labels.astype(np.int64),
            valid_length=self.length,
        )


def toy_collate(windows: list[Window]) -> dict[str, Any]:
    """Same batch format as tadkit.data.windows.collate_windows (equal-length windows only)."""
    return {
        "features": torch.from_numpy(np.stack([w.features.T for w in windows])),
        "targets": [
            {"segments": torch.from_numpy(w.gt_segments), "labels": torch.from_numpy(w.gt_labels)} for w in windows
        ],
        "meta": [{"video_id": w.video_id, "t0": w.t0, "step": w.step, "valid_length": w.valid_length} for w in windows],
    }


def toy_datasets_fn(num_windows: int = 24, sleep: float = 0.0):
    from tadkit.engine.trainer import TrainData

    def build(config):
        kwargs = config.model.kwargs
        return TrainData(ToyWindows(num_windows, kwargs.get("in_dim", 8), 16, kwargs.get("num_classes", 3), sleep=sleep),
                         toy_collate)

    return build


def toy_config_dict(epochs: int = 3, batch_size: int = 4, **train: Any) -> dict[str, Any]:
    return {
        "model": {"name": TOY_MODEL, "kwargs": {"in_dim": 8, "num_classes": 3, "hidden": 16}},
        "train": {"epochs": epochs, "batch_size": batch_size, "lr": 1e-2, "lr_decay_epochs": [epochs + 1],
                  "seed": 7, "log_every": 1, "tensorboard": False, "device": "cpu", **train},
    }


# --------------------------------------------------------------------------------------------------
# Subprocess entry point
# --------------------------------------------------------------------------------------------------


def _predictions_json(predictions) -> list[dict[str, Any]]:
    return [
        {"index": p.index, "video_id": p.video_id, "scores": p.detections.scores.tolist(),
         "segments": p.detections.segments.tolist()}
        for p in predictions
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["train"])
    parser.add_argument("config")
    parser.add_argument("out")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--num-windows", type=int, default=24)
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--eval-windows", type=int, default=0, help="evaluate on this many windows, dump predictions")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # identical float reductions in every process of a comparison

    from tadkit.engine import current_context, load_config, predict_windows, train

    config = load_config(args.config)
    evaluate_fn = None
    if args.eval_windows:
        eval_set = ToyWindows(args.eval_windows, config.model.kwargs["in_dim"], 16, seed=99)

        def evaluate_fn(model, epoch):
            preds = predict_windows(model, eval_set, toy_collate, batch_size=2, progress=False)
            ctx = current_context()
            if ctx.is_main:
                path = Path(args.out) / f"predictions_epoch{epoch}.json"
                path.write_text(json.dumps({"world_size": ctx.world_size, "predictions": _predictions_json(preds)}))
            return {"mean_top_score": float(np.mean([p.detections.scores.max().item() for p in preds]))}

    result = train(config, args.out, args.resume, toy_datasets_fn(args.num_windows, args.sleep), evaluate_fn,
                   progress=False)
    # gloo threads still running once train() returned would be torn down by interpreter shutdown
    print(json.dumps({"rank": int(os.environ.get("RANK", "0")), "process_group_threads": process_group_threads()}))
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({"epoch": result.epoch, "global_step": result.global_step}))
    return 0


def process_group_threads() -> list[str]:
    """Names of this process's threads that belong to a gloo process group (Linux; [] elsewhere)."""
    tasks = Path("/proc/self/task")
    if not tasks.is_dir():
        return []
    names = []
    for task in tasks.iterdir():
        try:
            names.append((task / "comm").read_text().strip())
        except OSError:  # the thread ended meanwhile
            continue
    return sorted(name for name in names if "gloo" in name)


if __name__ == "__main__":
    sys.exit(main())
