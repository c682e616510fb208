"""CAS -> segments: run finding, resampling (vs OpenCV / SciPy, what ECM / ACRNet call) and the two
official grouping + outer-inner-contrast recipes against plain loop transcriptions."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.interpolate import interp1d

from tadkit.errors import TadkitError
from tadkit.postprocess.cas import (
    CAS_PRESETS,
    CASProposalConfig,
    cas_proposals,
    find_runs,
    localize_from_cas,
    minmax_normalize,
    resize_linear_centers,
    resize_linear_extrapolate,
    select_classes,
)
from test_postprocess_nms import ref_per_class_nms, ref_soft_nms

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def consecutive_groups(indices: list[int]) -> list[list[int]]:
    groups: list[list[int]] = []
    for i in indices:
        if groups and i == groups[-1][-1] + 1:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def ref_ecm(seq: list[float], thresholds, lam: float, gamma: float, p_c: float, rate: float):
    """ECM's localization loop for one class: zero below thr, group positives, OIC on the zeroed copy."""
    length = len(seq)
    out = []
    for thr in thresholds:
        tmp = [v if v >= thr else 0.0 for v in seq]
        positions = [i for i, v in enumerate(tmp) if v > 0]
        if not any(positions):  # the official `if any(position)`: nothing, or only index 0
            continue
        for g in consecutive_groups(positions):
            inner = mean([tmp[i] for i in g])
            lo = max(0, int(g[0] - lam * len(g)))
            hi = min(length, int(g[-1] + lam * len(g)))
            outer_idx = list(range(lo, g[0])) + list(range(g[-1] + 1, hi))
            outer = mean([tmp[i] for i in outer_idx]) if outer_idx else 0.0
            out.append((g[0] / rate, (g[-1] + 1) / rate, inner - outer + gamma * p_c))
    return out


def ref_acrnet(seq: list[float], thresholds, act: float, rate: float = 25.0):
    """ACRNet: runs of >= 2 frames with score >= thr, OIC on raw scores (lambda 0.25, gamma 0.2)."""
    length = len(seq)
    out = []
    for thr in thresholds:
        for g in consecutive_groups([i for i, v in enumerate(seq) if v >= thr]):
            if len(g) < 2:
                continue
            inner = mean([seq[i] for i in g])
            lo = max(0, int(g[0] - 0.25 * len(g)))
            hi = min(length - 1, int(g[-1] + 0.25 * len(g)))
            outer_idx = list(range(lo, g[0])) + list(range(g[-1] + 1, hi + 1))
            outer = mean([seq[i] for i in outer_idx]) if outer_idx else 0.0
            out.append(((g[0] + 1) / rate, (g[-1] + 2) / rate, inner - outer + 0.2 * act))
    return out


def assert_same_proposals(got: list[tuple], want: list[tuple]) -> None:
    assert len(got) == len(want)
    for g, w in zip(sorted(got), sorted(want)):
        assert g == pytest.approx(w, rel=1e-9, abs=1e-9)


grid = st.integers(-4, 20).map(lambda v: v / 20)  # exact thresholds hit often, negatives for ECM
value = st.one_of(grid, st.floats(-0.2, 1.0, allow_nan=False))


@st.composite
def cas_arrays(draw, max_classes=3, max_t=60):
    c = draw(st.integers(1, max_classes))
    t = draw(st.integers(1, max_t))
    flat = draw(st.lists(value, min_size=c * t, max_size=c * t))
    return np.asarray(flat, dtype=np.float64).reshape(c, t)


# --------------------------------------------------------------------------------------------- #
# Building blocks
# --------------------------------------------------------------------------------------------- #


@SETTINGS
@given(st.lists(st.lists(st.booleans(), min_size=0, max_size=40), min_size=1, max_size=4).filter(
    lambda rows: len({len(r) for r in rows}) == 1))
def test_find_runs_matches_loop(rows):
    mask = np.asarray(rows, dtype=bool).reshape(len(rows), -1)
    got = list(zip(*(a.tolist() for a in find_runs(mask))))
    want = []
    for r, row in enumerate(rows):
        for g in consecutive_groups([i for i, v in enumerate(row) if v]):
            want.append((r, g[0], g[-1]))
    assert got == want


def test_minmax_normalize_matches_ecm_rule():
    cas = np.array([[-1.0, 0.5, 2.0, 1.0], [-3.0, -2.0, -1.0, -0.5], [0.5, 0.5, 0.5, 0.5]])
    out = minmax_normalize(cas)
    # row 0: min clipped to 0 -> (x - 0) / 2; row 1: max and min clip to 0 -> range 1, x unchanged;
    # row 2: max == min -> range 1, x - 0.5.
    np.testing.assert_allclose(out[0], [-0.5, 0.25, 1.0, 0.5])
    np.testing.assert_allclose(out[1], cas[1])
    np.testing.assert_allclose(out[2], [0.0, 0.0, 0.0, 0.0])


@pytest.mark.parametrize("t, length", [(750, 5371), (750, 750), (100, 37), (7, 3), (1, 9), (13, 4000)])
def test_resize_linear_centers_equals_opencv(t, length):
    rng = np.random.default_rng(t + length)
    cas = rng.normal(size=(3, t)).astype(np.float32)
    ours = resize_linear_centers(cas, length)
    for c in range(3):
        ref = cv2.resize(cas[c:c + 1], (length, 1), interpolation=cv2.INTER_LINEAR)[0]
        np.testing.assert_allclose(ours[c], ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("t, frames", [(750, 16 * 1234), (80, 16 * 80), (5, 7), (2, 32), (750, 500)])
def test_resize_linear_extrapolate_equals_acrnet_interp1d(t, frames):
    rng = np.random.default_rng(t)
    seg_scores = rng.random((t, 4))  # ACRNet's (T, C) layout
    ref = interp1d(np.arange(t), seg_scores, kind="linear", axis=0, fill_value="extrapolate")(
        np.arange(frames) * t / frames)
    ours = resize_linear_extrapolate(seg_scores.T, frames).T
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12)


def test_select_classes():
    assert select_classes(np.array([0.1, 0.3, 0.26]), 0.25).tolist() == [1, 2]
    assert select_classes(np.array([0.1, 0.05]), 0.25).tolist() == []
    assert select_classes(np.array([0.1, 0.05]), 0.25, fallback_top1=True).tolist() == [0]
    with pytest.raises(TadkitError):
        select_classes(np.array([np.nan]), 0.1)


# --------------------------------------------------------------------------------------------- #
# Official recipes vs loop transcriptions
# --------------------------------------------------------------------------------------------- #


@SETTINGS
@given(cas_arrays(), st.sampled_from(["ecm_thumos", "ecm_anet"]))
def test_ecm_proposals_match_loop(cas, preset):
    cfg = CAS_PRESETS[preset]
    p = np.linspace(0.3, 0.9, cas.shape[0])
    rate = 30.0
    props = cas_proposals(cas, cfg, class_scores=p)
    secs = props.seconds(rate, cfg)
    for c in range(cas.shape[0]):
        mine = props.label == c
        got = [(s, e, v) for (s, e), v in zip(secs[mine].tolist(), props.score[mine].tolist())]
        want = ref_ecm(cas[c].tolist(), cfg.thresholds, cfg.outer_lambda, cfg.gamma, p[c], rate)
        assert_same_proposals(got, want)


@SETTINGS
@given(cas_arrays().map(lambda a: np.clip(a, 0, 1)))
def test_acrnet_proposals_match_loop(scores):
    cfg = CAS_PRESETS["acrnet"]
    act = np.linspace(0.2, 0.8, scores.shape[0])
    props = cas_proposals(scores, cfg, class_scores=act)
    secs = props.seconds(25.0, cfg)
    for c in range(scores.shape[0]):
        mine = props.label == c
        got = [(s, e, v) for (s, e), v in zip(secs[mine].tolist(), props.score[mine].tolist())]
        assert_same_proposals(got, ref_acrnet(scores[c].tolist(), cfg.thresholds, act[c]))


def test_hand_computed_ecm_proposal():
    # One threshold 0.5, lambda 0.5: run [2, 4] (L=3) with values 0.6, 0.8, 1.0 -> inner 0.8;
    # outer = [max(0, int(2 - 1.5)) = 0, 2) U (4, min(8, int(4 + 1.5)) = 5) = {0, 1}; thresholded
    # values there are 0 and 0 -> outer 0. Score = 0.8 + 0.1 * 0.5.
    cas = np.array([[0.2, 0.4, 0.6, 0.8, 1.0, 0.45, 0.7, 0.1]])
    cfg = CASProposalConfig(thresholds=(0.5,), rule="zero_below", outer_lambda=0.5, contrast_on="thresholded",
                            gamma=0.1)
    props = cas_proposals(cas, cfg, class_scores=np.array([0.5]))
    assert props.start.tolist() == [2, 6] and props.end.tolist() == [4, 6]
    assert props.score[0] == pytest.approx(0.85)
    # Second run [6, 6]: L=1, outer = [int(5.5)=5, 6) U (6, min(8, int(6.5))=6) = {5}: thresholded 0.
    assert props.score[1] == pytest.approx(0.7 + 0.05)
    raw = cas_proposals(cas, CASProposalConfig(thresholds=(0.5,), outer_lambda=0.5), None)
    assert raw.score[1] == pytest.approx(0.7 - 0.45)  # raw scores: the 0.45 neighbour counts


def test_ecm_skip_quirk_only_index_zero():
    cas = np.array([[0.9, 0.0, 0.0, 0.0]])
    assert len(cas_proposals(cas, CASProposalConfig(thresholds=(0.5,), rule="zero_below",
                                                    skip_if_only_first=True))) == 0
    assert len(cas_proposals(cas, CASProposalConfig(thresholds=(0.5,), rule="zero_below"))) == 1


def test_ecm_pipeline_end_to_end_matches_loop_and_nms_reference():
    rng = np.random.default_rng(7)
    raw = rng.normal(size=(4, 50)).cumsum(axis=1)  # smooth-ish logits (C, T)
    probs = np.array([0.5, 0.3, 0.15, 0.05])
    frames = 400
    cas = resize_linear_centers(minmax_normalize(raw), frames)
    classes = select_classes(probs, 0.25)
    segs, scores, labels = localize_from_cas(cas, "ecm_thumos", 30.0, "ecm_thumos", probs, classes)
    cfg = CAS_PRESETS["ecm_thumos"]
    want = []
    for c in classes:
        cand = ref_ecm(cas[c].tolist(), cfg.thresholds, cfg.outer_lambda, cfg.gamma, probs[c], 30.0)
        kept = ref_per_class_nms([(s, e) for s, e, _ in cand], [v for _, _, v in cand], [0] * len(cand), 0.6,
                                 None, 1.0)
        want.extend((cand[k][0], cand[k][1], cand[k][2], c) for k in kept)
    assert set(labels.tolist()) <= set(classes.tolist())
    assert len(want) > 5
    got = sorted(zip(segs[:, 0].tolist(), segs[:, 1].tolist(), scores.tolist(), labels.tolist()))
    want.sort()
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g == pytest.approx(w, rel=1e-9)


def test_acrnet_pipeline_uses_bsn_soft_nms():
    rng = np.random.default_rng(11)
    seg_scores = 1 / (1 + np.exp(-rng.normal(size=(2, 40)).cumsum(axis=1)))
    frame_scores = np.clip(resize_linear_extrapolate(seg_scores, 16 * 40), 0, 1)
    act = np.array([0.6, 0.05])
    classes = select_classes(act, 0.1, fallback_top1=True)
    segs, scores, labels = localize_from_cas(frame_scores, "acrnet", 25.0, "acrnet_thumos", act, classes)
    cand = ref_acrnet(frame_scores[0].tolist(), CAS_PRESETS["acrnet"].thresholds, act[0])
    ref = ref_soft_nms([(s, e) for s, e, _ in cand], [v for _, _, v in cand], "gaussian", 0.5, 0.1)
    assert labels.tolist() == [0] * len(ref) and len(ref) == len(cand)  # keep-all soft-NMS
    np.testing.assert_allclose(np.sort(scores), np.sort([v for _, v in ref]), rtol=1e-9)


# --------------------------------------------------------------------------------------------- #
# Bad input
# --------------------------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    "cas, kwargs, field",
    [
        (np.array([[0.1, np.nan]]), {}, "cas"),
        (np.zeros((2, 0)), {}, "cas"),
        (np.zeros((2, 5)), {"classes": [2]}, "classes"),
        (np.zeros((2, 5)), {"class_scores": np.zeros(3)}, "class_scores"),
    ],
)
def test_cas_proposals_rejects_bad_input(cas, kwargs, field):
    with pytest.raises(TadkitError) as info:
        cas_proposals(cas, CASProposalConfig(), **kwargs)
    assert info.value.field == field


def test_gamma_needs_class_scores_and_configs_validate():
    with pytest.raises(TadkitError) as info:
        cas_proposals(np.zeros((1, 4)), "ecm_thumos")
    assert info.value.field == "class_scores"
    with pytest.raises(TadkitError) as info:
        CASProposalConfig(min_length=0)
    assert info.value.field == "min_length"
    with pytest.raises(TadkitError) as info:
        CASProposalConfig.from_dict({"preset": "acrnet", "lambda": 0.3}, file="c.yaml")
    assert info.value.file == "c.yaml"
    cfg = CASProposalConfig.from_dict({"preset": "acrnet", "outer_lambda": 0.3})
    assert cfg.outer_lambda == 0.3 and cfg.min_length == 2
    with pytest.raises(TadkitError):
        resize_linear_centers(np.zeros((2, 0)), 5)
    assert len(CAS_PRESETS["ecm_thumos"].thresholds) == 8 and len(CAS_PRESETS["acrnet"].thresholds) == 18
    assert math.isclose(CAS_PRESETS["ecm_anet"].thresholds[-1], 0.15)
