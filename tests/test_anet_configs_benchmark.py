"""benchmarks/anet_configs.py: the overrides it trains the seven ActivityNet configs with are valid config
keys that change only what the data forces plus the schedule, the schedules scale the LR milestones,
and the classifier accuracy it prints is the top-1 hit rate. (The benchmark itself is a long run.)"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import pytest
from conftest import REPO

from tadkit.engine.config import load_config


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("anet_configs_under_test", REPO / "benchmarks" / "anet_configs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def args_for(bench, *argv: str) -> argparse.Namespace:
    return bench.parse_args(list(argv))


@pytest.mark.parametrize("name", ["ecm/anet12", "ecm/anet13", "acrnet/anet12", "acrnet/anet13",
                                  "a2net/anet13_classwise", "a2net/anet13", "afsd/anet13_features"])
def test_overrides_are_the_data_forced_ones_plus_the_schedule(bench, name, tmp_path):
    args = args_for(bench)
    schedule, _ = bench.schedule_overrides(name, bench.SCHEDULES[name])
    overrides = [*bench.data_overrides(name, tmp_path, args), *bench.QUIET, *schedule]
    shipped = load_config(bench.CONFIGS / f"{name}.yaml")
    config = load_config(bench.CONFIGS / f"{name}.yaml", overrides)  # every key exists and validates
    assert config.model.kwargs["in_dim"] == 256
    assert config.data.annotations == str(tmp_path / "annotations.json")
    for key in ("batch_size", "lr", "seed", "optimizer"):
        assert getattr(config.train, key) == getattr(shipped.train, key), key
    for key, value in shipped.model.kwargs.items():
        if key not in ("in_dim", "num_classes", "avg_pool"):
            assert config.model.kwargs[key] == value, key
    if name in bench.CLASS_AGNOSTIC:
        assert config.model.kwargs["num_classes"] == 1 and config.data.class_agnostic
    else:
        assert config.model.kwargs["num_classes"] == 20
    if name.startswith("acrnet/"):  # the ActivityNet heads stay on although 20 classes reads as "THUMOS14"
        assert config.model.kwargs["avg_pool"] is True


def test_schedules_scale_the_lr_milestones_and_the_dry_run_is_one_epoch(bench):
    assert bench.schedule_overrides("ecm/anet13", 12) == (["train.epochs=12", "train.lr_decay_epochs=[9]"],
                                                          "12 ep, decay at [9]")
    assert bench.schedule_overrides("a2net/anet13", 24)[0] == ["train.epochs=24", "train.lr_decay_epochs=[16]"]
    assert bench.schedule_overrides("afsd/anet13_features", 16)[1] == "16 ep"  # milestone = last epoch: no decay
    assert bench.schedule_overrides("acrnet/anet12", 800) == (["train.iterations=800"], "800 it")
    chosen = bench.schedules(args_for(bench, "--schedule", "ecm/anet12=5"))
    assert chosen["ecm/anet12"] == 5 and chosen["ecm/anet13"] == bench.SCHEDULES["ecm/anet13"]
    dry = bench.schedules(args_for(bench, "--dry-run", "--dry-run-iterations", "7"))
    assert dry["acrnet/anet13"] == 7 and dry["a2net/anet13"] == 1
    with pytest.raises(SystemExit):
        bench.schedules(args_for(bench, "--schedule", "ecm/anet14=5"))


def test_classifier_accuracy_is_the_top1_hit_rate(bench, tmp_path):
    from tadkit.cli import main

    data = tmp_path / "data"
    assert main(["data", "synth", "--out", str(data), "--preset", "activitynet", "--classes", "4", "--dim", "8",
                 "--videos", "6", "--seed", "1"]) == 0
    gt = json.loads((data / "annotations.json").read_text())
    classes = gt["classes"]
    validation = sorted(v for v, info in gt["database"].items() if info["subset"] == "validation")
    scores = {}
    for i, vid in enumerate(validation):  # the first two right, the rest wrong
        label = classes.index(gt["database"][vid]["annotations"][0]["label"])
        row = [0.0] * len(classes)
        row[label if i < 2 else (label + 1) % len(classes)] = 1.0
        scores[vid] = row
    path = tmp_path / "scores.json"
    path.write_text(json.dumps({"results": scores, "class": classes}))
    assert bench.classifier_accuracy(path, data) == pytest.approx(2 / len(validation))
