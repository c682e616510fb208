"""A long run fits on the disk: last.pt (full) + best.pt (weights only) by default, N snapshots on
request, the expected disk use said at the start, temp files of a killed run removed at the next start."""

from __future__ import annotations

import json
import os
import re

import pytest
import torch

from conftest import REPO
from test_engine_support import toy_config_dict, toy_datasets_fn
from tadkit.engine.checkpoint import (
    RESUME_KEYS,
    TRAINING_STATE_KEYS,
    CheckpointManager,
    estimate_checkpoint_disk,
    format_size,
    load_checkpoint,
    load_checkpoint_model,
)
from tadkit.engine.config import Config, load_config
from tadkit.engine.trainer import train
from tadkit.errors import TadkitError
from tadkit.utils.io import atomic_open, remove_stale_tmp


def run(out, resume=False, evaluate_fn=None, hidden=16, **train_kwargs):
    raw = toy_config_dict(**train_kwargs)
    raw["model"]["kwargs"]["hidden"] = hidden  # wide enough that weights, not metadata, fill the files
    config = Config.from_dict(raw)
    return train(config, out, resume, toy_datasets_fn(24), evaluate_fn, progress=False)


def score_peaks_at_2(model, epoch):
    return {"score": float(epoch % 3)}  # best at epoch 2 of 4


def test_default_keeps_last_full_and_best_weights_only(tmp_path):
    out = tmp_path / "run"
    result = run(out, epochs=4, eval_every=1, best_metric="score", evaluate_fn=score_peaks_at_2, hidden=4096)
    assert sorted(p.name for p in out.glob("*.pt")) == ["best.pt", "last.pt"]
    last = load_checkpoint(out / "last.pt", require=RESUME_KEYS)
    best = load_checkpoint(out / "best.pt")
    assert last["epoch"] == 4 and best["epoch"] == 2 and result.best_checkpoint == out / "best.pt"
    assert best["weights_only"] is True and not set(TRAINING_STATE_KEYS) & set(best)
    assert "weights_only" not in last and set(TRAINING_STATE_KEYS) <= set(last)
    # best.pt is what `tadkit test` / `detect` load: the model, the run's config and the classes
    model, config = load_checkpoint_model(out / "best.pt")
    assert config.train.best_metric == "score"
    assert all(torch.equal(model.state_dict()[k], v) for k, v in best["model"].items())
    # Adam keeps two moments per parameter: the full file is about 3x the weights-only one
    assert 2.5 < (out / "last.pt").stat().st_size / (out / "best.pt").stat().st_size < 3.5


def test_resume_reads_last_pt_and_a_weights_only_file_says_so(tmp_path):
    out = tmp_path / "run"
    run(out, epochs=2, eval_every=1, best_metric="score", evaluate_fn=score_peaks_at_2)
    assert run(out, resume=True, epochs=3, eval_every=1, best_metric="score", evaluate_fn=score_peaks_at_2).epoch == 3
    with pytest.raises(TadkitError, match="weights-only checkpoint .* continues from its last.pt") as info:
        load_checkpoint(out / "best.pt", require=RESUME_KEYS)
    assert info.value.file == str(out / "best.pt")


def test_keep_checkpoints_n_keeps_the_newest_n_weights_only_snapshots(tmp_path):
    out = tmp_path / "run"
    run(out, epochs=5, keep_checkpoints=2, keep_epochs=[1])
    assert sorted(p.name for p in out.glob("epoch_*.pt")) == ["epoch_001.pt", "epoch_004.pt", "epoch_005.pt"]
    assert load_checkpoint(out / "epoch_004.pt")["weights_only"] is True
    full = tmp_path / "full"
    run(full, epochs=2, keep_checkpoints=None, snapshot_state="full")
    assert sorted(p.name for p in full.glob("epoch_*.pt")) == ["epoch_001.pt", "epoch_002.pt"]
    load_checkpoint(full / "epoch_001.pt", require=RESUME_KEYS)  # a run can restart from a full snapshot


def test_expected_disk_use_is_said_at_the_start_and_matches_the_files(tmp_path):
    out = tmp_path / "run"
    run(out, epochs=3, keep_checkpoints=2, eval_every=1, best_metric="score", evaluate_fn=score_peaks_at_2, hidden=4096)
    log = (out / "train.log").read_text()
    line = next(line for line in log.splitlines() if "checkpoints: last.pt" in line)
    assert "best.pt" in line and "2 epoch snapshots" in line and "free" in line
    inodes = {p.stat().st_ino: p.stat().st_size for p in out.glob("*.pt")}  # best.pt may link a snapshot
    total = sum(inodes.values())
    said = _bytes(re.search(r"about ([\d.]+ [kMG]?B) on disk", line).group(1))
    weights = (out / "best.pt").stat().st_size
    assert 0.95 * total <= said <= 1.05 * (total + weights), (said, total)  # upper bound: best.pt counted apart
    # the start lines come before the first epoch
    assert log.index("checkpoints: last.pt") < log.index("epoch 1/3")


def _bytes(text: str) -> float:
    value, unit = text.split()
    return float(value) * {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}[unit]


@pytest.mark.slow
def test_disk_estimate_for_the_official_a2net_config_is_last_plus_best_not_one_per_epoch():
    """configs/a2net/thumos14.yaml at the official widths (65.5 M parameters), 40 epochs: the line
    docs/engine.md quotes; one full file per epoch would be 40 x 786 MB = 31 GB."""
    from tadkit.engine.trainer import build_optimizer, default_build_model

    config = load_config("a2net/thumos14", ["train.best_metric=mAP@0.5"])
    model = default_build_model(config)
    manager = CheckpointManager("unused", config.train.keep_checkpoints, config.train.keep_epochs)
    estimate = estimate_checkpoint_disk(model, build_optimizer(model, config), manager, list(range(1, 41)), best=True)
    assert sum(p.numel() for p in model.parameters()) == 65_527_534
    assert estimate.weights == 4 * 65_527_534 and estimate.full == pytest.approx(3 * estimate.weights, rel=1e-6)  # + Adam's 2 moments
    assert estimate.describe(free=120e9) == (
        "checkpoints: last.pt 786 MB (weights + optimizer state), best.pt 262 MB (weights only), 0 epoch snapshots "
        "(train.keep_checkpoints / keep_epochs); about 1.0 GB on disk, 1.8 GB while last.pt is replaced (120 GB free)")
    assert "```\n" + estimate.describe(free=120e9) + "\n```" in (REPO / "docs" / "engine.md").read_text()
    every_epoch = CheckpointManager("unused", None, snapshot_state="full")
    assert estimate_checkpoint_disk(model, build_optimizer(model, config), every_epoch, list(range(1, 41)),
                                    best=False).total == 41 * estimate.full  # the old behaviour: 31 GB


def test_temp_files_a_killed_run_left_are_removed_when_the_next_run_starts(tmp_path):
    out = tmp_path / "run"
    run(out, epochs=1)
    stale = [out / ".last.pt.abc123.tmp", out / ".best.pt.1234.link"]
    for path in stale:
        path.write_bytes(b"x" * 1000)
    keep = [out / "notes.tmp", out / "sub" / ".x.tmp"]  # not hidden / not at the top: not ours to remove
    keep[1].parent.mkdir()
    for path in keep:
        path.write_text("mine")
    run(out, resume=True, epochs=2)
    assert not any(p.exists() for p in stale) and all(p.exists() for p in keep)
    log = (out / "train.log").read_text()
    assert "removed 2 temp file(s) (2.0 kB) a killed run left" in log


def test_remove_stale_tmp_matches_atomic_open_names(tmp_path):
    class Killed(Exception):
        pass

    target = tmp_path / "report.json"
    with pytest.raises(Killed):
        with atomic_open(target, "w") as handle:  # a temp file exists while the block runs
            handle.write("{}")
            [leftover] = [p for p in tmp_path.iterdir() if p.name != "report.json"]
            os.link(leftover, tmp_path / (leftover.name + "2.tmp"))  # what a kill at this moment leaves
            raise Killed
    removed = remove_stale_tmp(tmp_path)
    assert [p.name for p, _ in removed] == [leftover.name + "2.tmp"] and removed[0][1] == 2
    assert list(tmp_path.iterdir()) == [] and remove_stale_tmp(tmp_path / "missing") == []


def test_the_old_keep_last_key_names_its_new_name(tmp_path):
    config = tmp_path / "old.yaml"
    config.write_text(json.dumps({"model": {"name": "a2net"}, "train": {"keep_last": 3}}))
    with pytest.raises(TadkitError, match="renamed 'train.keep_checkpoints") as info:
        load_config(config)
    assert info.value.field == "train.keep_last"
