"""ActionFormer decoding vs the OFFICIAL code (happyharrycn/actionformer_release), and the NMS + voting step.

Golden test: the fixture's raw eval head outputs of each video (``eval/v{b}/*``) and points built from the
.json's sizes go through :func:`decode_video`; the result must be the fixture's ``test/v{b}/*`` (the official
``model.eval()`` output: seconds, after pre-NMS top-k, multiclass soft-NMS, voting where enabled, the cap).

Tolerances (derived, so they hold for any well-formed fixture):

* Scores. A kept score is a sigmoid (bit-equal up to 2 float32 ulps between torch builds) times one Gaussian
  factor ``exp(-iou**2 / sigma)`` per earlier pick of its class that overlaps it. The official op computes the
  IoU in float32 and adds 1e-6 to each length; tadkit computes in float64 without it. Per factor that moves
  ``ln(score)`` by at most ``(2 / sigma) * (2e-6 / L + 4 eps32) + 2 eps32`` (``L``: the shorter length in
  feature steps, at least ``duration_thresh``), so detection ``i`` gets
  ``rtol_i = 4 eps32 + n_i * that``, ``n_i`` = its class's (all classes' when class-agnostic) higher-scored
  kept detections touching it.
* Times. Without voting the kept segments are the candidates themselves, converted by the same float32
  operations (bit-equal); voting's weighted mean accumulates float32 rounding over its neighbours, so
  ``atol = 1e-5 * max(1, duration)`` seconds.
* Count equal; labels equal; order-insensitive matching (a pair whose scores are within tolerance may swap).
  A detection may be missing on one side only when its score is within tolerance of the cut (the
  ``max_seg_num``-th score, or ``min_score``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from actionformer_golden import Golden, load_golden
from tadkit.errors import TadkitError
from tadkit.methods.actionformer.inference import (
    decode_feature_grid,
    decode_video,
    level_candidates,
    resolve_test_config,
)
from tadkit.methods.actionformer.model import ActionFormerTestConfig
from tadkit.methods.actionformer.points import make_points
from tadkit.postprocess.voting import nms_with_voting, vote_segments

EPS32 = float(np.finfo(np.float32).eps)


@pytest.fixture(scope="module")
def golden() -> Golden:
    return load_golden()


# ------------------------------------------------------------------------------------------------ #
# Comparison with derived tolerances
# ------------------------------------------------------------------------------------------------ #


def _score_rtol(segments: np.ndarray, scores: np.ndarray, labels: np.ndarray, steps_per_second: float,
                sigma: float, duration_thresh: float, multiclass: bool) -> np.ndarray:
    """Per-detection relative score tolerance (module docstring) from the official output itself."""
    order = np.argsort(-scores, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    start, end = segments[:, 0], segments[:, 1]
    lengths = np.maximum((end - start) * steps_per_second, duration_thresh)
    touching = (np.maximum(start[:, None], start[None]) <= np.minimum(end[:, None], end[None]))
    same_group = (labels[:, None] == labels[None]) if multiclass else np.ones((len(labels),) * 2, dtype=bool)
    earlier_same_class = same_group & (rank[None] < rank[:, None])
    shorter = np.minimum(lengths[:, None], lengths[None])
    per_factor = (2.0 / sigma) * (2e-6 / shorter + 4 * EPS32) + 2 * EPS32
    return 4 * EPS32 + np.where(touching & earlier_same_class, per_factor, 0.0).sum(axis=1)


def assert_same_detections(ours: tuple[torch.Tensor, ...], official: tuple[np.ndarray, ...], *, video: dict,
                           config: ActionFormerTestConfig) -> None:
    seg, sc, lab = (t.numpy() for t in ours)
    oseg, osc, olab = official
    name = video["video_id"]
    assert seg.shape == oseg.shape, f"{name}: {len(seg)} detections, official {len(oseg)}"
    duration = float(video["duration"])
    rtol = _score_rtol(oseg.astype(np.float64), osc.astype(np.float64), olab, video["fps"] / video["feat_stride"],
                       config.nms_sigma, config.duration_thresh, config.multiclass_nms)
    atol_time = 1e-5 * max(1.0, duration)
    compatible = (
        (lab[None, :] == olab[:, None])
        & (np.abs(seg[None, :, :] - oseg[:, None, :]).max(axis=2) <= atol_time)
        & (np.abs(sc[None, :].astype(np.float64) - osc[:, None]) <= rtol[:, None] * osc[:, None])
    )
    rows, cols = linear_sum_assignment(~compatible)
    matched = compatible[rows, cols]
    missing = np.setdiff1d(np.arange(len(osc)), rows[matched])
    cut = osc.min() if len(osc) >= config.max_seg_num else config.min_score
    at_cut = osc[missing] <= cut * (1 + 2 * rtol[missing])
    assert at_cut.all(), (
        f"{name}: {len(missing)} official detections without a match, e.g. "
        f"{[(oseg[i].tolist(), float(osc[i]), int(olab[i])) for i in missing[~at_cut][:3]]}"
    )
    assert len(missing) <= max(1, len(osc) // 100), f"{name}: {len(missing)} detections differ at the cut"


# ------------------------------------------------------------------------------------------------ #
# Golden: the official model.eval() output from its raw head outputs
# ------------------------------------------------------------------------------------------------ #


def test_official_actionformer_decode_matches_fixture(golden: Golden) -> None:
    config = resolve_test_config(golden.model["test_cfg"])
    assert golden.videos, "the fixture has no videos"
    for b, video in enumerate(golden.videos):
        cls, off, mask = golden.eval_outputs(b)
        points = golden.points([level.shape[0] for level in cls])
        ours = decode_video(points, cls, off, mask, golden.model["test_cfg"], video["fps"], video["feat_stride"],
                            video["feat_num_frames"], video["duration"])
        official = tuple(golden.arrays[f"test/v{b}/{key}"] for key in ("segments", "scores", "labels"))
        assert ours[0].dtype == torch.from_numpy(official[0]).dtype
        assert_same_detections(ours, official, video=video, config=config)
        assert np.all(np.diff(ours[1].numpy()) <= 0), "scores must come sorted, highest first"
        assert float(ours[0].min()) >= 0.0 and float(ours[0].max()) <= video["duration"]


def test_official_actionformer_decode_rejects_other_nms_settings(golden: Golden) -> None:
    """The comparison can fail: half the soft-NMS sigma (or, for hard NMS, half the IoU threshold) gives
    detections the check rejects, on every video where the change moves the output at all."""
    config = resolve_test_config(golden.model["test_cfg"])
    if config.nms_method == "none":
        pytest.skip("the fixture runs without NMS")
    key = "nms_sigma" if config.nms_method == "soft" else "iou_threshold"
    changed = {**golden.model["test_cfg"], key: getattr(config, key) * 0.5}
    detected = 0
    for b, video in enumerate(golden.videos):
        cls, off, mask = golden.eval_outputs(b)
        points = golden.points([level.shape[0] for level in cls])
        args = (video["fps"], video["feat_stride"], video["feat_num_frames"], video["duration"])
        right = decode_video(points, cls, off, mask, golden.model["test_cfg"], *args)
        wrong = decode_video(points, cls, off, mask, changed, *args)
        if right[1].shape == wrong[1].shape and torch.allclose(right[1], wrong[1], rtol=1e-3):
            continue
        official = tuple(golden.arrays[f"test/v{b}/{k}"] for k in ("segments", "scores", "labels"))
        with pytest.raises(AssertionError):
            assert_same_detections(wrong, official, video=video, config=config)
        detected += 1
    assert detected, f"halving {key} changed no video's detections"


# ------------------------------------------------------------------------------------------------ #
# Per-level candidates, hand-checkable
# ------------------------------------------------------------------------------------------------ #


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_level_candidates_threshold_topk_mask_and_duration() -> None:
    points = make_points([4], [2], [(0.0, 100.0)])[0]  # t = 0, 2, 4, 6; stride 2
    probs = torch.tensor([[0.9, 0.0005], [0.3, 0.8], [0.7, 0.95], [0.6, 0.2]])
    logits = torch.log(probs / (1 - probs))
    offsets = torch.tensor([[1.0, 1.0], [0.5, 0.25], [0.01, 0.01], [2.0, 0.0]])
    mask = torch.tensor([True, True, True, False])  # step 3 is padding
    config = ActionFormerTestConfig(pre_nms_thresh=0.001, pre_nms_topk=4, duration_thresh=0.05)
    segments, scores, labels = level_candidates(points, logits, offsets, mask, config)
    # by probability: (2,1) .95, (0,0) .9, (1,1) .8, (2,0) .7 | (1,0) .3 cut by top-4; (0,1) below thr; step 3 masked
    # (2, *) has length (0.01 + 0.01) * 2 = 0.04 <= 0.05: dropped
    assert labels.tolist() == [0, 1]
    assert torch.allclose(scores, torch.tensor([0.9, 0.8]))
    assert segments.tolist() == [[-2.0, 2.0], [1.0, 2.5]]


def test_decode_video_converts_feature_steps_to_seconds_and_clips() -> None:
    points = make_points([3], [1], [(0.0, 100.0)])
    logits = torch.full((3, 1), -20.0)
    logits[1, 0] = _logit(0.9)
    offsets = torch.tensor([[0.0, 0.0], [1.0, 3.0], [0.0, 0.0]])
    mask = torch.ones(3, dtype=torch.bool)
    segments, scores, labels = decode_video(points, [logits], [offsets], [mask], ActionFormerTestConfig(),
                                            fps=25.0, feat_stride=4, feat_num_frames=16, duration=1.0)
    # [0, 4] feature steps -> ((0 * 4 + 8) / 25, (4 * 4 + 8) / 25) = (0.32, 0.96)
    assert labels.tolist() == [0] and scores.shape == (1,)
    assert torch.allclose(segments, torch.tensor([[0.32, 0.96]]))
    segments, _, _ = decode_video(points, [logits], [offsets], [mask], ActionFormerTestConfig(),
                                  fps=25.0, feat_stride=4, feat_num_frames=16, duration=0.5)
    assert torch.allclose(segments, torch.tensor([[0.32, 0.5]]))  # clipped to the duration


def test_decode_feature_grid_levels_in_order_without_nms() -> None:
    points = make_points([2, 1], [1, 2], [(0.0, 4.0), (4.0, 100.0)])
    logits = [torch.tensor([[_logit(0.2)], [_logit(0.6)]]), torch.tensor([[_logit(0.9)]])]
    offsets = [torch.ones(2, 2), torch.full((1, 2), 2.0)]
    masks = [torch.ones(2, dtype=torch.bool), torch.ones(1, dtype=torch.bool)]
    segments, scores, _ = decode_feature_grid(points, logits, offsets, masks, {"nms_method": "none"})
    # level 0 first (most probable first within it), then level 1: no global sort without NMS, as officially
    assert torch.allclose(scores, torch.tensor([0.6, 0.2, 0.9]))
    assert segments.tolist() == [[0.0, 2.0], [-1.0, 1.0], [-4.0, 4.0]]
    with pytest.raises(TadkitError, match="levels"):
        decode_feature_grid(points[:1], logits, offsets, masks, {})


def test_test_config_rejects_unknown_keys_and_bad_values() -> None:
    with pytest.raises(TadkitError, match="unknown"):
        resolve_test_config({"pre_nms_tresh": 0.1})
    with pytest.raises(TadkitError, match="nms_method"):
        resolve_test_config({"nms_method": "gaussian"})
    with pytest.raises(TadkitError, match="max_seg_num"):
        ActionFormerTestConfig(max_seg_num=0)


# ------------------------------------------------------------------------------------------------ #
# NMS + voting vs a float64 transcription of the official C++ op and batched_nms
# ------------------------------------------------------------------------------------------------ #


def _reference_soft_nms(seg: np.ndarray, sc: np.ndarray, sigma: float, min_score: float,
                        area_eps: float) -> tuple[list[int], list[float]]:
    """The op's loop: pick the first maximum of the pending scores, decay all other pending ones by the
    Gaussian, drop the ones below ``min_score`` (swapping the last pending one into their place)."""
    x1, x2, s = seg[:, 0].copy(), seg[:, 1].copy(), sc.astype(np.float64).copy()
    area = x2 - x1 + area_eps
    idx = np.arange(len(s))
    n, picked, values = len(s), [], []
    i = 0
    while i < n:
        m = i + int(np.argmax(s[i:n]))
        for arr in (x1, x2, s, area, idx):
            arr[i], arr[m] = arr[m], arr[i]
        picked.append(int(idx[i]))
        values.append(float(s[i]))
        pos = i + 1
        while pos < n:
            inter = max(0.0, min(x2[i], x2[pos]) - max(x1[i], x1[pos]))
            ovr = inter / (area[i] + area[pos] - inter)
            s[pos] *= math.exp(-(ovr * ovr) / sigma)
            if s[pos] < min_score:
                for arr in (x1, x2, s, area, idx):
                    arr[pos] = arr[n - 1]
                n -= 1
                continue
            pos += 1
        i += 1
    return picked, values


def _reference_batched(seg, sc, lab, *, multiclass, max_seg_num, sigma, min_score, voting_thresh, area_eps=1e-6):
    keep, values = [], []
    groups = [np.flatnonzero(lab == c) for c in np.unique(lab)] if multiclass else [np.arange(len(sc))]
    for rows in groups:
        picked, vals = _reference_soft_nms(seg[rows], sc[rows], sigma, min_score, area_eps)
        keep += [int(rows[p]) for p in picked[:max_seg_num]]
        values += vals[:max_seg_num]
    keep, values = np.array(keep), np.array(values)
    out = seg[keep].astype(np.float64)
    if not multiclass and voting_thresh > 0:
        for k in range(len(out)):
            s0, e0 = out[k]
            inter = np.clip(np.minimum(e0, seg[:, 1]) - np.maximum(s0, seg[:, 0]), 0, None)
            iou = inter / ((e0 - s0) + (seg[:, 1] - seg[:, 0]) - inter)
            w = (iou >= voting_thresh) * sc * iou
            out[k] = (w / w.sum()) @ seg
    order = np.argsort(-values, kind="stable")[:max_seg_num]
    return out[order], values[order], lab[keep][order]


def _random_candidates(seed: int, n: int = 300, classes: int = 3):
    rng = np.random.default_rng(seed)
    start = rng.uniform(0, 200, n)
    seg = np.stack((start, start + rng.uniform(1, 30, n)), axis=1)
    return seg, rng.uniform(0.001, 1.0, n), rng.integers(0, classes, n)


@pytest.mark.parametrize("multiclass", [True, False])
def test_nms_with_voting_matches_official_algorithm(multiclass: bool) -> None:
    seg, sc, lab = _random_candidates(seed=3 if multiclass else 4)
    settings = dict(multiclass=multiclass, max_seg_num=100, sigma=0.5, min_score=0.001, voting_thresh=0.7)
    ref_seg, ref_sc, ref_lab = _reference_batched(seg, sc, lab, **settings)
    out_seg, out_sc, out_lab = nms_with_voting(
        torch.from_numpy(seg), torch.from_numpy(sc), torch.from_numpy(lab), method="soft", iou_threshold=0.1,
        min_score=settings["min_score"], max_seg_num=settings["max_seg_num"], multiclass=multiclass,
        sigma=settings["sigma"], voting_thresh=settings["voting_thresh"])
    assert out_lab.tolist() == ref_lab.tolist()
    # lengths >= 1 here: the op's 1e-6 length offset moves each factor by < 1e-5 relative
    np.testing.assert_allclose(out_sc.numpy(), ref_sc, rtol=1e-4)
    np.testing.assert_allclose(out_seg.numpy(), ref_seg, rtol=0, atol=1e-9 if multiclass else 1e-6)
    if not multiclass:  # voting moved segments away from the candidates they came from
        assert not np.isin(out_seg.numpy()[:, 0], seg[:, 0]).all()


def test_vote_segments_by_hand() -> None:
    candidates = torch.tensor([[0.0, 10.0], [1.0, 10.0], [0.0, 20.0]], dtype=torch.float64)
    scores = torch.tensor([0.5, 0.25, 1.0], dtype=torch.float64)
    voted = vote_segments(candidates[:1], candidates, scores, iou_threshold=0.5)
    # IoUs with [0, 10]: 1, 0.9, 0.5 -> weights 0.5, 0.225, 0.5
    expected = (0.5 * candidates[0] + 0.225 * candidates[1] + 0.5 * candidates[2]) / 1.225
    assert torch.allclose(voted[0], expected)
    voted = vote_segments(candidates[:1], candidates, scores, iou_threshold=0.6)  # [0, 20] no longer votes
    assert torch.allclose(voted[0], (0.5 * candidates[0] + 0.225 * candidates[1]) / 0.725)


def test_soft_nms_emits_each_class_best_even_below_min_score() -> None:
    seg = torch.tensor([[0.0, 4.0], [0.0, 4.0], [10.0, 14.0]])
    scores = torch.tensor([0.0004, 0.0003, 0.5])
    labels = torch.tensor([0, 0, 1])
    out_seg, out_sc, out_lab = nms_with_voting(seg, scores, labels, min_score=0.001, max_seg_num=10)
    # class 1 keeps its 0.5; class 0's best (0.0004) is emitted as the op does, its second is dropped
    assert out_lab.tolist() == [1, 0]
    assert torch.allclose(out_sc, torch.tensor([0.5, 0.0004]))


def test_hard_nms_and_none() -> None:
    seg = torch.tensor([[0.0, 10.0], [1.0, 10.0], [20.0, 30.0]])
    scores = torch.tensor([0.9, 0.8, 0.0005])
    labels = torch.tensor([0, 0, 0])
    out_seg, out_sc, _ = nms_with_voting(seg, scores, labels, method="hard", iou_threshold=0.5, min_score=0.001)
    # [1, 10] has IoU 0.9 with [0, 10]: dropped; 0.0005 is below min_score: filtered first
    assert out_seg.tolist() == [[0.0, 10.0]] and out_sc.tolist() == [pytest.approx(0.9)]
    same = nms_with_voting(seg, scores, labels, method="none")
    assert all(a is b for a, b in zip(same, (seg, scores, labels)))
    empty = nms_with_voting(seg[:0], scores[:0], labels[:0])
    assert [tuple(t.shape) for t in empty] == [(0, 2), (0,), (0,)]
