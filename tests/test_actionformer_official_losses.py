"""ActionFormer's training losses vs the OFFICIAL training forward (happyharrycn/actionformer_release).

The fixture's ``train/loss/{cls_loss,reg_loss,final_loss}`` come from one ``model.train()`` forward of the
official model on all its videos as one batch (droppath 0, so the forward is deterministic), with the loss
normaliser at ``init_loss_norm``. Here the same batch goes through tadkit: features padded to
``max_seq_len`` (the official training batching), :meth:`ActionFormer.forward_heads`, points from the .json's
sizes, :func:`assign_targets` and :func:`actionformer_losses` with a fresh :class:`LossNormaliser`.

Tolerance: the official losses are float32 sums over every valid point and class; ours are computed in
float64 (the reference) and float32. A loss agrees when ``|ours64 - official| <= max(1e-5 |official|,
NOISE_FACTOR |ours32 - ours64|)``, the second term estimating float32 rounding at the fixture's sizes (the same
rule as the network's own fixture test). Label assignment runs on the official float32 arithmetic (float32
points and segments), so the positives are the official ones in both runs.
"""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from actionformer_golden import Golden, load_golden
from tadkit.methods.actionformer.losses import LossNormaliser, actionformer_losses
from tadkit.methods.actionformer.model import ActionFormer
from tadkit.methods.actionformer.official import from_official_state_dict
from tadkit.methods.actionformer.targets import assign_targets

pytestmark = [pytest.mark.shared, pytest.mark.usefixtures("one_torch_thread")]

LOSSES = ("cls_loss", "reg_loss", "final_loss")
RELATIVE_TOL = 1e-5
NOISE_FACTOR = 20.0


@pytest.fixture(scope="module")
def golden() -> Golden:
    return load_golden()


def _official_model(golden: Golden) -> ActionFormer:
    prefix = "state_dict/"
    state = {k[len(prefix):]: torch.from_numpy(v) for k, v in golden.arrays.items() if k.startswith(prefix)}
    return from_official_state_dict(state, **golden.model)


def _training_batch(golden: Golden, max_seq_len: int) -> tuple[torch.Tensor, torch.Tensor, list, list]:
    """The official training batching: every video padded with zeros to ``max_seq_len``."""
    feats, lengths, segments, labels = [], [], [], []
    for b in range(len(golden.videos)):
        x = torch.from_numpy(golden.arrays[f"input/v{b}/feats"])
        assert x.shape[-1] <= max_seq_len, f"video {b} is longer than max_seq_len (the official code asserts)"
        feats.append(F.pad(x, (0, max_seq_len - x.shape[-1])))
        lengths.append(x.shape[-1])
        segments.append(torch.from_numpy(golden.arrays[f"input/v{b}/segments"]))
        labels.append(torch.from_numpy(golden.arrays[f"input/v{b}/labels"]))
    mask = torch.arange(max_seq_len)[None] < torch.tensor(lengths)[:, None]
    return torch.stack(feats), mask, segments, labels


def _losses(model: ActionFormer, feats: torch.Tensor, mask: torch.Tensor, golden: Golden, cls_t: torch.Tensor,
            reg_t: torch.Tensor, points: list[torch.Tensor]) -> tuple[dict[str, float], LossNormaliser, torch.Tensor]:
    train_cfg = golden.model["train_cfg"]
    model.train()
    heads = model.forward_heads(feats, mask)
    dtype = heads.cls_logits[0].dtype
    normaliser = LossNormaliser(train_cfg["init_loss_norm"])
    out = actionformer_losses(heads, [p.to(dtype) for p in points], cls_t.to(dtype), reg_t.to(dtype), normaliser,
                              train_cfg)
    return {k: float(v.detach()) for k, v in out.items()}, normaliser, torch.cat(heads.masks, dim=1)


def test_official_actionformer_training_losses_match_fixture(golden: Golden) -> None:
    model = _official_model(golden)
    max_seq_len = int(golden.model["max_seq_len"])
    feats, mask, segments, labels = _training_batch(golden, max_seq_len)
    level_lengths = [max_seq_len // s for s in golden.strides]
    points = golden.points(level_lengths)
    train_cfg = golden.model["train_cfg"]
    cls_t, reg_t = assign_targets(points, segments, labels, int(golden.model["num_classes"]),
                                  train_cfg["center_sample"], float(train_cfg["center_sample_radius"]))
    ours32, norm32, valid = _losses(model, feats, mask, golden, cls_t, reg_t, points)
    ours64, _, _ = _losses(model.double(), feats.double(), mask, golden, cls_t, reg_t, points)

    positives = int(((cls_t.sum(-1) > 0) & valid).sum())
    assert positives > 0, "the fixture's videos should have positive points"
    # one EMA step from init_loss_norm towards the number of positives on real (unpadded) steps
    assert float(norm32.value) == 0.9 * train_cfg["init_loss_norm"] + 0.1 * positives
    for name in LOSSES:
        official = float(golden.arrays[f"train/loss/{name}"])
        tol = max(RELATIVE_TOL * abs(official), NOISE_FACTOR * abs(ours32[name] - ours64[name]))
        error = abs(ours64[name] - official)
        assert error <= tol, f"{name}: ours {ours64[name]!r} vs official {official!r} (error {error:.3g} > {tol:.3g})"
        assert abs(ours32[name] - official) <= 2 * tol, f"{name} (float32 run)"


def test_official_actionformer_losses_reject_a_wrong_assignment(golden: Golden) -> None:
    """The comparison can fail: label assignments with a plausible mistake (no centre sampling, half the
    radius) give losses outside the tolerance whenever they change the targets at all (with some regression
    ranges a radius of 2 strides already implies the range limit, and centre sampling changes nothing)."""
    model = _official_model(golden)
    max_seq_len = int(golden.model["max_seq_len"])
    feats, mask, segments, labels = _training_batch(golden, max_seq_len)
    points = golden.points([max_seq_len // s for s in golden.strides])
    train_cfg = golden.model["train_cfg"]
    num_classes, radius = int(golden.model["num_classes"]), float(train_cfg["center_sample_radius"])
    right, _ = assign_targets(points, segments, labels, num_classes, train_cfg["center_sample"], radius)
    official = float(golden.arrays["train/loss/final_loss"])
    detected = 0
    for sample, wrong_radius in (("none", radius), ("radius", radius / 2)):
        cls_t, reg_t = assign_targets(points, segments, labels, num_classes, sample, wrong_radius)
        if torch.equal(cls_t, right):
            continue
        ours, _, _ = _losses(model, feats, mask, golden, cls_t, reg_t, points)
        assert abs(ours["final_loss"] - official) > RELATIVE_TOL * abs(official), (sample, wrong_radius)
        detected += 1
    if not detected:
        pytest.skip("no mistake changes this fixture's targets")
