"""Engine overhead: samples/s of ``tadkit.engine.train`` vs a bare Adam loop on the same model and data.

Both run in this process on the same random windows (A2Net, reduced widths, 128-step windows), batch
16, CPU. The engine adds the DistributedSampler, loss bookkeeping, the finite-loss check, logging,
history and a checkpoint per epoch. Prints the ratio engine / bare (1.0 = no overhead); best of
``--repeats`` runs each, alternating, to damp noise from other processes.

    python benchmarks/train_throughput.py [--windows 64] [--epochs 2] [--repeats 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from tadkit.data.records import Window
from tadkit.data.windows import collate_windows
from tadkit.engine import Config, TrainData, train
from tadkit.models import build_model

MODEL = {"in_dim": 512, "base_dim": 128, "pyramid_dims": [128, 256, 256, 512, 512, 1024], "reduce_dim": 128,
         "head_dim": 128, "num_classes": 20, "window": 128}


class RandomWindows(Dataset):
    def __init__(self, count: int, dim: int, length: int = 128) -> None:
        rng = np.random.default_rng(0)
        self.items = []
        for i in range(count):
            starts = rng.uniform(0, length - 20, 3)
            segments = np.stack([starts, starts + rng.uniform(2, 20, 3)], 1).astype(np.float32)
            self.items.append(Window(f"v{i}", rng.normal(size=(length, dim)).astype(np.float32), 0.0, 1.0,
                                     segments, rng.integers(0, 20, 3), length))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Window:
        return self.items[index]


def bare_loop(dataset: Dataset, epochs: int, batch: int) -> float:
    """Samples per second of the simplest correct loop (shuffle, Adam, backward)."""
    torch.manual_seed(1)
    model = build_model("a2net", **MODEL)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, collate_fn=collate_windows)
    start = time.perf_counter()
    for _ in range(epochs):
        for b in loader:
            loss = model.loss(model(b["features"]), b["targets"])["total"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return epochs * len(dataset) / (time.perf_counter() - start)


def engine_loop(dataset: Dataset, epochs: int, batch: int) -> tuple[float, float]:
    """(samples/s inside epochs, samples/s including checkpoints and history) of tadkit.engine.train."""
    config = Config.from_dict({
        "model": {"name": "a2net", "kwargs": MODEL},
        "train": {"epochs": epochs, "batch_size": batch, "lr_decay_epochs": [epochs + 1], "tensorboard": False,
                  "log_every": 0, "device": "cpu", "keep_checkpoints": 0},
    })
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = train(config, Path(tmp) / "run", False, lambda c: TrainData(dataset, collate_windows), progress=False)
        wall = time.perf_counter() - start
    in_epochs = epochs * len(dataset) / sum(h["seconds"] for h in result.history)
    return in_epochs, epochs * len(dataset) / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    dataset = RandomWindows(args.windows, MODEL["in_dim"])
    bare_loop(dataset, 1, args.batch)  # warm-up: first-call allocations and lazy imports
    bare, engine, engine_wall = [], [], []
    for _ in range(args.repeats):
        bare.append(bare_loop(dataset, args.epochs, args.batch))
        inside, wall = engine_loop(dataset, args.epochs, args.batch)
        engine.append(inside)
        engine_wall.append(wall)
    print(f"torch threads {torch.get_num_threads()}, {args.windows} windows x {args.epochs} epochs, batch {args.batch}")
    print(f"bare loop            {max(bare):8.1f} samples/s")
    print(f"engine (epochs only) {max(engine):8.1f} samples/s   ratio engine/bare = {max(engine) / max(bare):.3f}")
    print(f"engine (end to end)  {max(engine_wall):8.1f} samples/s   ratio engine/bare = {max(engine_wall) / max(bare):.3f}"
          "   (includes model build, checkpoints, history)")


if __name__ == "__main__":
    main()
