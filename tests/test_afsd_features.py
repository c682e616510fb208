"""AFSD feature variant (spec §9): the tadkit method contract, masking, targets in window steps, decoding."""

from __future__ import annotations

import pytest
import torch

from tadkit.errors import TadkitError
from tadkit.methods.afsd.model import AFSDFeatures, build_afsd
from tadkit.methods.afsd.official import from_official_state_dict
from tadkit.methods.afsd.targets import boundary_labels, coarse_targets
from tadkit.models.base import WindowDetections

KW = dict(num_classes=3, width=32, in_dim=16, clip_length=128)
T = 32  # window steps; 4 frames per step


def _batch(seed: int = 0, valid: tuple[int, int] = (T, T)) -> dict:
    gen = torch.Generator().manual_seed(seed)
    return {
        "features": torch.randn(2, 16, T, generator=gen),
        "meta": [{"video_id": f"v{i}", "t0": 0.0, "step": 0.4, "valid_length": v} for i, v in enumerate(valid)],
        "targets": [
            {"segments": torch.tensor([[4.0, 10.0], [20.0, 30.0]]), "labels": torch.tensor([0, 2])},
            {"segments": torch.tensor([[1.0, 25.0]]), "labels": torch.tensor([1])},
        ],
    }


def test_forward_shapes_and_config_round_trip() -> None:
    torch.manual_seed(0)
    model = build_afsd(**KW)
    assert isinstance(model, AFSDFeatures)
    out = model(_batch())
    points = sum(T >> i for i in range(6))  # 32+16+8+4+2+1
    assert out["loc"].shape == (2, points, 2) and out["conf"].shape == (2, points, 4)
    assert out["start"].shape == (2, 128, 16) and out["start_loc_prop"].shape == (2, T, 32)
    assert (out["loc"] > 0).all()  # exp() distances
    rebuilt = build_afsd(**model.config_dict())
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    with pytest.raises(TadkitError, match="features"):
        model({"features": torch.zeros(1, 15, T)})


def test_padded_positions_are_zero_at_every_level() -> None:
    torch.manual_seed(0)
    model = build_afsd(**KW).eval()
    batch = _batch(valid=(T, 20))
    mask = model._mask(batch, batch["features"])
    assert mask[1].tolist() == [True] * 20 + [False] * 12
    with torch.no_grad():
        feats, _ = model.coarse_pyramid_detection.pyramid([batch["features"]], mask)
    for level, valid in zip(feats, (20, 10, 5, 3, 2, 1)):
        assert level[1, :, valid:].abs().max() == 0 if level.shape[-1] > valid else True
        assert level[1, :, :valid].abs().max() > 0 and level[0].abs().max() > 0


def test_loss_uses_window_step_targets() -> None:
    torch.manual_seed(0)
    model = build_afsd(**KW)
    batch = _batch()
    rows, labels = model.clip_targets(batch, T)
    assert torch.allclose(rows[0], torch.tensor([[4 / 32, 10 / 32, 1.0], [20 / 32, 30 / 32, 3.0]]))
    # boundary labels on the 128-frame grid: GT (16, 40) frames -> d = 2.4, start frames 15..17
    assert torch.equal(labels[0], boundary_labels([[16.0, 40.0, 1], [80.0, 120.0, 3]], 128))
    assert labels[0, 0, 14:19].tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]
    out = model(batch)
    terms = model.loss(out, batch)
    cfg = model.config
    expected = cfg.loc_weight * (terms["loc"] + terms["prop_loc"]) + terms["conf"] + terms["prop_conf"] + terms["center"]
    assert torch.allclose(terms["total"], expected + terms["start"] + terms["end"])
    assert "triplet" not in terms
    terms["total"].backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if "pyramids.5" not in n)


def test_coarse_assignment_shortest_gt_wins() -> None:
    priors = torch.tensor([0.1, 0.3, 0.5, 0.9])
    targets = [torch.tensor([[0.0, 0.6, 1.0], [0.25, 0.55, 2.0]])]
    coarse = coarse_targets(priors, targets, 100)
    assert coarse.labels.tolist() == [[1, 2, 2, 0]]
    assert torch.allclose(coarse.loc[0, 1], torch.tensor([5.0, 25.0]))


def test_a_few_steps_reduce_the_loss() -> None:
    torch.manual_seed(0)
    model = build_afsd(**KW)
    batch = _batch()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    first = None
    for _ in range(15):
        terms = model.loss(model(batch), batch)
        first = float(terms["total"].detach()) if first is None else first
        opt.zero_grad()
        terms["total"].backward()
        opt.step()
    assert float(model.loss(model(batch), batch)["total"].detach()) < 0.8 * first


def test_decode_in_window_steps() -> None:
    torch.manual_seed(0)
    model = build_afsd(**KW).eval()
    batch = _batch()
    with torch.no_grad():
        out = model(batch)
    points = out["loc"].shape[1]
    # craft one confident detection: point 8 of level 0 (centre 8.5 steps = 34 frames), l = 6, r = 10 frames
    out = {k: v.clone() for k, v in out.items()}
    out["conf"][:] = 0.0
    out["conf"][..., 0] = 20.0
    out["prop_conf"][:] = out["conf"]
    out["conf"][0, 8] = torch.tensor([0.0, 0.0, 20.0, 0.0])
    out["prop_conf"][0, 8] = out["conf"][0, 8]
    out["center"][:] = 10.0
    out["loc"][0, 8] = torch.tensor([6.0, 10.0])
    out["prop_loc"][0, 8] = torch.tensor([0.25, -0.5])  # refined: l = 6 + 8*0.25 = 8, r = 10 - 4 = 6
    dets = model.decode(out, batch)
    assert len(dets) == 2 and all(isinstance(d, WindowDetections) for d in dets)
    assert dets[1].scores.numel() == 0
    assert dets[0].labels.tolist() == [1]
    assert torch.allclose(dets[0].segments, torch.tensor([[(34 - 8) / 4, (34 + 6) / 4]]))
    assert dets[0].scores.item() == pytest.approx(torch.sigmoid(torch.tensor(10.0)).item(), abs=1e-6)
    assert points == 63


def test_official_importer_builds_the_feature_variant() -> None:
    torch.manual_seed(0)
    model = build_afsd(**KW).eval()
    state = {"module." + k: v for k, v in model.state_dict().items()}
    loaded = from_official_state_dict(state, clip_length=128)
    assert isinstance(loaded, AFSDFeatures)
    assert loaded.config.width == 32 and loaded.config.in_dim == 16 and loaded.config.num_classes == 3
    batch = _batch()
    with torch.no_grad():
        assert torch.equal(loaded.eval()(batch)["conf"], model(batch)["conf"])
    state.pop("module.coarse_pyramid_detection.center_head.conv1d.bias")
    with pytest.raises(TadkitError, match="center_head.conv1d.bias"):
        from_official_state_dict(state, clip_length=128)


# ------------------------------------------------------------------------------------------------
# The official ActivityNet head's training rules (AFSD/anet/BDNet.py, multisegment_loss.py)
# ------------------------------------------------------------------------------------------------
ANET = dict(loc_strides=[4, 8, 16, 32, 64, 128], scale_ranges=[[0, 30], [15, 60], [30, 120], [60, 240], [96, 768],
                                                               [256, 768]])


def _official_anet_matching(priors, levels, truths, labels, clip_length, bounds):
    """A literal re-statement of the official ActivityNet matching of one sample (loops, NumPy)."""
    import numpy as np

    conf, loc = np.zeros(len(priors), int), np.zeros((len(priors), 2))
    for k, (centre, level) in enumerate(zip(priors, levels)):
        best, best_area = None, 2 * clip_length
        for g, (s, e) in enumerate(truths):
            left, right = (centre - s) * clip_length, (e - centre) * clip_length
            area = left + right
            if left < 0 or right < 0 or max(left, right) <= bounds[level][0] or max(left, right) > bounds[level][1]:
                area = 2 * clip_length
            if area < best_area:
                best, best_area = g, area
        g = 0 if best is None else best
        loc[k] = ((centre - truths[g][0]) * clip_length, (truths[g][1] - centre) * clip_length)
        conf[k] = labels[g] if best is not None else 0
    return loc, conf


def test_scale_range_assignment_equals_the_official_loop() -> None:
    import numpy as np

    from tadkit.methods.afsd.model import level_priors
    from tadkit.methods.afsd.targets import prior_levels

    priors = torch.cat([level_priors(96 >> i) for i in range(6)]).view(-1)
    levels = prior_levels(priors)
    assert levels.tolist() == sum(([i] * (96 >> i) for i in range(6)), [])
    rng = np.random.default_rng(0)
    for _ in range(20):
        k = int(rng.integers(1, 4))
        starts = rng.uniform(0, 0.8, k)
        truths = np.stack([starts, np.minimum(starts + rng.uniform(0.01, 0.9, k), 1.0)], 1)
        labels = rng.integers(1, 4, k)
        target = torch.tensor(np.concatenate([truths, labels[:, None]], 1), dtype=torch.float32)
        coarse = coarse_targets(priors, [target], 768, ANET["scale_ranges"])
        loc, conf = _official_anet_matching(priors.double().numpy(), levels.numpy(),
                                            target[:, :2].double().numpy(), labels, 768, ANET["scale_ranges"])
        assert coarse.labels[0].tolist() == conf.tolist()
        pos = conf > 0
        assert torch.allclose(coarse.loc[0][torch.from_numpy(pos)].double(), torch.from_numpy(loc[pos]), atol=1e-3)
    whole = coarse_targets(priors, [torch.tensor([[0.0, 1.0, 1.0]])], 768, ANET["scale_ranges"])
    assert set(levels[whole.labels[0] > 0].tolist()) == {4, 5}  # a 768-frame action: the coarse levels only
    assert (coarse_targets(priors, [torch.tensor([[0.0, 1.0, 1.0]])], 768).labels[0] > 0).all()  # THUMOS rule


def test_adaptive_piou_keeps_the_best_coarse_prediction_as_a_refinement_positive() -> None:
    from tadkit.methods.afsd.targets import CoarseTargets, refinement_targets

    target = torch.tensor([[[10.0, 10.0], [10.0, 10.0], [5.0, 5.0]], [[4.0, 4.0], [4.0, 4.0], [4.0, 4.0]]])
    coarse = CoarseTargets(target, torch.tensor([[1, 1, 0], [0, 0, 0]]))
    pre = torch.tensor([[[2.0, 2.0], [4.0, 4.0], [5.0, 5.0]], [[4.0, 4.0], [1.0, 1.0], [1.0, 1.0]]])  # IoU .2, .4
    assert refinement_targets(pre, coarse, 0.6).labels.tolist() == [[0, 0, 0], [0, 0, 0]]
    assert refinement_targets(pre, coarse, 0.6, adaptive=True).labels.tolist() == [[0, 1, 0], [0, 0, 0]]
    assert refinement_targets(pre, coarse, 0.3, adaptive=True).labels.tolist() == [[0, 1, 0], [0, 0, 0]]


def test_anet_head_strides_and_per_sample_normalisation() -> None:
    """Strides scale each level's distances; the per-sample reduction of a batch is the mean of the
    batch reduction of each sample alone (what the official loop computes)."""
    kw = dict(KW, clip_length=128)
    torch.manual_seed(0)
    plain = build_afsd(**kw)
    torch.manual_seed(0)
    strided = build_afsd(**kw, loc_strides=[1, 2, 4, 8, 16, 32])
    batch = _batch()
    with torch.no_grad():
        a, b = plain(batch)["loc"], strided(batch)["loc"]
    sizes = [T >> i for i in range(6)]
    for level, (lo, n) in enumerate(zip([sum(sizes[:i]) for i in range(6)], sizes)):
        torch.testing.assert_close(b[:, lo:lo + n], a[:, lo:lo + n] * 2 ** level)

    torch.manual_seed(1)
    model = build_afsd(**kw, per_sample_normalisation=True, adaptive_piou=True)
    outputs = model(batch)
    together = model.loss(outputs, batch)
    model.config.per_sample_normalisation = False
    for key in ("loc", "conf", "prop_loc", "prop_conf", "center"):
        alone = []
        for i in range(2):
            one = {k: (v[i:i + 1] if torch.is_tensor(v) and v.shape[0] == 2 else v) for k, v in outputs.items()}
            sample = {**batch, "targets": batch["targets"][i:i + 1], "meta": batch["meta"][i:i + 1]}
            alone.append(model.loss(one, sample)[key])
        torch.testing.assert_close(together[key], torch.stack(alone).mean(), rtol=1e-5, atol=1e-6)


def test_config_lists_of_lists_equal_the_checkpoints_tuples_in_the_test_note() -> None:
    """`tadkit test` notes config-vs-checkpoint differences; a YAML list of pairs is no difference."""
    from types import SimpleNamespace

    from tadkit.commands.test import model_section_notes

    model = build_afsd(**dict(KW, clip_length=768), **ANET)
    stored = SimpleNamespace(model=SimpleNamespace(name="afsd"))
    config = SimpleNamespace(model=SimpleNamespace(name="afsd", kwargs=dict(ANET)))
    assert model_section_notes(config, stored, model) == []
    config.model.kwargs = dict(ANET, scale_ranges=[[0, 31]] + ANET["scale_ranges"][1:])
    (note,) = model_section_notes(config, stored, model)
    assert "scale_ranges" in note
