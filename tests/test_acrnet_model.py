"""ACRNet model options, contract, sampling and post-processing (no shared files needed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tadkit.errors import TadkitError
from tadkit.methods.acrnet.model import MCA, ACRNetConfig, build_acrnet
from tadkit.methods.acrnet.postprocess import (
    ACRNetLocalizeOptions,
    bsn_soft_nms,
    drop_ambiguous,
    localize,
    select_classes,
)
from tadkit.methods.acrnet.sampling import acrnet_sample_indices
from tadkit.methods.base import ClassActivation


def _tiny(**kw):
    torch.manual_seed(0)
    return build_acrnet(in_dim=16, num_classes=kw.pop("num_classes", 5), aas_hidden=6, **kw)


# ---- MCA head merge --------------------------------------------------------------------------------


def test_mca_merge_official_is_the_transposed_reshape_and_concat_is_standard():
    torch.manual_seed(1)
    n, d, t, h = 2, 8, 6, 4
    mca = MCA(d, h, "official")
    e = torch.randn(n, h, t, d // h)
    official = mca._merge(e)
    # spec: stack (H, T, d) -> swap to (H, d, T) -> read row-major as (T, D)
    expected = torch.stack([e[b].transpose(1, 2).contiguous().view(-1) for b in range(n)]).view(n, t, d)
    assert torch.equal(official, expected)
    mca.merge = "concat"
    concat = mca._merge(e)
    for b in range(n):
        for step in range(t):  # row t = the H head outputs of time step t, head-major
            assert torch.equal(concat[b, step], torch.cat([e[b, k, step] for k in range(h)]))
    assert not torch.equal(official, concat)


def test_concat_merge_is_time_equivariant_official_is_not():
    """Reversing time commutes with the concat MCA but not with the official (scrambling) merge."""
    x_r, x_f = torch.randn(1, 8, 10), torch.randn(1, 8, 10)
    for merge, equivariant in (("concat", True), ("official", False)):
        torch.manual_seed(2)
        mca = MCA(8, 4, merge)
        out_r, _ = mca(x_r, x_f)
        rev_r, _ = mca(x_r.flip(-1), x_f.flip(-1))
        assert torch.allclose(out_r.flip(-1), rev_r, atol=1e-5) is equivariant, merge


# ---- config / contract -----------------------------------------------------------------------------


def test_avg_pool_follows_the_official_rule_unless_set():
    assert ACRNetConfig(num_classes=20).avg_pool is False
    assert ACRNetConfig(num_classes=100).avg_pool is True
    assert ACRNetConfig(num_classes=20, avg_pool=True).avg_pool is True
    pooled, plain = _tiny(num_classes=5), _tiny(num_classes=5, avg_pool=False)
    assert set(pooled.state_dict()) == set(plain.state_dict())  # the pool has no parameters
    assert isinstance(pooled.cas_rgb_encoder[-1], torch.nn.AvgPool1d) and len(plain.cas_rgb_encoder) == 3
    plain.load_state_dict(pooled.state_dict())
    x = {"features": torch.randn(1, 16, 40)}
    pooled.eval(), plain.eval()
    with torch.no_grad():
        a, b = pooled(x)["cas"], plain(x)["cas"]
    assert not torch.allclose(a, b)
    # count_include_pad: the first step averages 7 real + 6 zero-padded steps of the 13-window
    with torch.no_grad():
        raw = plain.cas_rgb_encoder(plain.rgb_bwa(*plain.mca(x["features"][:, :8], x["features"][:, 8:])))
    assert torch.allclose(torch.nn.functional.avg_pool1d(raw, 13, 1, 6)[..., 0], raw[..., :7].sum(-1) / 13, atol=1e-6)


def test_config_errors_name_the_field():
    with pytest.raises(TadkitError, match="mca_merge"):
        build_acrnet(mca_merge="heads")
    with pytest.raises(TadkitError, match="unknown ACRNet option"):
        build_acrnet(hidden=3)
    with pytest.raises(TadkitError, match="num_heads"):
        build_acrnet(in_dim=18, num_heads=4)


def test_config_dict_rebuilds_and_forward_contract():
    model = _tiny(mca_merge="concat").eval()
    clone = build_acrnet(**model.config_dict())
    clone.load_state_dict(model.state_dict())
    clone.eval()
    batch = {"features": torch.randn(2, 16, 30), "video_labels": torch.tensor([[1.0, 0, 0, 0, 1], [0, 1, 0, 0, 0]]),
             "meta": [{"video_id": "a", "valid_length": 30}, {"video_id": "b", "valid_length": 30}]}
    with torch.no_grad():
        out, out2 = model(batch), clone(batch)
    for key in out:
        assert torch.equal(out[key], out2[key]), key
    assert out["seg_score"].shape == (2, 30, 5) and out["aas_rgb"].shape == (2, 30, 1)
    assert bool(((out["seg_mask"] == 0) | (out["seg_mask"] == 1)).all())
    assert bool((out["seg_mask"] <= out["cluster_mask"]).all())  # refining only removes
    acts = model.decode(out, batch)
    assert len(acts) == 2 and acts[0].cas.shape == (5, 30) and acts[0].video_scores.shape == (5,)
    assert torch.equal(acts[1].cas, out["seg_score"][1].T)
    assert acts[0].extras["actionness"].shape == (30,)
    batch["meta"][1]["valid_length"] = 20
    with pytest.raises(TadkitError, match="same length") as info:
        model(batch)
    assert info.value.video == "b"


def test_loss_gradients_and_label_check():
    model = _tiny()
    model.train()
    batch = {"features": torch.randn(3, 16, 25), "video_labels": torch.tensor([[1.0, 0, 0, 0, 0], [0, 1, 1, 0, 0],
                                                                               [0, 0, 0, 0, 1]])}
    out = model(batch)
    losses = model.loss(out, batch)
    assert set(losses) == {"cas", "aas_rgb", "aas_flow", "total"}
    assert torch.allclose(losses["total"], losses["cas"] + 0.1 * (losses["aas_rgb"] + losses["aas_flow"]))
    losses["aas_rgb"].backward(retain_graph=True)
    assert model.aas_rgb_encoder[0].weight.grad.abs().sum() > 0
    assert model.aas_flow_encoder[0].weight.grad is None  # GCE(rgb) trains the rgb actionness head only
    assert model.cas_rgb_encoder[2].weight.grad is None  # masks are constants: no gradient into the CAS heads
    model.zero_grad()
    losses["cas"].backward()
    assert model.cas_rgb_encoder[2].weight.grad.abs().sum() > 0
    with pytest.raises(TadkitError, match="video labels"):
        model.loss(out, {"video_labels": torch.ones(3, 4)})


# ---- sampling --------------------------------------------------------------------------------------


def test_sampling_test_mode():
    assert acrnet_sample_indices(5, 8, False).tolist() == [0, 1, 2, 3, 4]  # n <= T: all, variable length
    assert acrnet_sample_indices(30, 8, False).tolist() == [int(np.floor(i * 30 / 8)) for i in range(8)]


def test_sampling_training_bins():
    rng = np.random.default_rng(0)
    for n, t in ((5, 12), (30, 8), (751, 750), (2000, 750), (7, 7)):
        edges = np.append(np.arange(t) * n / t, n)
        lo, hi = edges[:-1].astype(int), edges[1:].astype(int)
        draws = np.stack([acrnet_sample_indices(n, t, True, rng) for _ in range(50)])
        assert draws.shape == (50, t)
        same = lo == hi
        assert (draws[:, same] == lo[same]).all()  # degenerate bins: floor(e_i), repeated indices
        wide = ~same
        assert ((draws[:, wide] >= lo[wide]) & (draws[:, wide] < hi[wide])).all()
        if (hi[wide] - lo[wide] > 1).any():  # really random in wide bins
            assert len({tuple(row) for row in draws}) > 1
    assert np.array_equal(acrnet_sample_indices(30, 8, True, 3), acrnet_sample_indices(30, 8, True, 3))
    with pytest.raises(TadkitError):
        acrnet_sample_indices(0, 8, True)


# ---- post-processing -------------------------------------------------------------------------------


def _mmaction_soft_nms(proposals, alpha, low, high, top_k):
    """A literal list-based re-statement of mmaction2's soft_nms + temporal_iou (the reference)."""
    proposals = proposals[proposals[:, -1].argsort()[::-1]]
    tstart, tend, tscore = list(proposals[:, 0]), list(proposals[:, 1]), list(proposals[:, -1])
    rstart, rend, rscore = [], [], []
    while len(tscore) > 0 and len(rscore) <= top_k:
        m = int(np.argmax(tscore))
        width = tend[m] - tstart[m]
        gs, ge = np.array(tstart), np.array(tend)
        inter = np.maximum(np.minimum(tend[m], ge) - np.maximum(tstart[m], gs), 0.0)
        iou = inter / (width - inter + ge - gs)
        factor = np.exp(-np.square(iou) / alpha)
        for k in range(len(tscore)):
            if k != m and iou[k] > low + (high - low) * width:
                tscore[k] = tscore[k] * factor[k]
        rstart.append(tstart.pop(m)), rend.append(tend.pop(m)), rscore.append(tscore.pop(m))
    return np.array(rstart), np.array(rend), np.array(rscore)


@pytest.mark.parametrize("seed", range(4))
def test_bsn_soft_nms_equals_the_reference(seed):
    rng = np.random.default_rng(seed)
    n = 60
    start = rng.integers(0, 200, n) / 25.0
    end = start + rng.integers(2, 60, n) / 25.0
    score = np.round(rng.random(n), 1)  # ties
    start[:5], end[:5], score[:5] = start[5], end[5], score[5]  # duplicated proposals (several thresholds)
    keep, decayed = bsn_soft_nms(np.stack([start, end], 1), score, 0.5, 0.1, 0.1)
    ref_s, ref_e, ref_sc = _mmaction_soft_nms(np.stack([start, end, score], 1), 0.5, 0.1, 0.1, n)
    assert np.array_equal(start[keep], ref_s) and np.array_equal(end[keep], ref_e)
    assert np.array_equal(decayed, ref_sc)
    assert sorted(keep.tolist()) == list(range(n))


def test_select_classes_threshold_and_argmax_fallback():
    assert select_classes(np.array([0.05, 0.5, 0.1], np.float32), 0.1).tolist() == [1, 2]
    assert select_classes(np.array([0.05, 0.09, 0.02], np.float32), 0.1).tolist() == [1]


def _activation():
    t = 12
    seg = np.full((3, t), 0.05, np.float32)
    seg[1, 3:7] = 0.9
    seg[2, 8:10] = 0.6
    return ClassActivation(cas=torch.from_numpy(seg), video_scores=torch.tensor([0.01, 0.7, 0.2]))


def test_localize_offsets_fps_and_order():
    act = _activation()
    meta = {"video_id": "v", "num_features": 12, "fps": 30.0}
    seg, score, label = localize(act, meta, {})
    assert set(label.tolist()) == {1, 2} and list(label) == sorted(label)  # classes ascending
    for c in (1, 2):
        assert np.all(np.diff(score[label == c]) <= 0)  # soft-NMS emission order
    frames = np.round(seg * 25).astype(int)  # every time is (frame + offset) / 25
    assert np.allclose(seg * 25, frames)
    seg2, score2, label2 = localize(act, meta, {"frame_offsets": False})
    np.testing.assert_allclose(seg2[:, 0], seg[:, 0] - 1 / 25)  # start: s / fps instead of (s + 1) / fps
    np.testing.assert_allclose(seg2[:, 1], seg[:, 1] - 1 / 25)  # end: (e + 1) / fps instead of (e + 2) / fps
    seg3, _, _ = localize(act, {**meta, "feature_fps": 30.0, "stride_frames": 16.0}, {})  # the features' own fps
    np.testing.assert_allclose(seg3 * 30, seg * 25)
    seg4, score4, _ = localize(act, meta, {"preset": "anet"})  # alpha 0.8: milder decay
    assert sorted(map(tuple, seg4)) == sorted(map(tuple, seg))  # same proposals, other decay
    assert score4.sum() > score.sum()
    # the frame grid: F = 16 * num_features frames; class 1 is high on features 3..6, so every run
    # lies inside the interpolation ramps, frames (2*16, 7*16] (+1 / +2 frame offsets)
    one = np.round(seg[label == 1] * 25)
    assert one[:, 0].min() >= 2 * 16 + 1 and one[:, 1].max() <= 7 * 16 + 2
    assert one[:, 0].max() <= 3 * 16 + 1 and one[:, 1].min() >= 6 * 16 + 2
    with pytest.raises(TadkitError, match="unknown ACRNet localize option"):
        localize(act, meta, {"alpha_nms": 0.5})


def test_drop_ambiguous_is_class_agnostic_and_strict_overlap():
    seg = np.array([[0.0, 1.0], [1.0, 2.0], [2.5, 3.0], [5.0, 6.0]])
    labels = np.array([0, 1, 2, 3])
    amb = np.array([[2.0, 2.6], [4.0, 4.5]])
    kept, kept_labels = drop_ambiguous(seg, amb, labels)
    assert kept_labels.tolist() == [0, 1, 3]  # [1, 2] only touches [2, 2.6]: kept; [2.5, 3] overlaps
    assert np.array_equal(drop_ambiguous(seg, np.zeros((0, 2)), labels)[1], labels)


def test_options_presets():
    assert ACRNetLocalizeOptions.from_mapping({"preset": "anet"}).alpha == 0.8
    assert ACRNetLocalizeOptions().thresholds.size == 18
    with pytest.raises(TadkitError, match="test.cas.rate"):
        ACRNetLocalizeOptions(rate=0)


def test_config_null_avg_pool_matches_a_checkpoint_storing_the_resolved_value():
    """`tadkit test` notes config-vs-checkpoint differences of model.kwargs; `avg_pool: null`
    (automatic) resolves to what the checkpoint stores, so it is no difference; `false` is."""
    from types import SimpleNamespace

    from tadkit.commands.test import model_section_notes

    model = build_acrnet(in_dim=16, num_classes=5, aas_hidden=6)  # 5 classes -> avg_pool resolves to True
    assert model.config_dict()["avg_pool"] is True
    stored = SimpleNamespace(model=SimpleNamespace(name="acrnet"))

    def notes(**kwargs):
        config = SimpleNamespace(model=SimpleNamespace(name="acrnet", kwargs={"num_classes": 5, **kwargs}))
        return model_section_notes(config, stored, model)

    assert notes(avg_pool=None) == []
    assert notes(avg_pool=True) == []
    (note,) = notes(avg_pool=False)
    assert "model.kwargs avg_pool" in note
    (note,) = notes(avg_pool=None, num_classes=20)  # resolves to False with 20 classes: a real difference
    assert "avg_pool" in note and "num_classes" in note


def test_cas_times_follow_the_features_time_mapping_and_official_constants_are_checked():
    """Default: seconds from the features' fps / stride_frames (4 frames per feature at 15 fps here),
    not the release's 25 / 16 that stretched them 2.4x; explicit constants that disagree are refused."""
    act = _activation()
    meta = {"video_id": "v", "num_features": 12, "feature_fps": 15.0, "stride_frames": 4.0}
    seg, _, label = localize(act, meta, {})
    official, _, official_label = localize(act, {"video_id": "v", "num_features": 12}, {})  # no mapping: 25 / 16
    # frame grid F = 4 * 12 at 15 fps vs 16 * 12 at 25 fps: each class's proposals cover the same
    # feature positions, so their extent scales by (4/15) / (16/25), within one feature (4/15 s)
    feature = 4 / 15
    for c in set(label.tolist()):
        ours, theirs = seg[label == c], official[official_label == c] * feature / (16 / 25)
        assert abs(ours[:, 0].min() - theirs[:, 0].min()) < feature
        assert abs(ours[:, 1].max() - theirs[:, 1].max()) < feature
    assert seg.max() <= 12 * feature + 2 / 15  # inside the video's 3.2 s (+ Q1's two-frame offset)
    assert official.max() > 12 * feature * 1.5  # the release's constants stretch these features 2.4x
    with pytest.raises(TadkitError, match="stride_frames 4") as error:
        localize(act, meta, {"fps": 15, "rate": 16})
    assert error.value.video == "v" and error.value.field == "test.cas.rate"
    with pytest.raises(TadkitError, match="fps 15"):
        localize(act, meta, {"fps": 25, "rate": 4})
    np.testing.assert_array_equal(localize(act, meta, {"fps": 15, "rate": 4})[0], seg)  # agreeing constants
