"""End to end through the real stack: synthetic features -> WindowDataset -> A2Net -> engine -> restore."""

from __future__ import annotations

import argparse
import json
import os

import pytest
import torch

from tadkit.engine import load_checkpoint_model, predict_windows
from tadkit.engine.data import build_window_dataset, fps_table
from tadkit.engine.run import add_train_arguments, run_train
from tadkit.errors import TadkitError

A2NET_TINY = {"in_dim": 16, "base_dim": 8, "pyramid_dims": [8, 8, 8, 8, 8, 8], "reduce_dim": 8, "head_dim": 8,
              "num_classes": 20, "window": 64}


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from tadkit.data.synthetic import SynthConfig, generate_dataset

    root = tmp_path_factory.mktemp("synth") / "data"
    generate_dataset(root, SynthConfig(seed=0, dim=16, videos=3, min_video_seconds=20, max_video_seconds=40,
                                       latent_dim=8), progress=False)
    return root


def test_tadkit_train_on_synthetic_a2net_then_restore_and_predict(synth, tmp_path, monkeypatch):
    config_dir = tmp_path / "configs"
    config_dir.mkdir()
    rel = os.path.relpath(synth, config_dir)  # relative paths resolve against the config's directory
    (config_dir / "tiny.yaml").write_text(
        f"data:\n  annotations: {rel}/annotations.json\n  features: {rel}/features\n"
        "  window: 64\n  stride_train: 64\n  min_gt_coverage: 0.0\n"
        f"model:\n  name: a2net\n  kwargs: {json.dumps(A2NET_TINY)}\n"
        "train:\n  epochs: 2\n  batch_size: 4\n  lr_decay_epochs: [1]\n  tensorboard: false\n  log_every: 0\n"
    )
    assert not os.path.isabs(rel)
    monkeypatch.chdir(tmp_path)
    parser = add_train_arguments(argparse.ArgumentParser())
    args = parser.parse_args([str(config_dir / "tiny.yaml"), "--out", "run", "--no-progress", "--set", "train.seed=3"])
    assert run_train(args) == 0

    history = json.loads((tmp_path / "run" / "history.json").read_text())["epochs"]
    assert [h["lr"] for h in history] == pytest.approx([1e-4, 1e-5])
    assert {"af_cls", "af_reg", "total"} <= set(history[0]["loss"])  # A2Net's own loss terms
    model, config = load_checkpoint_model(tmp_path / "run" / "last.pt")
    assert type(model).__name__ == "A2Net" and config.train.seed == 3 and config.out_dir == str(tmp_path / "run")
    test_set = build_window_dataset(config, training=False, progress=False)
    predictions = predict_windows(model, test_set, window_collate(), batch_size=2, progress=False)
    assert [p.index for p in predictions] == list(range(len(test_set)))
    assert {p.video_id for p in predictions} == {"video_test_0000001", "video_test_0000002", "video_test_0000003"}
    for p in predictions:
        seg = p.detections.segments
        assert seg.shape[1] == 2 and torch.all(seg >= 0) and torch.all(seg <= 64)  # window steps


def test_collate_windows_matches_the_engine_contract(synth, tmp_path):
    from tadkit.engine import load_config

    (tmp_path / "c.yaml").write_text(f"data:\n  annotations: {synth}/annotations.json\n  features: {synth}/features\n"
                                     "  window: 64\n")
    config = load_config(tmp_path / "c.yaml")
    dataset = build_window_dataset(config, training=True, progress=False)
    batch = window_collate()([dataset[0], dataset[1]])
    assert batch["features"].shape == (2, 16, 64) and batch["features"].dtype == torch.float32
    assert set(batch["meta"][0]) >= {"video_id", "t0", "step", "valid_length"}
    assert batch["targets"][0]["labels"].dtype == torch.int64


def test_missing_data_paths_are_config_errors(tmp_path):
    from tadkit.engine import Config

    with pytest.raises(TadkitError, match="set data.annotations") as info:
        build_window_dataset(Config(), training=True)
    assert info.value.field == "data.annotations"
    assert fps_table("a2net_thumos")("video_test_0001207") == 24.0 and fps_table(None) is None


def window_collate():
    from tadkit.data.windows import collate_windows

    return collate_windows
