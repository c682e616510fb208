"""A2Net: official forward fixture, geometry, targets, matching, losses, decoding, tiny overfit."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from tadkit.errors import TadkitError
from tadkit.models import MODELS, A2Net, A2NetConfig, build_model
from tadkit.models.a2net import (
    AnchorMatch,
    SampleMasks,
    ab_losses,
    af_level_of_duration,
    af_losses,
    af_point_levels,
    af_point_locations,
    af_targets,
    decode_anchors,
    default_anchors,
    match_anchors,
    pad_targets,
    select_ab_samples,
)
from tadkit.models.base import WindowDetections
from tadkit.ops import tiou_pairwise
from conftest import shared_path

FIXTURE = "fixtures/a2net_official_forward_small"
LEVEL_LENGTHS = [64, 32, 16, 8, 4, 2]
TINY = dict(in_dim=16, base_dim=32, pyramid_dims=[32] * 6, reduce_dim=32, head_dim=32, num_classes=3)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def official():
    data = np.load(shared_path(FIXTURE + ".npz"))
    meta = json.loads(shared_path(FIXTURE + ".json").read_text())
    state = {k[len("state_dict/") :]: data[k] for k in data.files if k.startswith("state_dict/")}
    return data, meta, state


def tiny_model(**overrides) -> A2Net:
    return build_model("a2net", **{**TINY, **overrides})


# ----------------------------------------------------------------------------------------------
# Official fixture
# ----------------------------------------------------------------------------------------------


@pytest.mark.shared
@pytest.mark.parametrize("packed", [True, False], ids=["packed-head", "per-level-head"])
def test_forward_matches_official_fixture(official, packed):
    data, _, state = official
    model = A2Net.from_official_state_dict(state).eval()
    model.af.packed = packed
    with torch.no_grad():
        out = model.raw_outputs(torch.from_numpy(data["input"]))
    assert out["af_cls"].shape == (2, 126, 21) and out["af_reg"].shape == (2, 126, 2)
    assert np.abs(out["af_cls"].numpy() - data["out_af_cls"]).max() <= 1e-5
    assert np.abs(out["af_reg"].numpy() - data["out_af_reg"]).max() <= 1e-5
    offset = 0
    for level, length in enumerate(LEVEL_LENGTHS, start=1):
        ref = data[f"out_ab_level{level}"]
        assert ref.shape == (2, length * 5, 24)
        ours = out["ab"][:, offset : offset + ref.shape[1]].numpy()
        assert np.abs(ours - ref).max() <= 1e-5, f"AB level {level}"
        offset += ref.shape[1]
    assert offset == out["ab"].shape[1] == 630


@pytest.mark.shared
def test_official_widths_inferred_and_keys_unchanged(official):
    _, meta, state = official
    model = A2Net.from_official_state_dict(state)
    cfg = model.config
    assert cfg.in_dim == meta["in_feat_dim"] and cfg.base_dim == meta["base_feat_dim"]
    assert list(cfg.pyramid_dims) == meta["pyramid_dims"]
    assert cfg.reduce_dim == meta["reduce_dim"] and cfg.head_dim == meta["head_dim"]
    assert cfg.num_classes + 1 == meta["num_classes_incl_background"]
    assert cfg.anchors_per_position == meta["anchors_per_position"]
    ours = model.state_dict()
    assert set(ours) == set(state)  # the authors' keys, no renaming
    for key, value in state.items():
        assert torch.equal(ours[key], torch.from_numpy(value)), key


@pytest.mark.shared
def test_level_i_uses_scale_i_minus_1_and_scale6_is_unused(official):
    data, _, state = official
    model = A2Net.from_official_state_dict(state).eval()
    x = torch.from_numpy(data["input"])
    with torch.no_grad():
        base = model.raw_outputs(x)["af_reg"]
        assert not model.af.scale6.scale.requires_grad
        model.af.scale6.scale.fill_(123.0)
        assert torch.equal(model.raw_outputs(x)["af_reg"], base)
        model.af.scale0.scale.mul_(2.0)
        changed = model.raw_outputs(x)["af_reg"]
    assert torch.allclose(changed[:, :64], 2 * base[:, :64], rtol=1e-5, atol=1e-6)  # AL1 only
    assert torch.equal(changed[:, 64:], base[:, 64:])


@pytest.mark.shared
def test_official_state_dict_errors_name_the_key(official):
    _, _, state = official
    broken = dict(state)
    del broken["af.pred.reg_branch.pred.bias"]
    with pytest.raises(TadkitError, match="af.pred.reg_branch.pred.bias"):
        A2Net.from_official_state_dict(broken, source="x.pth")
    wrong = dict(state)
    wrong["ab.pred3.weight"] = np.zeros((120, 7, 3), dtype=np.float32)
    with pytest.raises(TadkitError) as info:
        A2Net.from_official_state_dict(wrong, source="x.pth")
    assert info.value.field == "ab.pred3.weight" and info.value.file == "x.pth"
    with pytest.raises(TadkitError, match="anchors per position"):
        A2Net.from_official_state_dict(state, anchor_ratios=(1.0, 2.0))


# ----------------------------------------------------------------------------------------------
# Config, shapes, registry
# ----------------------------------------------------------------------------------------------


def test_official_widths_parameter_count():
    # the authors' FLOPs script (Ablation-Comparison-Experiments/FLOPS-Counter/A2Net.py) prints
    # 65527534 parameters for the THUMOS14 model (fvcore count, incl. the 7 Scale scalars)
    model = A2Net()
    assert sum(p.numel() for p in model.parameters()) == 65_527_534
    cfg = model.config
    weights = (cfg.weight_af_cls, cfg.weight_af_reg, cfg.weight_ab_cls, cfg.weight_ab_overlap, cfg.weight_ab_loc)
    assert weights == (30.0, 1.0, 1.0, 10.0, 10.0)


@pytest.mark.parametrize("branches", ["both", "af", "ab"])
def test_shapes_loss_terms_and_decode_per_variant(branches):
    torch.manual_seed(0)
    model = tiny_model(branches=branches)
    out = model(torch.randn(3, 16, 128))
    expected = {"both": {"af_cls", "af_reg", "ab"}, "af": {"af_cls", "af_reg"}, "ab": {"ab"}}[branches]
    assert set(out) == expected
    if "af_cls" in out:
        assert out["af_cls"].shape == (3, 126, 4) and out["af_reg"].shape == (3, 126, 2)
    if "ab" in out:
        assert out["ab"].shape == (3, 630, 3 + 4)
    modules = {"both": {"af", "ab"}, "af": {"af"}, "ab": {"ab"}}[branches]
    assert {k.split(".")[0] for k in model.state_dict()} == {"features"} | modules
    targets = [{"segments": torch.tensor([[10.0, 40.0]]), "labels": torch.tensor([1])}] * 3
    losses = model.loss(out, targets)
    af_terms, ab_terms = {"af_cls", "af_reg"}, {"ab_cls", "ab_overlap", "ab_loc"}
    expected_terms = {"both": af_terms | ab_terms, "af": af_terms, "ab": ab_terms}[branches]
    assert set(losses) == expected_terms | {"total"}
    assert all(torch.isfinite(v) for v in losses.values())
    losses["total"].backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert no_grad == []  # DDP-safe: every trainable parameter receives a gradient
    dets = model.decode(out)
    assert len(dets) == 3 and all(isinstance(d, WindowDetections) for d in dets)
    if branches == "af":
        assert all(len(d.scores) == 126 for d in dets)  # no background filter on AF


def test_total_is_the_weighted_sum_of_terms():
    torch.manual_seed(1)
    model = tiny_model(weight_af_cls=30, weight_af_reg=1, weight_ab_cls=1, weight_ab_overlap=10, weight_ab_loc=10)
    out = model(torch.randn(2, 16, 128))
    targets = [{"segments": torch.tensor([[10.0, 40.0], [60.0, 64.0]]), "labels": torch.tensor([0, 2])}] * 2
    torch.manual_seed(5)
    losses = model.loss(out, targets)
    expect = (
        30 * losses["af_cls"] + losses["af_reg"] + losses["ab_cls"] + 10 * losses["ab_overlap"] + 10 * losses["ab_loc"]
    )
    assert torch.allclose(losses["total"], expect)
    assert losses["ab_loc"] >= 0 and losses["af_reg"] > 0


def test_registry_round_trips_config_dict():
    model = tiny_model(branches="af", merge_lambda=0.3)
    again = build_model("a2net", **model.config_dict())
    assert again.config == model.config
    assert json.loads(json.dumps(model.config_dict())) == model.config_dict()
    assert "a2net" in MODELS
    with pytest.raises(TadkitError) as info:
        build_model("nope")
    assert info.value.field == "model_name"
    with pytest.raises(TadkitError) as info:
        build_model("a2net", bogus=1)
    assert info.value.field == "bogus"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"branches": "x"}, "branches"), ({"window": 100}, "window"), ({"af_multi_gt": "z"}, "af_multi_gt")],
)
def test_bad_config_is_a_tadkit_error(kwargs, field):
    with pytest.raises(TadkitError) as info:
        A2NetConfig(**kwargs)
    assert info.value.field == field


def test_bad_input_shape_and_targets_are_tadkit_errors():
    model = tiny_model()
    with pytest.raises(TadkitError) as info:
        model(torch.randn(1, 15, 128))
    assert info.value.field == "features"
    out = model(torch.randn(1, 16, 128))
    with pytest.raises(TadkitError) as info:
        model.loss(out, [{"segments": torch.tensor([[1.0, 5.0]]), "labels": torch.tensor([3])}])
    assert info.value.field == "labels"
    with pytest.raises(TadkitError) as info:
        model.loss(out, [{"segments": torch.tensor([[5.0, 1.0]]), "labels": torch.tensor([0])}])
    assert info.value.field == "segments"


# ----------------------------------------------------------------------------------------------
# Geometry: default anchors, AF points
# ----------------------------------------------------------------------------------------------


def test_af_point_locations_spec_values():
    points = af_point_locations(LEVEL_LENGTHS)
    levels = af_point_levels(LEVEL_LENGTHS)
    assert points.shape == (126,) and levels.shape == (126,)
    by_level = [points[levels == i].tolist() for i in range(6)]
    assert by_level[0] == list(range(64))
    assert by_level[1] == list(range(1, 64, 2))
    assert by_level[2] == list(range(2, 64, 4))
    assert by_level[3] == [4, 12, 20, 28, 36, 44, 52, 60]
    assert by_level[4] == [8, 24, 40, 56]
    assert by_level[5] == [16, 48]


def test_default_anchors_time_major_ratio_minor():
    ratios = (0.5, 0.75, 1.0, 1.5, 2.0)
    centers, widths = default_anchors(LEVEL_LENGTHS, ratios)
    assert centers.shape == widths.shape == (630,)
    assert torch.allclose(centers[:5], torch.full((5,), 0.5 / 64))
    assert torch.allclose(widths[:5], torch.tensor(ratios) / 64)
    assert torch.allclose(centers[5:10], torch.full((5,), 1.5 / 64))
    last = slice(620, 630)
    assert torch.allclose(centers[last], torch.tensor([0.25] * 5 + [0.75] * 5))
    assert torch.allclose(widths[last], torch.tensor(ratios * 2) / 2)


def test_decode_anchors_formula():
    centers, widths = torch.tensor([0.5, 0.25]), torch.tensor([0.1, 0.2])
    x, w = decode_anchors(torch.tensor([1.0, -2.0]), torch.tensor([0.0, 3.0]), centers, widths, 0.1, 0.1)
    assert torch.allclose(x, torch.tensor([0.5 + 0.1 * 0.1, 0.25 - 0.2 * 0.2 * 1.0]))
    assert torch.allclose(w, torch.tensor([0.1, 0.2 * math.exp(0.3)]))


def test_af_level_of_duration_ranges():
    d = torch.tensor([0.0, 1.99, 2.0, 3.99, 4.0, 7.9, 8.0, 16.0, 31.9, 32.0, 63.9, 64.0, 90.0])
    assert af_level_of_duration(d, 6).tolist() == [0, 0, 1, 1, 2, 2, 3, 4, 4, 5, 5, 5, 5]


# ----------------------------------------------------------------------------------------------
# Anchor-free targets
# ----------------------------------------------------------------------------------------------


def _af_targets_from_steps(segments_steps, labels_0based, multi_gt="first"):
    padded = pad_targets(
        [{"segments": torch.tensor(segments_steps, dtype=torch.float32), "labels": torch.tensor(labels_0based)}],
        window=128,
        num_classes=20,
    )
    return af_targets(
        padded.segments * 64,
        padded.labels,
        padded.valid,
        af_point_locations(LEVEL_LENGTHS),
        af_point_levels(LEVEL_LENGTHS),
        6,
        multi_gt,
    )


def test_af_targets_levels_inclusive_containment_and_distances():
    points = af_point_locations(LEVEL_LENGTHS)
    levels = af_point_levels(LEVEL_LENGTHS)
    # window steps -> AL1 units (/2): A [5, 6.5] d=1.5 -> AL1; B [20, 28] d=8 -> AL4; C [0, 64] d=64 -> AL6
    cate, reg = _af_targets_from_steps([[10.0, 13.0], [40.0, 56.0], [0.0, 128.0]], [4, 7, 11])
    cate, reg = cate[0], reg[0]
    expect = {
        (0, 5.0): (5, (0.0, 1.5)),
        (0, 6.0): (5, (1.0, 0.5)),
        (3, 20.0): (8, (0.0, 8.0)),  # both ends are inclusive
        (3, 28.0): (8, (8.0, 0.0)),
        (5, 16.0): (12, (16.0, 48.0)),
        (5, 48.0): (12, (48.0, 16.0)),
    }
    found = {}
    for idx in torch.nonzero(cate).flatten().tolist():
        key = (int(levels[idx]), float(points[idx]))
        found[key] = (int(cate[idx]), tuple(round(v, 6) for v in reg[idx].tolist()))
    assert found == expect
    assert torch.all(reg[cate == 0] == 0)


@pytest.mark.parametrize(("rule", "label", "reg_at_2"), [("first", 1, (1.0, 5.0)), ("shortest", 2, (0.0, 4.5))])
def test_af_targets_conflicting_gts(rule, label, reg_at_2):
    # both on AL3 (d in [4, 8)): G1 [1, 7] d=6, G2 [2, 6.5] d=4.5; AL3 points 2 and 6 lie in both
    cate, reg = _af_targets_from_steps([[2.0, 14.0], [4.0, 13.0]], [0, 1], multi_gt=rule)
    points, levels = af_point_locations(LEVEL_LENGTHS), af_point_levels(LEVEL_LENGTHS)
    at2 = int(torch.nonzero((levels == 2) & (points == 2.0)))
    assert int(cate[0, at2]) == label
    assert tuple(reg[0, at2].tolist()) == reg_at_2
    assert int((cate[0] > 0).sum()) == 2


def test_af_targets_empty_window_is_background():
    cate, reg = _af_targets_from_steps(np.zeros((0, 2)), np.zeros((0,), dtype=np.int64))
    assert cate.shape == (1, 126) and int(cate.sum()) == 0 and float(reg.abs().sum()) == 0.0


# ----------------------------------------------------------------------------------------------
# Anchor-based matching and sampling
# ----------------------------------------------------------------------------------------------


def _sequential_match(anchor_x, anchor_w, gts, labels, threshold):
    """The authors' loop, literally: GTs in order, running max, label only when > threshold."""
    n = anchor_x.shape[0]
    match_s, match_e = np.zeros(n), np.zeros(n)
    scores, lab = np.zeros(n), np.zeros(n, dtype=np.int64)
    boxes = np.stack([anchor_x - anchor_w / 2, anchor_x + anchor_w / 2], axis=1)
    for (gs, ge), y in zip(gts, labels):
        iou = tiou_pairwise(boxes, np.array([[gs, ge]]))[:, 0]
        take = (iou > scores) & (iou > threshold)
        match_s[take], match_e[take], lab[take] = gs, ge, y
        scores = np.maximum(iou, scores)
    return match_s, match_e, scores, lab


def test_matching_hand_made_running_max_rule():
    # dyadic coordinates so every tIoU below is exact in float32
    gts = torch.tensor([[[0.25, 0.5], [0.3125, 0.5625], [0.8, 0.9]]])
    labels = torch.tensor([[3, 7, 9]])
    valid = torch.tensor([[True, True, False]])  # third GT is padding
    boxes = torch.tensor(
        [
            [0.25, 0.5],  # = GT0
            [0.3125, 0.53125],  # GT0 0.667 then GT1 0.875 beats the running max -> GT1
            [0.28125, 0.5],  # GT0 0.875, GT1 0.667 does not beat it -> GT0
            [0.0, 0.3125],  # best 0.125 <= 0.5 -> background, score kept
            [0.8, 0.9],  # only on the padded GT -> nothing
            [0.28125, 0.53125],  # exact tie 7/9 -> first GT
        ]
    )
    x, w = (boxes[:, 0] + boxes[:, 1]) / 2, boxes[:, 1] - boxes[:, 0]
    m = match_anchors(x[None], w[None], gts, labels, valid, 0.5)
    assert m.labels[0].tolist() == [3, 7, 3, 0, 0, 3]
    assert torch.allclose(m.scores[0], torch.tensor([1.0, 0.875, 0.875, 0.125, 0.0, 7 / 9]), atol=1e-6)
    assert m.gt_start[0].tolist() == [0.25, 0.3125, 0.25, 0.0, 0.0, 0.25]
    assert m.gt_end[0].tolist() == [0.5, 0.5625, 0.5, 0.0, 0.0, 0.5]


def test_matching_equals_sequential_reference_on_random_boxes():
    gen = torch.Generator().manual_seed(3)
    for _ in range(20):
        x = torch.rand(200, generator=gen)
        w = torch.rand(200, generator=gen) * 0.4 + 0.01
        starts = torch.rand(6, generator=gen) * 0.8
        gts = torch.stack([starts, starts + torch.rand(6, generator=gen) * 0.3 + 0.02], dim=1)
        labels = torch.randint(1, 21, (6,), generator=gen)
        m = match_anchors(x[None], w[None], gts[None], labels[None], torch.ones(1, 6, dtype=torch.bool), 0.5)
        ref_s, ref_e, ref_scores, ref_lab = _sequential_match(x.numpy(), w.numpy(), gts.numpy(), labels.numpy(), 0.5)
        assert m.labels[0].tolist() == ref_lab.tolist()
        assert np.allclose(m.scores[0].numpy(), ref_scores, atol=1e-6)
        assert np.allclose(m.gt_start[0].numpy(), ref_s, atol=1e-7)
        assert np.allclose(m.gt_end[0].numpy(), ref_e, atol=1e-7)


def test_sample_selection_positive_hard_and_random_ratio():
    n = 20_000
    scores = torch.zeros(n)
    overlap = torch.zeros(n)
    scores[:200] = 0.8  # positives
    scores[200] = 0.5  # exactly the threshold: not positive
    overlap[300:400] = 0.9  # hard negatives (score <= 0.5, raw overlap > 0.5)
    overlap[:50] = 0.9  # positives stay positives
    gen = torch.Generator().manual_seed(0)
    masks = select_ab_samples(scores.view(4, -1), overlap.view(4, -1), 0.5, 1.0, gen)
    pos, hard, rnd = (m.flatten() for m in masks)
    assert int(pos.sum()) == 200 and bool(pos[:200].all()) and not bool(pos[200])
    assert int(hard.sum()) == 100 and bool(hard[300:400].all())
    assert not bool((rnd & (pos | hard)).any())
    # expected |N| = NEG_RATIO * |P| = 200 (binomial sd ~ 14)
    assert 140 <= int(rnd.sum()) <= 260
    again = select_ab_samples(scores.view(4, -1), overlap.view(4, -1), 0.5, 1.0, torch.Generator().manual_seed(0))
    assert torch.equal(again.random_negative.flatten(), rnd)
    ratio3 = select_ab_samples(scores, overlap, 0.5, 3.0, torch.Generator().manual_seed(1)).random_negative
    assert 500 <= int(ratio3.sum()) <= 700


def test_sample_selection_without_positives_keeps_half_and_uses_global_rng():
    scores = torch.full((10_000,), 0.3)
    overlap = torch.zeros(10_000)
    torch.manual_seed(7)
    first = select_ab_samples(scores, overlap, 0.5, 1.0).random_negative
    torch.manual_seed(7)
    second = select_ab_samples(scores, overlap, 0.5, 1.0).random_negative
    assert torch.equal(first, second)
    assert 4700 <= int(first.sum()) <= 5300


# ----------------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------------


def test_ab_loc_loss_value_and_gradient_reach_rx_rw():
    centers = torch.tensor([[0.3, 0.7]])
    widths = torch.tensor([[0.2, 0.2]])
    rx = torch.tensor([[0.5, 0.0]], requires_grad=True)
    rw = torch.tensor([[-0.3, 0.0]], requires_grad=True)
    x, w = decode_anchors(rx, rw, centers, widths, 0.1, 0.1)
    match = AnchorMatch(
        gt_start=torch.tensor([[0.2, 0.0]]),
        gt_end=torch.tensor([[0.45, 0.0]]),
        scores=torch.tensor([[0.8, 0.0]]),
        labels=torch.tensor([[2, 0]]),
    )
    masks = SampleMasks(torch.tensor([[True, False]]), torch.tensor([[False, False]]), torch.tensor([[False, True]]))
    terms = ab_losses(torch.zeros(1, 2, 4), torch.zeros(1, 2), x, w, match, masks)
    xmin = 0.3 + 0.1 * 0.5 * 0.2 - 0.2 * math.exp(-0.03) / 2
    xmax = 0.3 + 0.1 * 0.5 * 0.2 + 0.2 * math.exp(-0.03) / 2
    expect = 0.5 * (xmin - 0.2) ** 2 + 0.5 * (xmax - 0.45) ** 2
    assert math.isclose(terms["ab_loc"].item(), expect, rel_tol=1e-5)
    terms["ab_loc"].backward()
    assert rx.grad[0, 0] != 0 and rw.grad[0, 0] != 0  # positive anchor receives gradient
    assert rx.grad[0, 1] == 0 and rw.grad[0, 1] == 0  # random negative does not (loc is positives only)


def test_ab_cls_and_overlap_use_selected_anchors_only():
    logits = torch.tensor([[[0.0, 2.0, 0.0], [1.0, 0.0, 0.0], [5.0, -5.0, 0.0]]])
    overlap = torch.tensor([[0.2, 0.9, 3.0]])
    match = AnchorMatch(
        torch.zeros(1, 3), torch.zeros(1, 3), torch.tensor([[0.7, 0.1, 0.0]]), torch.tensor([[1, 0, 0]])
    )
    selected = torch.tensor([[True, False, False]]), torch.tensor([[False, True, False]])
    masks = SampleMasks(*selected, torch.zeros(1, 3, dtype=torch.bool))
    terms = ab_losses(logits, overlap, torch.zeros(1, 3), torch.ones(1, 3), match, masks)
    ce = torch.nn.functional.cross_entropy(logits[0, :2], torch.tensor([1, 0]))
    assert torch.isclose(terms["ab_cls"], ce)
    assert math.isclose(float(terms["ab_overlap"]), (0.5 * 0.5**2 + 0.5 * 0.8**2) / 2, rel_tol=1e-6)


def test_af_losses_hand_values():
    logits = torch.zeros(1, 3, 4)
    logits[0, 0, 2] = 3.0
    reg = torch.tensor([[[1.0, 2.0], [0.0, 0.0], [5.0, 5.0]]])
    cate = torch.tensor([[2, 0, 1]])
    target = torch.tensor([[[1.5, 2.0], [9.0, 9.0], [1.0, 5.0]]])
    terms = af_losses(logits, reg, cate, target)
    assert torch.isclose(terms["af_cls"], torch.nn.functional.cross_entropy(logits[0], cate[0]))
    # starts: (1.0-1.5)->0.125, (5-1)->3.5 ; ends: 0, 0 ; background point ignored
    assert math.isclose(float(terms["af_reg"]), (0.125 + 3.5) / 2 + 0.0, rel_tol=1e-6)


def test_overlap_loss_gradient_through_tiou_is_official_and_can_be_detached():
    torch.manual_seed(0)
    for detach in (False, True):
        model = tiny_model(branches="ab", detach_match_scores=detach)
        model.sampling_generator = torch.Generator().manual_seed(0)
        ab = model(torch.randn(1, 16, 128))["ab"].detach().requires_grad_(True)
        targets = [{"segments": torch.tensor([[10.0, 40.0]]), "labels": torch.tensor([1])}]
        model.loss({"ab": ab}, targets)["ab_overlap"].backward()
        box_grad = ab.grad[..., -2:].abs().sum()
        assert (box_grad > 0) if not detach else (box_grad == 0)


# ----------------------------------------------------------------------------------------------
# Decoding
# ----------------------------------------------------------------------------------------------


def _hand_outputs(model: A2Net) -> dict[str, torch.Tensor]:
    c1 = model.config.num_classes + 1
    ab = torch.zeros(1, 630, c1 + 3)
    ab[..., 0] = 10.0  # background everywhere -> filtered
    # anchor 0 of AL4 position 2 (index 64*5+32*5+16*5 + 2*5): centre 2.5/8, width 0.5/8
    k = (64 + 32 + 16) * 5 + 2 * 5
    ab[0, k, :c1] = torch.tensor([0.0, 0.0, 4.0, 0.0])
    ab[0, k, c1] = 2.0  # raw overlap
    ab[0, k, c1 + 1] = 1.0  # r_x
    ab[0, k, c1 + 2] = math.log(2.0) / 0.1  # r_w: width doubles
    # anchor at AL1 position 0 ratio 2 whose box starts below 0 -> clipped; bg prob just below 0.98
    ab[0, 4, :c1] = torch.tensor([math.log(0.97 / 0.01), 0.0, 0.0, 0.0])
    af_cls = torch.zeros(1, 126, c1)
    af_cls[..., 0] = 5.0
    af_reg = torch.zeros(1, 126, 2)
    af_cls[0, 10, 3] = 8.0  # AL1 point p=10, class 3 (0-based 2)
    af_reg[0, 10] = torch.tensor([2.0, 3.0])
    af_reg[0, 125] = torch.tensor([-1.0, 100.0])  # AL6 point p=48: end clipped to 64 units
    return {"ab": ab, "af_cls": af_cls, "af_reg": af_reg}


def test_decode_hand_set_outputs():
    model = tiny_model()
    out = _hand_outputs(model)
    det = model.decode(out)[0]
    assert len(det.scores) == 2 + 126  # two AB anchors survive the background filter, every AF point
    ab_seg, ab_scores, ab_labels = det.segments[:2], det.scores[:2], det.labels[:2]
    # AL4 anchor: c = 2.5/8 + 0.1*1*(0.5/8), w = 2*(0.5/8)  -> window steps x128
    c, w = 2.5 / 8 + 0.1 * 0.5 / 8, 1.0 / 8
    probs = torch.softmax(torch.tensor([0.0, 0.0, 4.0, 0.0]), 0)
    sig = 1 / (1 + math.exp(-2.0))
    assert torch.allclose(ab_seg[1], torch.tensor([(c - w / 2) * 128, (c + w / 2) * 128]), atol=1e-4)
    assert int(ab_labels[1]) == 1 and math.isclose(float(ab_scores[1]), float(probs[2]) * sig, rel_tol=1e-5)
    # AL1 anchor 4: centre 0.5/64, width 2/64 -> [-0.5/64, 1.5/64] -> clipped start 0, end 3 steps
    assert torch.allclose(ab_seg[0], torch.tensor([0.0, 1.5 / 64 * 128]), atol=1e-4)
    af_seg = det.segments[2:]
    assert torch.allclose(af_seg[10], torch.tensor([16.0, 26.0]))  # (10-2, 10+3) units x2
    assert int(det.labels[2 + 10]) == 2
    assert torch.allclose(af_seg[125], torch.tensor([98.0, 128.0]))  # (48+1, 64) x2
    # equal weighting reproduces the official scores; as in paper Table V, lambda weights the
    # anchor-based scores (the first 2 candidates) by 2λ and the anchor-free ones by 2(1-λ)
    skewed = tiny_model(merge_lambda=0.25).decode(out)[0]
    assert torch.allclose(skewed.scores[:2], det.scores[:2] * 0.5)
    assert torch.allclose(skewed.scores[2:], det.scores[2:] * 1.5)


# ----------------------------------------------------------------------------------------------
# Training: overfit one tiny batch
# ----------------------------------------------------------------------------------------------


def test_overfit_one_batch_every_term_decreases_and_detects_the_gt():
    torch.manual_seed(0)
    model = tiny_model()
    gts = [(20.0, 44.0, 1), (60.0, 92.0, 2), (8.0, 16.0, 0)]
    x = torch.randn(len(gts), 16, 128) * 0.5
    targets = []
    for i, (start, end, label) in enumerate(gts):
        x[i, label * 4 : label * 4 + 4, int(start) : int(end)] += 2.0  # class-specific evidence inside the GT
        targets.append({"segments": torch.tensor([[start, end]]), "labels": torch.tensor([label])})
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    history = []
    for _ in range(150):
        losses = model.loss(model(x), targets)
        optimizer.zero_grad()
        losses["total"].backward()
        optimizer.step()
        history.append({k: float(v.detach()) for k, v in losses.items()})
    assert all(math.isfinite(v) for h in history for v in h.values())
    first = {k: np.mean([h[k] for h in history[:5]]) for k in history[0]}
    last = {k: np.mean([h[k] for h in history[-5:]]) for k in history[0]}
    assert last["total"] < 0.5 * first["total"]
    for name in ("af_cls", "af_reg", "ab_cls", "ab_overlap", "ab_loc"):
        assert last[name] < first[name], name
    model.eval()
    with torch.no_grad():
        detections = model.decode(model(x))
    for det, (start, end, label) in zip(detections, gts):
        top = int(det.scores.argmax())
        assert int(det.labels[top]) == label
        assert tiou_pairwise(det.segments[top : top + 1].numpy(), np.array([[start, end]]))[0, 0] > 0.5
