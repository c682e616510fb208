"""Weakly supervised methods under DDP (gloo, torchrun, 2 processes) equal one process on the same
global batch — ECM (epoch-based) and ACRNet (iteration-based), trained through `tadkit train`.

Dropout is set to 0: with dropout each process draws its own masks from its own (per-rank seeded)
generator, so the two runs are equal in distribution only, as for any DDP training.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml


@pytest.fixture(scope="module")
def weak_data(tmp_path_factory) -> Path:
    from tadkit.data.synthetic import SynthConfig, generate_dataset

    root = tmp_path_factory.mktemp("weak_ddp")
    generate_dataset(root, SynthConfig(seed=5, dim=16, videos=8, min_video_seconds=30.0, max_video_seconds=60.0),
                     progress=False)
    return root


def _config(method: str, data: Path, out: Path) -> Path:
    common = {"optimizer": "adam", "lr": 1e-3, "batch_size": 8, "seed": 3, "log_every": 1, "tensorboard": False,
              "device": "cpu", "lr_decay_epochs": [], "shuffle": True}
    if method == "ecm":
        model = {"name": "ecm", "kwargs": {"in_dim": 16, "hidden_dim": 32, "num_classes": 20, "dropout": 0.0}}
        train = {**common, "epochs": 2}
        data_section = {"resample_length": 64, "resample_mode": "interpolate"}
    else:
        model = {"name": "acrnet", "kwargs": {"in_dim": 16, "num_classes": 20, "num_heads": 2, "aas_hidden": 8,
                                              "dropout": 0.0}}
        train = {**common, "iterations": 4, "checkpoint_every": 2, "scheduler": "cosine", "scheduler_unit": "iteration"}
        data_section = {"resample_length": 48, "resample_mode": "uniform"}
    config = {
        "model": model,
        "data": {"annotations": str(data / "annotations.json"), "features": str(data / "features"),
                 "subset_train": "validation", "subset_test": "test", "mode": "resample", **data_section},
        "train": train,
        "test": {"protocol": "thumos14", "batch_size": 1, "cas": {"preset": "thumos14"}},
    }
    path = out / f"{method}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]  # every rank exits 0, teardown included


@pytest.mark.slow
@pytest.mark.parametrize("method", ["ecm", "acrnet"])
def test_weak_method_two_gloo_processes_match_one_process(method, weak_data, tmp_path):
    config = _config(method, weak_data, tmp_path)
    single, double = tmp_path / "single", tmp_path / "ddp"
    _run([sys.executable, "-m", "tadkit.cli", "train", str(config), "--out", str(single), "--no-progress"])
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
          "tadkit.cli", "train", str(config), "--out", str(double), "--no-progress"])
    one = json.loads((single / "history.json").read_text())["epochs"]
    two = json.loads((double / "history.json").read_text())["epochs"]
    assert [h["global_step"] for h in two] == [h["global_step"] for h in one] and one
    for a, b in zip(one, two):
        for term, value in a["loss"].items():
            assert b["loss"][term] == pytest.approx(value, rel=1e-4, abs=1e-6), term
    p1 = torch.load(single / "last.pt", weights_only=True)
    p2 = torch.load(double / "last.pt", weights_only=True)
    assert p2["rng"]["world_size"] == 2 and p1["classes"] == p2["classes"] and len(p1["classes"]) == 20
    for key, value in p1["model"].items():
        torch.testing.assert_close(p2["model"][key], value, rtol=1e-4, atol=1e-5)
