"""Checkpoints: weights_only-loadable, RNG states round-trip, pruning, clear errors, model restore."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from test_engine_support import TOY_MODEL, ToyDetector, ToyWindows, toy_collate, toy_config_dict
from tadkit.engine.checkpoint import (
    CHECKPOINT_FORMAT,
    CheckpointManager,
    capture_rng_state,
    load_checkpoint,
    load_checkpoint_model,
    restore_rng_state,
    save_checkpoint,
    strip_ddp_prefix,
)
from tadkit.engine.config import Config
from tadkit.engine.trainer import build_optimizer, build_scheduler
from tadkit.errors import TadkitError


def draws() -> tuple:
    return (
        [random.random() for _ in range(3)],
        random.gauss(0, 1),
        np.random.rand(3).tolist(),
        float(np.random.randn()),
        torch.rand(3).tolist(),
    )


def test_rng_states_survive_a_weights_only_round_trip(tmp_path):
    random.seed(5), np.random.seed(5), torch.manual_seed(5)
    random.gauss(0, 1)  # leaves a cached gaussian in Python's state (gauss_next != None)
    np.random.randn()  # and one in NumPy's (has_gauss = 1)
    path = tmp_path / "rng.pt"
    torch.save({"rng": capture_rng_state()}, path)
    expected = draws()
    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    restore_rng_state(torch.load(path, weights_only=True)["rng"])
    assert draws() == expected


def payload(model, optimizer, scheduler, epoch: int) -> dict:
    config = Config.from_dict(toy_config_dict())
    return {
        "model_name": TOY_MODEL,
        "model_config": model.config_dict(),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": None,
        "epoch": epoch,
        "global_step": 10 * epoch,
        "rng": {"world_size": 1, "per_rank": [capture_rng_state()]},
        "sampler": {"seed": 7, "epoch": epoch},
        "config": config.to_dict(),
        "history": [{"epoch": 1, "lr": 0.01, "loss": {"total": 1.5}, "metrics": {}}],
        "best": None,
    }


def trained_toy():
    torch.manual_seed(0)
    config = Config.from_dict(toy_config_dict())
    model = ToyDetector()
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config)
    batch = toy_collate([ToyWindows()[i] for i in range(4)])
    model.loss(model(batch["features"]), batch["targets"])["total"].backward()
    optimizer.step()
    scheduler.step()
    return model, optimizer, scheduler, batch


def test_full_training_state_loads_with_weights_only_and_resumes_optimizer(tmp_path):
    model, optimizer, scheduler, batch = trained_toy()
    path = save_checkpoint(payload(model, optimizer, scheduler, 1), tmp_path / "c.pt")
    data = torch.load(path, weights_only=True)  # raises on anything but tensors and plain types
    assert data["format"] == CHECKPOINT_FORMAT
    clone = ToyDetector()
    clone.load_state_dict(data["model"])
    opt2 = torch.optim.Adam(clone.parameters(), lr=0.01)
    opt2.load_state_dict(data["optimizer"])
    sched2 = build_scheduler(opt2, Config.from_dict(toy_config_dict()))
    sched2.load_state_dict(data["scheduler"])
    assert sched2.last_epoch == scheduler.last_epoch and sched2.base_lrs == scheduler.base_lrs
    assert sched2.get_last_lr() == scheduler.get_last_lr()
    # One more identical step on both must give identical weights (Adam moments restored).
    for m, o in ((model, optimizer), (clone, opt2)):
        o.zero_grad()
        m.loss(m(batch["features"]), batch["targets"])["total"].backward()
        o.step()
    for a, b in zip(model.parameters(), clone.parameters()):
        assert torch.equal(a, b)


def test_manager_writes_last_prunes_and_keeps_pinned_epochs(tmp_path):
    model, optimizer, scheduler, _ = trained_toy()
    manager = CheckpointManager(tmp_path, keep=2, keep_epochs=[2])
    for epoch in range(1, 6):
        manager.save(payload(model, optimizer, scheduler, epoch), epoch, best=epoch == 3)
    assert sorted(manager.epoch_files()) == [2, 4, 5]
    assert torch.load(manager.last_path, weights_only=True)["epoch"] == 5
    assert torch.load(manager.best_path, weights_only=True)["epoch"] == 3  # survives pruning of epoch_003
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left
    keep_all = CheckpointManager(tmp_path / "all", keep=None)
    for epoch in range(1, 4):
        keep_all.save(payload(model, optimizer, scheduler, epoch), epoch)
    assert sorted(keep_all.epoch_files()) == [1, 2, 3]


def test_load_errors_are_tadkit_errors_naming_the_file(tmp_path):
    with pytest.raises(TadkitError, match="checkpoint not found") as info:
        load_checkpoint(tmp_path / "none.pt")
    assert info.value.file.endswith("none.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(TadkitError, match="not a readable PyTorch checkpoint"):
        load_checkpoint(garbage)
    official = tmp_path / "official.pth"
    torch.save({"state_dict": ToyDetector().state_dict()}, official)
    with pytest.raises(TadkitError, match="not a tadkit checkpoint") as info:
        load_checkpoint(official)
    assert info.value.field == "format"
    partial = tmp_path / "partial.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "model_name": TOY_MODEL}, partial)
    with pytest.raises(TadkitError) as info:
        load_checkpoint(partial)
    assert info.value.field == "model_config"


def test_load_checkpoint_model_rebuilds_the_model_and_config(tmp_path):
    model, optimizer, scheduler, batch = trained_toy()
    data = payload(model, optimizer, scheduler, 1)
    data["model"] = {f"module.{k}": v for k, v in data["model"].items()}  # as saved from a DDP wrapper
    path = save_checkpoint(data, tmp_path / "m.pt")
    restored, config = load_checkpoint_model(path)
    assert isinstance(restored, ToyDetector) and not restored.training
    assert config == Config.from_dict(toy_config_dict())
    model.eval()
    with torch.no_grad():
        assert torch.equal(restored(batch["features"])["logits"], model(batch["features"])["logits"])
    data["model_config"] = {**model.config_dict(), "hidden": 4}
    with pytest.raises(TadkitError, match="weights do not fit") as info:
        load_checkpoint_model(save_checkpoint(data, tmp_path / "bad.pt"))
    assert info.value.file.endswith("bad.pt") and info.value.field == "model"
    data["model_name"] = "no_such_model"
    with pytest.raises(TadkitError, match="unknown method"):
        load_checkpoint_model(save_checkpoint(data, tmp_path / "bad2.pt"))


def test_strip_ddp_prefix_only_when_every_key_has_it():
    assert strip_ddp_prefix({"module.a": 1, "module.b": 2}) == {"a": 1, "b": 2}
    assert strip_ddp_prefix({"module.a": 1, "b": 2}) == {"module.a": 1, "b": 2}
