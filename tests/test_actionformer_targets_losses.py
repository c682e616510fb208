"""ActionFormer's points, label assignment and losses on small cases checked by hand.

The golden comparison of the losses with the official training forward is in
``tests/test_actionformer_official_losses.py``; these cases pin each rule separately (centre region,
regression range limits inclusive, shortest-segment tie-break with its 1e-3 tolerance, padding).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch

from tadkit.errors import TadkitError
from tadkit.methods.actionformer.losses import LossNormaliser, actionformer_losses
from tadkit.methods.actionformer.points import make_points, pyramid_strides
from tadkit.methods.actionformer.targets import assign_targets
from tadkit.models.losses import centre_diou_loss, sigmoid_focal_loss


def _positives(cls_targets: torch.Tensor, video: int = 0) -> list[int]:
    return torch.nonzero(cls_targets[video].sum(-1) > 0).squeeze(1).tolist()


# ------------------------------------------------------------------------------------------------ #
# Points
# ------------------------------------------------------------------------------------------------ #


def test_points_layout() -> None:
    assert pyramid_strides(2, 5) == [1, 2, 4, 8, 16, 32]
    assert pyramid_strides(2, 3, fpn_start_level=1) == [2, 4, 8]
    level0, level1 = make_points([4, 2], [1, 2], [(0, 4), (4, 10000)])
    assert level0.tolist() == [[0, 0, 4, 1], [1, 0, 4, 1], [2, 0, 4, 1], [3, 0, 4, 1]]
    assert level1.tolist() == [[0, 4, 10000, 2], [2, 4, 10000, 2]]
    assert level0.dtype == torch.float32
    with pytest.raises(TadkitError, match="regression_range"):
        make_points([4, 2], [1, 2], [(0, 4)])


# ------------------------------------------------------------------------------------------------ #
# Label assignment
# ------------------------------------------------------------------------------------------------ #


def _one_level(length: int = 20, reg_range: tuple[float, float] = (0.0, 100.0)) -> list[torch.Tensor]:
    return make_points([length], [1], [reg_range])


def test_centre_region_is_strict_and_radius_in_strides() -> None:
    gt = [torch.tensor([[5.0, 15.0]])]
    cls, reg = assign_targets(_one_level(), gt, [torch.tensor([2])], num_classes=3, center_sample_radius=1.5)
    # centre 10, region [8.5, 11.5]: t = 9, 10, 11 strictly inside
    assert _positives(cls) == [9, 10, 11]
    assert cls[0, 10].tolist() == [0.0, 0.0, 1.0]
    assert reg[0, 9].tolist() == [4.0, 6.0]  # (t - start, end - t) / stride 1
    cls, _ = assign_targets(_one_level(), gt, [torch.tensor([2])], num_classes=3, center_sample_radius=2.0)
    assert _positives(cls) == [9, 10, 11]  # region [8, 12]: 8 and 12 sit on its edge, not inside
    cls, _ = assign_targets(_one_level(), gt, [torch.tensor([2])], num_classes=3, center_sample="none")
    assert _positives(cls) == list(range(6, 15))  # strictly inside (5, 15)


def test_centre_region_never_leaves_the_segment() -> None:
    gt = [torch.tensor([[9.5, 10.5]])]  # radius 1.5 around 10 would reach [8.5, 11.5]
    cls, _ = assign_targets(_one_level(), gt, [torch.tensor([0])], num_classes=1)
    assert _positives(cls) == [10]


def test_regression_range_limits_are_inclusive_and_pick_the_level() -> None:
    points = make_points([20, 10], [1, 2], [(0.0, 5.0), (5.0, 100.0)])
    gt = [torch.tensor([[5.0, 15.0]])]
    cls, reg = assign_targets(points, gt, [torch.tensor([0])], num_classes=1)
    # level 0 (t = 9, 10, 11): farthest boundary 6, 5, 6 -> only t = 10 (5 <= 5)
    # level 1 (t = 0, 2, ..., 18; region [7, 13]): t = 8, 10, 12 with farthest 7, 5, 7 (5 >= 5 included)
    assert _positives(cls) == [10, 20 + 4, 20 + 5, 20 + 6]
    assert reg[0, 24].tolist() == [1.5, 3.5]  # t = 8: (3, 7) / stride 2
    assert reg[0, 25].tolist() == [2.5, 2.5]


def test_shortest_segment_wins_and_near_equal_lengths_share_the_point() -> None:
    gt = [torch.tensor([[0.0, 20.0], [8.0, 12.0]])]
    cls, reg = assign_targets(_one_level(), gt, [torch.tensor([0, 1])], num_classes=3)
    assert cls[0, 10].tolist() == [0.0, 1.0, 0.0] and reg[0, 10].tolist() == [2.0, 2.0]
    # lengths 4 and 3.9995 differ by < 1e-3: both classes, offsets of the shorter one
    gt = [torch.tensor([[8.0, 12.0], [8.0005, 12.0]])]
    cls, reg = assign_targets(_one_level(), gt, [torch.tensor([1, 2])], num_classes=3)
    assert cls[0, 10].tolist() == [0.0, 1.0, 1.0]
    assert reg[0, 10].tolist() == pytest.approx([1.9995, 2.0])
    # 4 and 3.99 differ by more: the shorter alone
    gt = [torch.tensor([[8.0, 12.0], [8.01, 12.0]])]
    cls, _ = assign_targets(_one_level(), gt, [torch.tensor([1, 2])], num_classes=3)
    assert cls[0, 10].tolist() == [0.0, 0.0, 1.0]
    # the same action twice (same class): still a 0/1 target
    gt = [torch.tensor([[8.0, 12.0], [8.0, 12.0]])]
    cls, _ = assign_targets(_one_level(), gt, [torch.tensor([1, 1])], num_classes=3)
    assert cls[0, 10].tolist() == [0.0, 1.0, 0.0]


def _reference_assign(points, segments, labels, num_classes, radius):
    """Point by point, segment by segment, straight from the rules in tadkit/methods/actionformer/targets.py."""
    flat = torch.cat(points).double()
    cls = torch.zeros(len(flat), num_classes, dtype=torch.float64)
    reg = torch.zeros(len(flat), 2, dtype=torch.float64)
    for p, (t, lo, hi, stride) in enumerate(flat.tolist()):
        ok = []
        for (s, e), c in zip(segments.double().tolist(), labels.tolist()):
            centre = (s + e) / 2
            a, b = max(centre - radius * stride, s), min(centre + radius * stride, e)
            if min(t - a, b - t) > 0 and lo <= max(t - s, e - t) <= hi:
                ok.append((e - s, s, e, c))
        if ok:
            shortest = min(o[0] for o in ok)
            for length, s, e, c in ok:
                if length <= shortest + 1e-3:
                    cls[p, c] = 1.0
            _, s, e, _ = min(ok, key=lambda o: o[0])
            reg[p] = torch.tensor([t - s, e - t]) / stride
    return cls, reg


def test_batch_matches_point_by_point_rules_with_padding_and_empty_videos() -> None:
    gen = torch.Generator().manual_seed(0)
    points = make_points([64, 32, 16], [1, 2, 4], [(0, 4), (4, 8), (8, 10000)])
    segments, labels = [], []
    for count in (5, 0, 2, 9):  # unequal counts (padding) and a video without actions
        start = torch.randint(0, 56, (count,), generator=gen).double() + 0.25
        length = torch.randint(1, 30, (count,), generator=gen).double()
        segments.append(torch.stack((start, start + length), 1).float())
        labels.append(torch.randint(0, 4, (count,), generator=gen))
    cls, reg = assign_targets(points, segments, labels, num_classes=4, center_sample_radius=1.5)
    assert cls.shape == (4, 112, 4) and reg.shape == (4, 112, 2)
    assert cls[1].abs().sum() == 0 and reg[1].abs().sum() == 0
    for b in (0, 2, 3):
        ref_cls, ref_reg = _reference_assign(points, segments[b], labels[b], 4, 1.5)
        assert torch.equal(cls[b].double(), ref_cls), f"video {b}"
        positive = ref_cls.sum(-1) > 0
        assert positive.any()
        assert torch.allclose(reg[b][positive].double(), ref_reg[positive], atol=1e-5)


def test_assign_targets_rejects_bad_input() -> None:
    with pytest.raises(TadkitError, match="class indices"):
        assign_targets(_one_level(), [torch.tensor([[1.0, 5.0]])], [torch.tensor([3])], num_classes=3)
    with pytest.raises(TadkitError, match="center_sample"):
        assign_targets(_one_level(), [torch.tensor([[1.0, 5.0]])], [torch.tensor([0])], 3, center_sample="box")
    with pytest.raises(TadkitError, match="segments"):
        assign_targets(_one_level(), [torch.tensor([1.0, 5.0])], [torch.tensor([0])], num_classes=3)
    cls, reg = assign_targets(_one_level(), [torch.zeros(0, 2)], [torch.zeros(0, dtype=torch.long)], 3)
    assert cls.shape == (1, 20, 3) and cls.sum() == 0 and reg.shape == (1, 20, 2)


# ------------------------------------------------------------------------------------------------ #
# Losses
# ------------------------------------------------------------------------------------------------ #


def test_sigmoid_focal_loss_by_hand() -> None:
    logits = torch.tensor([0.0, 0.0, math.log(3.0)], dtype=torch.float64)
    target = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)
    loss = sigmoid_focal_loss(logits, target)
    ln2 = math.log(2.0)
    # p = 0.5: (1 - p_t)^2 = 0.25; alpha_t = 0.25 (positive) / 0.75 (negative); p = 0.75: BCE = ln(4/3)
    assert loss.tolist() == pytest.approx([0.25 * 0.25 * ln2, 0.75 * 0.25 * ln2, 0.25 * 0.0625 * math.log(4 / 3)])
    assert float(sigmoid_focal_loss(logits, target, alpha=-1, reduction="sum")) == pytest.approx(
        0.25 * ln2 * 2 + 0.0625 * math.log(4 / 3))


def test_centre_diou_loss_by_hand() -> None:
    pred = torch.tensor([[1.0, 1.0], [2.0, 3.0], [0.0, 0.0]], dtype=torch.float64)
    target = torch.tensor([[1.0, 3.0], [2.0, 3.0], [1.0, 1.0]], dtype=torch.float64)
    # [-1, 1] vs [-1, 3]: IoU 2/4, centres 0 and 1, enclosing 4 -> 1 - 0.5 + (1/4)^2
    # identical -> 0; an empty prediction at the target's centre -> 1 - 0 + 0
    assert centre_diou_loss(pred, target).tolist() == pytest.approx([0.5625, 0.0, 1.0])


def test_loss_normaliser_ema_and_checkpoint_round_trip() -> None:
    norm = LossNormaliser(init_loss_norm=100.0)
    assert norm.update(5) == pytest.approx(90.5)
    assert norm.update(0) == pytest.approx(0.9 * 90.5 + 0.1)  # max(#pos, 1)
    state = norm.state_dict()
    assert state["value"].dtype == torch.float64
    resumed = LossNormaliser(init_loss_norm=100.0)
    resumed.load_state_dict(state)
    assert resumed.update(7) == norm.update(7)
    with pytest.raises(TadkitError):
        LossNormaliser(init_loss_norm=0)
    norm.update(3)
    before = float(norm.value)
    assert before != float(torch.tensor(before, dtype=torch.float32))  # not a float32 number
    holder = torch.nn.Sequential(norm).float().half()  # a whole-model dtype cast leaves the EMA exact
    assert holder[0].value.dtype == torch.float64 and float(holder[0].value) == before


@dataclass
class _Heads:
    cls_logits: list[torch.Tensor]
    offsets: list[torch.Tensor]
    masks: list[torch.Tensor]


def _tiny_batch():
    points = make_points([4, 2], [1, 2], [(0, 4), (4, 100)])
    gen = torch.Generator().manual_seed(1)
    logits = [torch.randn(2, 4, 3, generator=gen, dtype=torch.float64),
              torch.randn(2, 2, 3, generator=gen, dtype=torch.float64)]
    offsets = [torch.rand(2, 4, 2, generator=gen, dtype=torch.float64) * 3,
               torch.rand(2, 2, 2, generator=gen, dtype=torch.float64) * 3]
    masks = [torch.tensor([[True] * 4, [True, True, False, False]]), torch.tensor([[True, True], [True, False]])]
    cls_t = torch.zeros(2, 6, 3, dtype=torch.float64)
    reg_t = torch.rand(2, 6, 2, generator=gen, dtype=torch.float64) * 2
    cls_t[0, 1, 0] = cls_t[0, 4, 2] = cls_t[1, 0, 1] = 1.0
    cls_t[1, 2, 0] = 1.0  # a "positive" on a padded step: must not count
    return points, _Heads(logits, offsets, masks), cls_t, reg_t


def test_losses_by_formula_padding_excluded() -> None:
    points, heads, cls_t, reg_t = _tiny_batch()
    heads.cls_logits[0][1, 3] = 50.0  # padding with a huge logit: no effect
    norm = LossNormaliser(100.0)
    out = actionformer_losses(heads, points, cls_t, reg_t, norm, {"loss_weight": 1.0, "label_smoothing": 0.0})
    assert float(norm.value) == pytest.approx(0.9 * 100 + 0.1 * 3)  # 3 valid positives
    valid = torch.cat(heads.masks, 1)
    logits = torch.cat(heads.cls_logits, 1)[valid]
    p = logits.sigmoid()
    y = cls_t[valid]
    focal = -(0.25 * y * (1 - p) ** 2 * torch.log(p) + 0.75 * (1 - y) * p**2 * torch.log(1 - p))
    assert float(out["cls_loss"]) == pytest.approx(float(focal.sum()) / 90.3, rel=1e-10)
    positive = (cls_t.sum(-1) > 0) & valid
    pred, tgt = torch.cat(heads.offsets, 1)[positive], reg_t[positive]
    inter = torch.minimum(pred, tgt).sum(-1)
    iou = inter / (pred.sum(-1) + tgt.sum(-1) - inter)
    rho = 0.5 * ((pred[:, 1] - pred[:, 0]) - (tgt[:, 1] - tgt[:, 0]))
    diou = 1 - iou + (rho / torch.maximum(pred, tgt).sum(-1)) ** 2
    assert float(out["reg_loss"]) == pytest.approx(float(diou.sum()) / 90.3, rel=1e-10)
    assert float(out["final_loss"]) == pytest.approx(float(out["cls_loss"] + out["reg_loss"]), rel=1e-12)


def test_loss_weight_label_smoothing_and_no_positives() -> None:
    points, heads, cls_t, reg_t = _tiny_batch()
    out = actionformer_losses(heads, points, cls_t, reg_t, LossNormaliser(), {"loss_weight": 2.0})
    assert float(out["final_loss"]) == pytest.approx(float(out["cls_loss"] + 2 * out["reg_loss"]))
    balanced = actionformer_losses(heads, points, cls_t, reg_t, LossNormaliser(), {"loss_weight": -1})
    assert float(balanced["final_loss"]) == pytest.approx(2 * float(balanced["cls_loss"]))
    smooth = actionformer_losses(heads, points, cls_t, reg_t, LossNormaliser(), {"label_smoothing": 0.1})
    assert float(smooth["cls_loss"]) != pytest.approx(float(out["cls_loss"]))
    for level in heads.offsets:
        level.requires_grad_(True)
    norm = LossNormaliser()
    empty = actionformer_losses(heads, points, torch.zeros_like(cls_t), reg_t, norm, {})
    assert float(empty["reg_loss"].detach()) == 0.0 and float(norm.value) == pytest.approx(90.1)  # max(#pos, 1)
    empty["final_loss"].backward()  # 0 * sum keeps the offsets in the graph (zero gradient, no error)
    assert all(level.grad is not None and level.grad.abs().sum() == 0 for level in heads.offsets)


def test_losses_reject_mismatched_shapes() -> None:
    points, heads, cls_t, reg_t = _tiny_batch()
    with pytest.raises(TadkitError, match="disagree"):
        actionformer_losses(heads, points[:1], cls_t, reg_t, LossNormaliser(), {})
