"""Generic engine options ActionFormer needs: weight EMA, the from-zero warm-up, decay on weights only."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from test_engine_support import ToyDetector, toy_config_dict, toy_datasets_fn
from tadkit.engine import Config, train
from tadkit.engine.checkpoint import EMA_KEY, load_checkpoint, load_checkpoint_model
from tadkit.engine.ema import ModelEMA
from tadkit.engine.trainer import apply_config_schedule, build_optimizer, build_scheduler, lr_at, warmup_length


def make_config(**train_options) -> Config:
    return Config.from_dict(toy_config_dict(**train_options))


# ---- EMA -------------------------------------------------------------------------------------------


def test_ema_update_is_the_official_formula_in_float64():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    ema = ModelEMA(model, 0.9)
    reference = {k: v.double().clone() for k, v in model.state_dict().items()}
    for step in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model.train()
        model(torch.randn(5, 3))  # running stats and num_batches_tracked move
        ema.update()
        for key, value in model.state_dict().items():
            if value.is_floating_point():
                reference[key] = 0.9 * reference[key] + 0.1 * value.double()
            else:
                reference[key] = value.clone()
    for key, value in ema.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(value.double(), reference[key], rtol=1e-5, atol=1e-6)
        else:
            assert torch.equal(value, reference[key]), key  # counters are copied, not averaged
    assert int(ema.state_dict()["1.num_batches_tracked"]) == 3
    assert not any(p.requires_grad for p in ema.module.parameters())
    with pytest.raises(ValueError):
        ModelEMA(model, 1.0)


def test_training_with_ema_evaluates_and_tests_the_average_and_resumes_it_exactly(tmp_path):
    seen = []

    def evaluate_fn(model, epoch):
        seen.append({k: v.clone() for k, v in model.state_dict().items()})
        return {"score": float(epoch)}

    config = make_config(epochs=2, eval_every=1, best_metric="score", model_ema_decay=0.5)
    result = train(config, tmp_path / "run", False, toy_datasets_fn(24), evaluate_fn, progress=False)
    last = load_checkpoint(result.last_checkpoint)
    assert EMA_KEY in last and EMA_KEY in load_checkpoint(result.best_checkpoint)
    # the evaluated weights are the average, not the trained ones (they differ after 12 steps)
    for key, value in last[EMA_KEY].items():
        assert torch.equal(seen[-1][key], value)
    assert any(not torch.equal(last[EMA_KEY][k], last["model"][k]) for k in last["model"])
    model, _ = load_checkpoint_model(result.last_checkpoint)
    for key, value in model.state_dict().items():
        assert torch.equal(value, last[EMA_KEY][key])  # tadkit test / detect load the average

    # stop after 1 epoch, resume to 2: the average continues bit-exactly
    one = make_config(epochs=1, model_ema_decay=0.5)
    train(one, tmp_path / "split", False, toy_datasets_fn(24), progress=False)
    resumed = train(make_config(epochs=2, model_ema_decay=0.5), tmp_path / "split", True, toy_datasets_fn(24), progress=False)
    again = load_checkpoint(resumed.last_checkpoint)
    plain = load_checkpoint(train(make_config(epochs=2, model_ema_decay=0.5), tmp_path / "whole", False,
                                  toy_datasets_fn(24), progress=False).last_checkpoint)
    for key in plain[EMA_KEY]:
        assert torch.equal(again[EMA_KEY][key], plain[EMA_KEY][key]), key


def test_runs_without_ema_store_no_average(tmp_path):
    result = train(make_config(epochs=1), tmp_path / "run", False, toy_datasets_fn(8), progress=False)
    assert EMA_KEY not in load_checkpoint(result.last_checkpoint)


# ---- warm-up + cosine ------------------------------------------------------------------------------


class OfficialWarmupCosine:
    """ActionFormer's LinearWarmupCosineAnnealingLR (libs/utils/lr_schedulers.py), its chainable
    recursion re-derived here in float64 for one group: lr_0 = 0, lr_k = lr_{k-1} + base / (W - 1) for
    k < W, base at k = W, then lr_k = (1 + cos(pi (k - W) / (T - W))) / (1 + cos(pi (k - W - 1) / (T - W)))
    x (lr_{k-1} - eta_min) + eta_min."""

    def __init__(self, base: float, warmup: int, total: int, eta_min: float) -> None:
        self.base, self.warmup, self.total, self.eta_min = base, warmup, total, eta_min

    def lrs(self, steps: int) -> list[float]:
        out, lr = [], 0.0
        w, t = self.warmup, self.total
        for k in range(steps):
            if k == 0:
                lr = 0.0
            elif k < w:
                lr = lr + self.base / (w - 1)
            elif k == w:
                lr = self.base
            else:
                ratio = (1 + math.cos(math.pi * (k - w) / (t - w))) / (1 + math.cos(math.pi * (k - w - 1) / (t - w)))
                lr = ratio * (lr - self.eta_min) + self.eta_min
            out.append(lr)
        return out


def test_warmup_from_zero_follows_the_official_linear_warmup_cosine_schedule():
    steps_per_epoch, epochs, warmup_epochs, base = 7, 6, 2, 1e-4
    config = make_config(epochs=epochs, lr=base, scheduler="cosine", scheduler_unit="iteration",
                         warmup_epochs=warmup_epochs, warmup_from_zero=True, min_lr_factor=1e-4)
    assert warmup_length(config, steps_per_epoch) == warmup_epochs * steps_per_epoch
    total = epochs * steps_per_epoch
    official = OfficialWarmupCosine(base, warmup_epochs * steps_per_epoch, total, eta_min=1e-8).lrs(total)
    optimizer = build_optimizer(ToyDetector(), config)
    scheduler = build_scheduler(optimizer, config, steps_per_epoch)
    ours = []
    for _ in range(total):
        ours.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert ours[0] == 0.0 and ours[warmup_epochs * steps_per_epoch - 1] == pytest.approx(base, rel=1e-12)
    assert ours == pytest.approx(official, rel=1e-9, abs=1e-15)
    # tadkit's own warm-up differs (never 0, full lr only after the warm-up): the option matters
    shifted = make_config(epochs=epochs, lr=base, scheduler="cosine", scheduler_unit="iteration",
                          warmup_epochs=warmup_epochs, min_lr_factor=1e-4)
    assert lr_at(base, shifted, 0, total, steps_per_epoch) == pytest.approx(base / 15)
    # resume: the config's closed form re-applied at step 20 continues the same values
    fresh = build_optimizer(ToyDetector(), config)
    fresh_scheduler = build_scheduler(fresh, config, steps_per_epoch)
    apply_config_schedule(fresh, fresh_scheduler, config, 20)
    assert fresh.param_groups[0]["lr"] == ours[20]


# ---- weight decay on Linear / Conv weights only ------------------------------------------------------


class Mixed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(3, 4, 3)
        self.norm = nn.LayerNorm(4)
        self.head = nn.Linear(4, 2)
        self.scale = nn.Parameter(torch.tensor(1.0))


def test_weights_only_decay_splits_groups_like_the_official_make_optimizer():
    config = make_config(optimizer="adamw", weight_decay=0.05, weight_decay_params="weights",
                         param_groups=[{"params": r"^head\.", "lr_scale": 2.0}])
    model = Mixed()
    optimizer = build_optimizer(model, config)
    names = {id(p): n for n, p in model.named_parameters()}
    groups = [(sorted(names[id(p)] for p in g["params"]), g["weight_decay"], g["lr"]) for g in optimizer.param_groups]
    base = config.train.lr
    assert groups == [
        (["head.weight"], 0.05, 2 * base),
        (["head.bias"], 0.0, 2 * base),
        (["conv.weight"], 0.05, base),
        (["conv.bias", "norm.bias", "norm.weight", "scale"], 0.0, base),
    ]
    assert isinstance(optimizer, torch.optim.AdamW)
    # a resume re-applies the config's decay: the no-decay groups stay at 0
    scheduler = build_scheduler(optimizer, config)
    apply_config_schedule(optimizer, scheduler, config, 3)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.05, 0.0, 0.05, 0.0]
    everything = build_optimizer(model, make_config(optimizer="adamw", weight_decay=0.05))
    assert [g["weight_decay"] for g in everything.param_groups] == [0.05]
