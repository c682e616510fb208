"""Faults a run meets outside the model (issue 11, "Faults"): bad feature values, a second run in the
same directory, a read-only or full disk. Each must stop with one clear TadkitError (CLI exit 2)
before any work is wasted, and never leave a partial checkpoint.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from test_engine_support import toy_config_dict, toy_datasets_fn
from tadkit.cli import main
from tadkit.data import features as features_module
from tadkit.data.features import SCAN_CACHE_NAME, FeatureStore, first_non_finite
from tadkit.engine.checkpoint import load_checkpoint
from tadkit.engine.config import Config
from tadkit.engine.trainer import train
from tadkit.errors import TadkitError
from tadkit.utils import io as io_module
from tadkit.utils.io import WriteFailure, lock_directory, torch_save

ROOT = Path(__file__).resolve().parents[1]
BAD_VIDEO, BAD_ROW, BAD_COLUMN = "video_validation_0000003", 37, 5


def make_config(**train_kwargs) -> Config:
    return Config.from_dict(toy_config_dict(**train_kwargs))


class CountingBuilder:
    """``build_datasets_fn`` that records whether the run got as far as loading data."""

    def __init__(self) -> None:
        self.calls = 0
        self.inner = toy_datasets_fn(24)

    def __call__(self, config):
        self.calls += 1
        return self.inner(config)


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    from tadkit.data.synthetic import SynthConfig, generate_dataset

    root = tmp_path_factory.mktemp("faults") / "data"
    generate_dataset(root, SynthConfig(seed=3, dim=8, videos=4, min_video_seconds=30.0, max_video_seconds=60.0),
                     progress=False)
    return root


@pytest.fixture
def data_copy(synth, tmp_path) -> Path:
    """A private copy of the synthetic data (tests write NaN into it and leave scan caches)."""
    import shutil

    target = tmp_path / "data"
    shutil.copytree(synth, target)
    (target / "features" / SCAN_CACHE_NAME).unlink(missing_ok=True)
    return target


def poison(path: Path, row: int = BAD_ROW, column: int = BAD_COLUMN, value: float = np.nan) -> None:
    array = np.load(path)
    array[row, column] = value
    np.save(path, array)


def method_config(data: Path, method: str, **train_kwargs) -> Config:
    data_section = {"annotations": str(data / "annotations.json"), "features": str(data / "features"),
                    "subset_train": "validation", "subset_test": "test"}
    if method == "ecm":  # data kind "videos": whole videos resampled
        data_section.update({"mode": "resample", "resample_length": 64})
        model = {"name": "ecm", "kwargs": {"preset": "thumos14", "in_dim": 8, "hidden_dim": 16, "num_classes": 20}}
    else:  # data kind "windows"
        data_section["window"] = 32
        model = {"name": "toy_method:SPEC", "kwargs": {"in_dim": 8, "num_classes": 20, "hidden": 16}}
    train_section = {"epochs": 1, "batch_size": 8, "lr": 0.01, "lr_decay_epochs": [], "seed": 0,
                     "tensorboard": False, "log_every": 0, "device": "cpu", **train_kwargs}
    return Config.from_dict({"model": model, "data": data_section, "train": train_section,
                             "test": {"protocol": "thumos14", "batch_size": 4}})


# --------------------------------------------------------------------------------------------------
# NaN / Inf in the features
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("chunk_rows", [None, 1, 7, 1000])
def test_first_non_finite_is_the_first_bad_value_in_row_major_order(dtype, chunk_rows):
    array = np.random.default_rng(0).normal(size=(300, 6)).astype(dtype)
    assert first_non_finite(array, chunk_rows) is None
    array[250, 1] = np.inf
    array[213, 4] = np.nan  # earlier row, later column: this one is first
    array[213, 5] = -np.inf
    assert first_non_finite(array, chunk_rows) == (213, 4)
    huge = np.full((50, 3), np.finfo(dtype).max, dtype=dtype)  # finite, though any sum of it overflows
    assert first_non_finite(huge, chunk_rows) is None


def test_scan_caches_the_verdict_per_file_by_size_and_mtime(data_copy, monkeypatch):
    store = FeatureStore(data_copy / "features")
    videos = store.video_ids()
    first = store.scan_values(videos)
    assert (first.files_scanned, first.files_cached) == (8, 0)
    cache = json.loads((data_copy / "features" / SCAN_CACHE_NAME).read_text())
    assert len(cache["files"]) == 8 and all(entry["bad"] is None for entry in cache["files"].values())

    reads = []
    real = features_module.first_non_finite
    monkeypatch.setattr(features_module, "first_non_finite", lambda a, c=None: reads.append(a.shape) or real(a, c))
    again = FeatureStore(data_copy / "features").scan_values(videos)  # a new process would do the same
    assert (again.files_scanned, again.files_cached, reads) == (0, 8, [])

    bad = data_copy / "features" / f"{BAD_VIDEO}.npy"
    poison(bad)  # same size: only the mtime tells the file changed
    os.utime(bad, ns=(1_000_000_000, 1_000_000_000))
    for _ in range(2):  # the bad verdict is cached too: the second time nothing is read
        with pytest.raises(TadkitError) as info:
            FeatureStore(data_copy / "features").scan_values(videos)
        error = info.value
        assert (error.file, error.video, error.field) == (str(bad), BAD_VIDEO, "values")
        assert f"first at feature {BAD_ROW}, column {BAD_COLUMN}" in error.message
    assert len(reads) == 1


@pytest.mark.parametrize("how", ["chmod a-w", "write fails"])
def test_scan_cache_goes_to_the_user_cache_when_the_feature_dir_is_not_writable(data_copy, tmp_path, monkeypatch,
                                                                                how):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    features = data_copy / "features"
    if how == "write fails":
        (features / SCAN_CACHE_NAME).mkdir()  # the rename onto it fails, even for root
    else:
        features.chmod(0o555)  # read-only by its mode: left alone even by root
    try:
        store = FeatureStore(features)
        report = store.scan_values(store.video_ids())
        assert report.cache_file is not None and report.cache_file.parent == tmp_path / "xdg" / "tadkit" / "scan"
        assert FeatureStore(features).scan_values(store.video_ids()).files_cached == 8
        assert not (features / SCAN_CACHE_NAME).is_file()
    finally:
        features.chmod(0o755)


@pytest.mark.parametrize("method", ["toy_method:SPEC", "ecm"])  # data kinds "windows" and "videos"
def test_train_refuses_nan_features_before_training_and_leaves_no_run_dir(data_copy, tmp_path, method):
    poison(data_copy / "features" / f"{BAD_VIDEO}.npy", value=np.inf)
    out = tmp_path / "run"
    with pytest.raises(TadkitError) as info:
        train(method_config(data_copy, "ecm" if method == "ecm" else "toy"), out, False, progress=False)
    error = info.value
    assert (error.video, error.field) == (BAD_VIDEO, "values") and error.file.endswith(f"{BAD_VIDEO}.npy")
    assert f"feature {BAD_ROW}, column {BAD_COLUMN}" in error.message and "train.lr" not in str(error)
    assert not out.exists()  # no partial run directory


def test_nan_in_the_test_subset_fails_before_the_first_epoch_when_evaluation_is_scheduled(data_copy, tmp_path):
    poison(data_copy / "features" / "video_test_0000002.npy")
    out = tmp_path / "existing_run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(TadkitError, match="first at feature 37") as info:
        train(method_config(data_copy, "toy", eval_every=1), out, False, progress=False)
    assert info.value.video == "video_test_0000002"
    assert sorted(p.name for p in out.iterdir()) == [".lock", "notes.txt"]  # a directory it did not create stays
    # without evaluation the test subset is not read, and training runs
    assert train(method_config(data_copy, "toy"), out, False, progress=False).epoch == 1


def test_cli_train_and_detect_blame_the_features(data_copy, tmp_path, capsys):
    config = tmp_path / "toy.yaml"
    config.write_text(json.dumps(method_config(data_copy, "toy").to_dict()))
    run = tmp_path / "run"
    assert main(["train", str(config), "--out", str(run), "--no-progress"]) == 0
    bad = data_copy / "features" / f"{BAD_VIDEO}.npy"
    poison(bad)
    capsys.readouterr()
    assert main(["train", str(config), "--out", str(tmp_path / "run2"), "--no-progress"]) == 2
    assert f"file {bad}, video {BAD_VIDEO}, field values" in capsys.readouterr().err
    assert main(["detect", str(bad), "--checkpoint", str(run / "last.pt"), "--feature-fps", "30",
                 "--feature-stride", "4", "--no-progress"]) == 2
    err = capsys.readouterr().err
    # the user's file (not the temporary one-video store that links to it), not "detections"
    assert f"file {bad}, video {BAD_VIDEO}, field values" in err and f"feature {BAD_ROW}, column {BAD_COLUMN}" in err


# --------------------------------------------------------------------------------------------------
# Two runs in one directory
# --------------------------------------------------------------------------------------------------

HOLDER = """
import sys
sys.path.insert(0, sys.argv[2])
from tadkit.utils.io import ensure_writable_dir, lock_directory
ensure_writable_dir(sys.argv[1])
lock = lock_directory(sys.argv[1])
print("locked", flush=True)
sys.stdin.read()  # hold the lock until the test closes our stdin
"""


def test_a_second_run_into_the_same_out_fails_at_once_naming_the_holder(tmp_path, capsys):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out), str(ROOT)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        builder = CountingBuilder()
        with pytest.raises(TadkitError) as info:
            train(make_config(epochs=1), out, False, builder, progress=False)
        assert f"pid {holder.pid}" in info.value.message and info.value.file == str(out)
        assert "another tadkit train" in info.value.message and builder.calls == 0  # nothing loaded

        config = tmp_path / "c.yaml"
        config.write_text(json.dumps(toy_config_dict(epochs=1)))
        capsys.readouterr()
        assert main(["train", str(config), "--out", str(out), "--resume", "--no-progress"]) == 2
        assert f"pid {holder.pid}" in capsys.readouterr().err
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert sorted(p.name for p in out.iterdir()) == [".lock"]  # the refused runs wrote nothing
    result = train(make_config(epochs=1), out, False, toy_datasets_fn(24), progress=False)  # the holder is gone
    assert result.epoch == 1
    lock_directory(out).release()  # and the finished run released its lock


# --------------------------------------------------------------------------------------------------
# Read-only or full disk
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("code, words", [(errno.EROFS, "read-only file system"),
                                         (errno.ENOSPC, "no space left on device"),
                                         (errno.EACCES, "permission denied")])
def test_an_unwritable_out_fails_before_anything_is_loaded(tmp_path, monkeypatch, code, words):
    out = tmp_path / "run"
    real = io_module.tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and Path(dir) == out:
            raise OSError(code, os.strerror(code))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(io_module.tempfile, "mkstemp", mkstemp)
    builder = CountingBuilder()
    with pytest.raises(TadkitError) as info:
        train(make_config(epochs=1), out, False, builder, progress=False)
    assert words in info.value.message and "--out" in info.value.message and info.value.file == str(out)
    assert builder.calls == 0


def test_an_out_below_a_file_is_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(TadkitError, match="cannot create the directory"):
        train(make_config(epochs=1), tmp_path / "file" / "run", False, CountingBuilder(), progress=False)


class FullDisk:
    """A file object that takes ``room`` bytes, then fails as a full disk does."""

    def __init__(self, handle, room: int) -> None:
        self.handle, self.room = handle, room

    def write(self, data) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.handle.write(data)

    def flush(self) -> None:
        self.handle.flush()


@pytest.mark.parametrize("how", ["torch writer", "raised by save"])
def test_torch_save_on_a_full_disk_keeps_the_previous_file_and_no_temp(tmp_path, monkeypatch, how):
    target = tmp_path / "last.pt"
    torch_save({"epoch": 1}, target)
    before = target.read_bytes()
    real = torch.save

    def full_save(obj, handle, *args, **kwargs):
        if how == "torch writer":  # the real serializer on a full disk: RuntimeError("unexpected pos ...")
            return real(obj, FullDisk(handle, 600), *args, **kwargs)
        handle.write(b"partial checkpoint bytes")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_save)
    with pytest.raises(WriteFailure, match="no space left on device") as info:
        torch_save({"epoch": 2, "weights": torch.zeros(10_000)}, target)
    assert info.value.file == str(target)
    assert target.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_a_full_disk_during_a_checkpoint_is_one_clear_error_and_last_pt_stays_whole(tmp_path, monkeypatch):
    out = tmp_path / "run"
    config = make_config(epochs=1, keep_checkpoints=None)
    train(config, out, False, toy_datasets_fn(24), progress=False)
    before = (out / "last.pt").read_bytes()
    real = torch.save
    monkeypatch.setattr(torch, "save", lambda obj, handle, *a, **k: real(obj, FullDisk(handle, 4096), *a, **k))
    longer = make_config(epochs=2, keep_checkpoints=None)
    with pytest.raises(TadkitError) as info:
        train(longer, out, True, toy_datasets_fn(24), progress=False)
    message = str(info.value)
    assert "no space left on device" in message and "--resume" in message and "last.pt" in message
    assert (out / "last.pt").read_bytes() == before and load_checkpoint(out / "last.pt")["epoch"] == 1
    assert not (out / "epoch_002.pt").exists() and not list(out.glob(".*.tmp")) and not list(out.glob(".*.link"))
    assert [e["epoch"] for e in json.loads((out / "history.json").read_text())["epochs"]] == [1]
    monkeypatch.setattr(torch, "save", real)  # space freed: --resume continues from the intact last.pt
    assert train(longer, out, True, toy_datasets_fn(24), progress=False).epoch == 2


def test_a_full_disk_met_by_a_plain_write_is_translated_too(tmp_path, monkeypatch):
    from tadkit.engine import trainer as trainer_module

    def full_log(self, message, console=False):
        if message.startswith("epoch 1/"):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(trainer_module.RunLog, "__call__", full_log)
    with pytest.raises(TadkitError, match="cannot write to the run directory: no space left on device") as info:
        train(make_config(epochs=1), tmp_path / "run", False, toy_datasets_fn(24), progress=False)
    assert info.value.file == str(tmp_path / "run")
