"""Config loading: defaults = A2Net spec, validation errors name file + dotted key, overrides, paths, _base_."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest
import yaml

from tadkit.engine.config import Config, DataConfig, load_config, parse_override, path_keys, save_resolved
from tadkit.engine.run import add_train_arguments, prepare_run, resolve_out_dir
from tadkit.errors import TadkitError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_generic_defaults_and_the_a2net_method_defaults(tmp_path):
    # Generic defaults (= methods/a2net.md §5 numbers): Adam lr 1e-4, no weight decay, batch 48, 40 epochs,
    # x0.1 after epoch 30, seed 1. The NMS recipe is no longer a config default but the method's own.
    from tadkit.methods import get_method

    config = load_config(write(tmp_path / "empty.yaml", ""))
    assert config.model.name is None and config.test.nms_config() is None
    t = config.train
    assert (t.lr, t.weight_decay, t.batch_size, t.epochs, t.lr_decay_epochs, t.lr_gamma, t.seed) == (
        1e-4, 0.0, 48, 40, [30], 0.1, 1)
    # §1.2: 128-feature windows; stride null -> window/4 train, window/2 test; GT kept if > 90 % inside.
    d = config.data
    assert (d.mode, d.window, d.stride_train, d.stride_test, d.pad) == ("sliding", 128, None, None, "repeat")
    # §6: per-class hard NMS 0.2, <= 200 per class, top 200 per video; protocol defaults from evaluation.md.
    nms = config.test.nms_config(default=get_method("a2net").defaults["test.nms"])
    assert (nms.method, nms.iou_threshold, nms.max_per_class, nms.max_per_video) == ("hard", 0.2, 200, 200)
    assert config.test.thresholds() == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
    config.test.protocol = "activitynet"
    assert config.test.thresholds() == pytest.approx([0.5 + 0.05 * i for i in range(10)])


def test_yaml_values_are_typed_and_exponent_strings_are_floats(tmp_path):
    # PyYAML reads `1e-4` (no dot) as a string; a learning rate written that way must still work.
    assert yaml.safe_load("lr: 1e-4")["lr"] == "1e-4"
    path = write(tmp_path / "c.yaml", "train:\n  lr: 1e-4\n  epochs: 5\n  grad_clip: 2\n  lr_decay_epochs: [2, 4]\n")
    t = load_config(path).train
    assert t.lr == 1e-4 and isinstance(t.lr, float)
    assert t.grad_clip == 2.0 and isinstance(t.grad_clip, float)
    assert t.lr_decay_epochs == [2, 4]


@pytest.mark.parametrize(
    "text, key, fragment",
    [
        ("train:\n  lr_decay: [30]\n", "train.lr_decay", "did you mean 'train.lr_decay_epochs'"),
        ("trian:\n  lr: 0.1\n", "trian", "did you mean 'train'"),
        ("train:\n  epochs: 2.5\n", "train.epochs", "expected an integer"),
        ("train:\n  epochs: true\n", "train.epochs", "expected an integer"),
        ("train:\n  deterministic: 1\n", "train.deterministic", "expected true or false"),
        ("train:\n  lr: fast\n", "train.lr", "expected a number"),
        ("train:\n  lr: -0.1\n", "train.lr", "must be > 0"),
        ("train:\n  lr: .nan\n", "train.lr", "must be finite"),
        ("train:\n  lr_decay_epochs: [30, 20]\n", "train.lr_decay_epochs", "strictly increasing"),
        ("train:\n  lr_decay_epochs: [30, x]\n", "train.lr_decay_epochs[1]", "expected an integer"),
        ("train:\n  best_metric: mAP\n", "train.best_metric", "needs evaluation"),
        ("data:\n  mode: slide\n", "data.mode", "did you mean 'sliding'"),
        ("data:\n  min_gt_coverage: 1.5\n", "data.min_gt_coverage", "[0, 1]"),
        ("data:\n  subset_train: 3\n", "data.subset_train", "expected str or list"),
        ("model:\n  kwargs: [1, 2]\n", "model.kwargs", "mapping"),
        ("test:\n  tiou_thresholds: []\n", "test.tiou_thresholds", "non-empty"),
        ("test:\n  nms: {preset: a2nett}\n", "test.nms.preset", "unknown NMS preset"),
        ("test:\n  nms: {method: soft}\n", "test.nms.method", "soft"),
        ("train: 3\n", "train", "expected a mapping"),
    ],
)
def test_bad_values_name_the_file_and_the_dotted_key(tmp_path, text, key, fragment):
    path = write(tmp_path / "bad.yaml", text)
    with pytest.raises(TadkitError) as info:
        load_config(path)
    error = info.value
    assert error.field == key
    assert error.file == str(path)
    assert fragment in str(error)
    assert str(path) in str(error) and key in str(error)


def test_file_level_errors(tmp_path):
    with pytest.raises(TadkitError, match="config file not found") as info:
        load_config(tmp_path / "missing.yaml")
    assert info.value.file.endswith("missing.yaml")
    with pytest.raises(TadkitError, match=r"invalid YAML at line \d+, column \d+") as info:
        load_config(write(tmp_path / "syntax.yaml", "train:\n  lr: [1, 2\n"))
    assert info.value.file.endswith("syntax.yaml")
    with pytest.raises(TadkitError, match="mapping of sections"):
        load_config(write(tmp_path / "list.yaml", "- 1\n- 2\n"))


def test_overrides_keep_yaml_types_and_are_validated(tmp_path):
    path = write(tmp_path / "c.yaml", "train:\n  lr: 0.1\nmodel:\n  name: a2net\n  kwargs: {num_classes: 20}\n")
    config = load_config(path, ["train.lr=1e-3", "train.lr_decay_epochs=[10, 20]", "train.grad_clip=null",
                                "model.kwargs.in_dim=1024", "data.subset_train=[validation, train]",
                                "train.amp=true"])
    assert config.train.lr == 1e-3
    assert config.train.lr_decay_epochs == [10, 20]
    assert config.train.grad_clip is None and config.train.amp is True
    assert config.model.kwargs == {"num_classes": 20, "in_dim": 1024}  # merged, not replaced
    assert config.data.subset_train == ["validation", "train"]
    with pytest.raises(TadkitError, match=r"from --set") as info:
        load_config(path, ["train.learning_rate=1"])
    assert info.value.field == "train.learning_rate"
    with pytest.raises(TadkitError) as info:
        load_config(path, ["train.epochs=many"])
    assert info.value.field == "train.epochs" and "from --set" in str(info.value)
    for bad in ["train.lr", "=3", "train..lr=1", "_base_=x.yaml"]:
        with pytest.raises(TadkitError):
            load_config(path, [bad])
    with pytest.raises(TadkitError, match="not a section"):
        load_config(path, ["train.lr.x=1"])
    assert parse_override("test.tiou_thresholds=[0.3, 0.5]") == ("test.tiou_thresholds", [0.3, 0.5])
    nms = load_config(path, ["test.nms={preset: afsd, max_per_class: 100}"]).test.nms_config()
    assert (nms.method, nms.sigma, nms.max_per_class) == ("gaussian", 0.5, 100)


def test_relative_paths_resolve_against_the_file_that_sets_them(tmp_path, monkeypatch):
    write(tmp_path / "configs" / "base.yaml", "data:\n  annotations: ../data/gt.json\n  features: feats\n")
    child = write(
        tmp_path / "configs" / "exp" / "child.yaml",
        "_base_: ../base.yaml\ndata:\n  features: ../../features/i3d\nout_dir: runs/x\ntest:\n  blocked_videos: /abs/b.json\n",
    )
    monkeypatch.chdir(tmp_path)
    config = load_config(child, ["data.video_info=info.csv"])
    assert config.data.annotations == str(tmp_path / "data" / "gt.json")  # from base.yaml's directory
    assert config.data.features == str(tmp_path / "features" / "i3d")  # child wins, its own directory
    assert config.out_dir == str(tmp_path / "configs" / "exp" / "runs" / "x")
    assert config.test.blocked_videos == "/abs/b.json"
    assert config.data.video_info == str(tmp_path / "info.csv")  # --set: current directory
    assert set(path_keys()) == {"data.annotations", "data.video_info", "data.features", "data.frames", "test.blocked_videos",
                                "test.video_classifier", "test.fuse", "out_dir"}


def test_base_merge_is_deep_and_cycles_are_reported(tmp_path):
    write(tmp_path / "a.yaml", "train:\n  lr: 0.5\n  epochs: 7\nmodel:\n  name: a2net\n  kwargs: {x: 1, y: 2}\n")
    write(tmp_path / "b.yaml", "train:\n  seed: 3\n")
    child = write(tmp_path / "c.yaml", "_base_: [a.yaml, b.yaml]\ntrain:\n  epochs: 9\nmodel:\n  kwargs: {y: 5}\n")
    config = load_config(child)
    assert (config.train.lr, config.train.epochs, config.train.seed) == (0.5, 9, 3)
    assert config.model.kwargs == {"x": 1, "y": 5}
    write(tmp_path / "loop1.yaml", "_base_: loop2.yaml\n")
    write(tmp_path / "loop2.yaml", "_base_: loop1.yaml\n")
    with pytest.raises(TadkitError, match="_base_ cycle") as info:
        load_config(tmp_path / "loop1.yaml")
    assert info.value.field == "_base_"
    with pytest.raises(TadkitError, match="config file not found"):
        load_config(write(tmp_path / "d.yaml", "_base_: nowhere.yaml\n"))


def test_save_resolved_round_trips_and_is_atomic(tmp_path):
    src = write(tmp_path / "cfg" / "c.yaml", "data:\n  features: f\ntrain:\n  lr: 3e-4\n  eval_every: 2\n"
                                              "  best_metric: mAP\nmodel:\n  kwargs: {dims: [1, 2]}\n")
    config = load_config(src, ["test.protocol=activitynet"])
    out = save_resolved(config, tmp_path / "run" / "config.yaml")
    assert sorted(p.name for p in out.parent.iterdir()) == ["config.yaml"]  # no temp file left behind
    again = load_config(out)  # absolute paths: resolving again changes nothing
    assert again == config
    assert again.data.features == str(tmp_path / "cfg" / "f")
    assert Config.from_dict(config.to_dict()) == config
    stored = config.to_dict()
    stored["train"]["removed_option"] = 1  # e.g. a checkpoint written by another tadkit version
    with pytest.raises(TadkitError, match="unknown key"):
        Config.from_dict(stored)
    assert Config.from_dict(stored, strict=False) == config
    assert yaml.safe_load(out.read_text())["train"]["lr"] == 3e-4


def test_window_dataset_kwargs_follow_the_mode():
    data = DataConfig(stride_train=32, stride_test=64, subset_train="validation", subset_test="test")
    train_kwargs, test_kwargs = data.window_dataset_kwargs(True), data.window_dataset_kwargs(False)
    assert (train_kwargs["window"], train_kwargs["stride"], train_kwargs["subset"], train_kwargs["training"]) == (
        128, 32, "validation", True)
    assert (test_kwargs["stride"], test_kwargs["subset"], test_kwargs["training"]) == (64, "test", False)
    resample = DataConfig(mode="resample", resample_length=100).window_dataset_kwargs(True)
    assert (resample["window"], resample["stride"]) == (100, None)


def test_cli_arguments_and_out_dir_precedence(tmp_path, monkeypatch):
    path = write(tmp_path / "exp.yaml", "out_dir: from_config\n")
    parser = add_train_arguments(argparse.ArgumentParser())
    monkeypatch.chdir(tmp_path)
    args = parser.parse_args([str(path), "--set", "train.lr=0.5", "--set", "train.epochs=2", "--out", "o"])
    config, out = prepare_run(args)
    assert (config.train.lr, config.train.epochs, out, config.out_dir) == (0.5, 2, tmp_path / "o", str(tmp_path / "o"))
    args = parser.parse_args([str(path)])
    assert prepare_run(args)[1] == tmp_path / "from_config"
    assert resolve_out_dir(Config(), None, "configs/a2net_thumos.yaml") == Path(os.getcwd()) / "runs" / "a2net_thumos"
